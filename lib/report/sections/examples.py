"""Section "Examples": a few test questions with the reference, the base model's and the best
run's answers (examples.json), as report.tex's \\ExampleItem{id}{question}{reference}{base}{best}."""

from __future__ import annotations

from lib.report.section import Listing, Section
from lib.report.study import Study
from lib.tex import MISSING, escape, format_count, truncate

# Whole short answers and the start of long ones: about five lines of a page at ~40 Chinese
# characters a line for an answer, three for a question.
EXAMPLE_QUESTION_CHARS = 120
EXAMPLE_ANSWER_CHARS = 200


def example_text(text, limit: int) -> str:
    return escape(truncate(text, limit)) if text else MISSING


def examples_macros(study: Study) -> dict:
    examples = (study.examples or {}).get("examples") or []
    best = (study.examples or {}).get("best_run")
    return {"NumExamples": format_count(len(examples)), "ExamplesBestRun": escape(best) if best else MISSING,
            "ExampleQuestionChars": format_count(EXAMPLE_QUESTION_CHARS),
            "ExampleAnswerChars": format_count(EXAMPLE_ANSWER_CHARS)}


def example_items(study: Study) -> str:
    items = []
    for example in study.examples["examples"]:
        texts = [escape(example.get("id", "")), example_text(example.get("question"), EXAMPLE_QUESTION_CHARS),
                 *(example_text(example.get(key), EXAMPLE_ANSWER_CHARS) for key in ("reference", "base", "best"))]
        items.append(r"\ExampleItem" + "".join(f"{{{text}}}" for text in texts))
    return "\n".join(items) + "\n"


def missing_sentence(study: Study) -> str:
    if not study.present("examples"):
        return study.absent_files_sentence(["examples"], "定性示例")
    return "还没有完成评测的微调运行，定性示例尚无法给出。"


SECTION = Section(
    name="Examples",
    present=lambda study: bool((study.examples or {}).get("examples")),
    missing_sentence=missing_sentence,
    macros=examples_macros,
    files=(Listing("examples", example_items),),
)
