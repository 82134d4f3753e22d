"""Multiple-choice medical exam questions for the knowledge track, in one normalised shape.

    python -m lib mcq-data --profile paper --out data/processed/paper/mcq.jsonl      (CMB, from the hub)
    python -m lib mcq-data --profile demo --out data/processed/demo/mcq.jsonl        (generated items)
    python -m lib mcq-data --profile paper --set eval.mcq_source=path/to/items.json --out ...
    make data MCQ_SOURCE=path/to/items.json

Every item becomes {"id", "source", "question", "options": {"A": ..., "B": ...}, "answer": "C"}.
Where the items come from (eval.mcq_source):

    hub        eval.mcq_hub_file of the dataset repo eval.mcq_hub_repo at eval.mcq_hub_revision,
               downloaded by huggingface_hub into its cache (it honours HF_ENDPOINT, HF_HOME, HF_TOKEN)
    synthetic  lib.data.synthetic.generate_mcq: the demo's own items
    a path     a local file

A file is a JSON array, JSON Lines or CSV/TSV with a header, in UTF-8 or GBK/GB18030 (read as
lib.data.sources reads question-answer files). The record shapes of this field:

    CMB          question, option {"A": ..}, answer "D" (multiple-answer items: "ABD"), exam_type, ...
    CMExam       Question, Options "A 选项\\nB 选项 ...", Answer
    MedQA-MCMLE  question, options {"A": ..}, answer_idx "C" (its `answer` holds the option's text)
    CMMLU        CSV columns ,Question,A,B,C,D,Answer
    Apollo       question, options "(A) ...\\n(B) ...", answer "(C)", source

Field names are matched without regard to case. An item's source is its own `source` field, else
<file>/<exam_type> for CMB, else the file's name. Question and options are normalised as the QA
data is (lib.data.clean.normalise_text); Apollo's files end every option with ".", which is
removed when all options of an item end with one. Items with several correct letters are
counted and skipped: the track scores one letter per item. A record without a question, with
fewer than two options, or with an answer that is not one of its option letters is malformed:
counted and reported with its line, and fatal above data.max_bad_fraction (the QA loader's
policy). Then eval.mcq_size items are sampled (seeded by data.seed), kept in file order.

Written: the items to --out, after a report beside it (mcq_report.json: source, counts,
malformed lines, items per source, provenance). An unchanged mcq.jsonl is left untouched.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import random
import re
import string
import sys
from collections import Counter
from pathlib import Path

from lib.config import Config, EvalConfig
from lib.data import write_if_changed
from lib.data.clean import normalise_text
from lib.data.prepare import id_prefix
from lib.data.sources import Malformed, ReadResult, check_malformed, decode, describe_malformed, raw_records
from lib.errors import UserError
from lib.io import provenance, sha256_file, shown, write_json

LOCAL_HINT = "make data MCQ_SOURCE=path/to/items.json"
QUESTION_FIELDS = ("question",)
OPTION_FIELDS = ("option", "options", "choices")
ANSWER_FIELDS = ("answer_idx", "answer")  # MedQA's answer_idx is the letter, its answer the text
SHAPES = "question, options (or option, choices, or A/B/C/D columns) and answer (or answer_idx)"


class MultipleAnswer(Exception):
    """An item with several correct letters; skipped, not malformed."""


# --- one record --------------------------------------------------------------------------------


def lowered(record: dict) -> dict:
    return {str(key).strip().lower(): value for key, value in record.items()}


def first_field(fields: dict, names: tuple[str, ...]):
    return next((fields[name] for name in names if name in fields), None)


def letter_columns(fields: dict) -> dict:
    """CMMLU's option columns: the fields named by a single letter, A, B, C, ..."""
    return {name.upper(): value for name, value in fields.items() if re.fullmatch(r"[a-z]", name)}


# One option line of a text: "(A) ...", "A. ...", "A 、...", "A ..." (the letter, then its text).
OPTION_LINE = re.compile(r"\s*[(（]?([A-Z])[)）]?[\s.．、:：]*")


def options_of_text(text: str) -> dict:
    """'(A) 甲\\n(B) 乙' or 'A 甲\\nB 乙' -> {'A': '甲', 'B': '乙'}; a line that does not start
    with the next letter continues the option before it."""
    options: dict[str, str] = {}
    for line in text.splitlines():
        match = OPTION_LINE.match(line)
        expected = chr(ord("A") + len(options))
        if match and match.group(1) == expected:
            options[expected] = line[match.end():]
        elif options and line.strip():
            last = next(reversed(options))
            options[last] += "\n" + line
        elif line.strip():
            raise Malformed(f"options text does not start with option A: {line.strip()[:20]!r}")
    return options


def options_of(value) -> dict:
    """The options, from a {letter: text} mapping, a list, or lettered lines of text."""
    if isinstance(value, str):
        return options_of_text(value)
    if isinstance(value, list):
        return {chr(ord("A") + i): text for i, text in enumerate(value)}
    if isinstance(value, dict):
        options = {}
        for key, text in value.items():
            letter = str(key).strip().strip("()（）").upper()
            if not re.fullmatch(r"[A-Z]", letter):
                raise Malformed(f"option key {key!r} is not a letter")
            options[letter] = text
        return dict(sorted(options.items()))
    raise Malformed(f"options are a {type(value).__name__}, expected a mapping, a list or text")


def clean_options(options: dict) -> dict:
    """Texts normalised; empty options at the end dropped (a four-option item in a file with
    five option slots); the letters must then run A, B, C, ... with none empty."""
    texts = {}
    for letter, text in options.items():
        if not isinstance(text, str | int | float) or isinstance(text, bool):
            raise Malformed(f"option {letter} is a {type(text).__name__}, expected text")
        texts[letter] = normalise_text(str(text))
    while texts and not texts[next(reversed(texts))]:
        texts.popitem()
    letters = "".join(texts)
    if len(texts) < 2:
        raise Malformed(f"{len(texts)} option(s), a question needs at least two")
    if letters != string.ascii_uppercase[:len(letters)]:
        raise Malformed(f"option letters {letters} do not run A, B, C, ...")
    empty = [letter for letter, text in texts.items() if not text]
    if empty:
        raise Malformed(f"option {empty[0]} is empty")
    if all(text.endswith(".") for text in texts.values()):  # Apollo's "(A) 阳离子型."
        texts = {letter: text[:-1].rstrip() for letter, text in texts.items()}
    return texts


def answer_letter(value, options: dict) -> str:
    """'C', '(C)', ' c ' -> 'C'; several letters raise MultipleAnswer."""
    if not isinstance(value, str):
        raise Malformed(f"answer {value!r} is not an option letter")
    match = re.fullmatch(r"[(（]?\s*([A-Za-z]+)\s*[)）]?", normalise_text(value))
    if not match:
        raise Malformed(f"answer {value[:20]!r} is not an option letter")
    letters = match.group(1).upper()
    if len(letters) > 1:
        raise MultipleAnswer(letters)
    if letters not in options:
        raise Malformed(f"answer {letters!r} is not among the options {''.join(options)}")
    return letters


def to_item(record, file_source: str, prefix: str, line: int) -> dict:
    """One record as an item with the id <prefix>-<line>; raises Malformed or MultipleAnswer."""
    if not isinstance(record, dict):
        raise Malformed(f"a {type(record).__name__}, not a JSON object")
    fields = lowered(record)
    question = first_field(fields, QUESTION_FIELDS)
    if not isinstance(question, str) or not normalise_text(question):
        raise Malformed("no question text")
    raw_options = first_field(fields, OPTION_FIELDS)
    options = clean_options(options_of(raw_options if raw_options is not None else letter_columns(fields)))
    answer = answer_letter(first_field(fields, ANSWER_FIELDS), options)
    return {
        "id": f"{prefix}-{line}",
        "source": item_source(fields, file_source),
        "question": normalise_text(question),
        "options": options,
        "answer": answer,
    }


def item_source(fields: dict, file_source: str) -> str:
    own = fields.get("source")
    if isinstance(own, str) and own.strip():
        return own.strip()
    exam_type = fields.get("exam_type")  # CMB: 医师考试, 护理考试, ...
    if isinstance(exam_type, str) and exam_type.strip():
        return f"{file_source}/{exam_type.strip()}"
    return file_source


def check_shape(record, where: str) -> None:
    """The first record must look like a multiple-choice item; anything else is one error."""
    if not isinstance(record, dict):
        return
    fields = lowered(record)
    has_options = first_field(fields, OPTION_FIELDS) is not None or len(letter_columns(fields)) >= 2
    if first_field(fields, QUESTION_FIELDS) is None or not has_options or first_field(fields, ANSWER_FIELDS) is None:
        raise UserError(f"{where}: not multiple-choice items (fields: {', '.join(map(str, record))}); expected {SHAPES}")


# --- one file ----------------------------------------------------------------------------------


@dataclasses.dataclass
class McqRead(ReadResult):
    """A multiple-choice file as read: `examples` are its single-answer items, `shape` the fields
    of its first record."""

    multiple_answer: int = 0


def read_items(path: str | Path, file_source: str, max_bad_fraction: float) -> McqRead:
    """Every single-answer item of a local file; malformed records counted with their lines."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{shown(path)}: no such file; eval.mcq_source is hub, synthetic or the path of a file")
    text, encoding = decode(path)
    prefix = id_prefix(file_source)
    items, malformed, multiple, fields = [], [], 0, ""
    for line, record in raw_records(text, path):
        if not fields and isinstance(record, dict):
            check_shape(record, f"{shown(path)}:{line}")
            fields = ", ".join(map(str, record))
        try:
            if isinstance(record, Malformed):
                raise record
            items.append(to_item(record, file_source, prefix, line))
        except Malformed as err:
            malformed.append((line, str(err)))
        except MultipleAnswer:
            multiple += 1
    if not items and multiple:
        raise UserError(f"{shown(path)}: all {multiple} items have several correct letters; the knowledge "
                        "track needs single-answer items")
    read = McqRead(items, malformed, fields, encoding, multiple)
    check_malformed(path, read, max_bad_fraction)
    return read


def sample(items: list[dict], size: int, seed: int) -> list[dict]:
    """`size` items drawn without replacement (all when there are fewer), in file order."""
    if len(items) <= size:
        return items
    chosen = sorted(random.Random(seed).sample(range(len(items)), size))
    return [items[i] for i in chosen]


# --- the hub -----------------------------------------------------------------------------------


def download(config: EvalConfig) -> Path:
    """The multiple-choice file of the hub in huggingface_hub's cache (downloaded if needed)."""
    from lib.data.hub import download_file

    return download_file(config.mcq_hub_repo, config.mcq_hub_file, config.mcq_hub_revision,
                         settings="eval.mcq_hub_repo, eval.mcq_hub_file and eval.mcq_hub_revision",
                         offline_hint=f"use a local file instead ({LOCAL_HINT}; CMB, CMExam, MedQA-MCMLE, "
                                      "CMMLU or Apollo shape)")


# --- the command -------------------------------------------------------------------------------


@dataclasses.dataclass
class Collected:
    items: list[dict]  # all single-answer items of the source, before sampling
    source: dict  # where they came from, for the report
    malformed: list[tuple[int, str]]
    multiple_answer: int


def collect(config: Config) -> Collected:
    """The items of the configured source, before sampling."""
    settings = config.eval
    if settings.mcq_source == "synthetic":
        from lib.data.synthetic import generate_mcq

        items = generate_mcq(settings.mcq_size, config.data.seed)
        return Collected(items, {"type": "synthetic", "generator": "lib.data.synthetic.generate_mcq",
                                 "count": len(items), "seed": config.data.seed}, [], 0)
    if settings.mcq_source == "hub":
        from lib.data.hub import endpoint, resolved_commit

        path = download(settings)
        name = settings.mcq_hub_repo.split("/")[-1]
        source = {"type": "hub", "endpoint": endpoint(), "repo": settings.mcq_hub_repo, "file": settings.mcq_hub_file,
                  "revision": settings.mcq_hub_revision, "commit": resolved_commit(path)}
    else:
        path = Path(settings.mcq_source)
        name = path.name.split(".")[0]
        source = {"type": "local", "path": shown(path)}
    read = read_items(path, name, config.data.max_bad_fraction)
    if read.malformed:
        print(f"warning: {describe_malformed(path, read)}", file=sys.stderr)
    source.update({"sha256": sha256_file(path), "fields": read.shape, "encoding": read.encoding})
    return Collected(read.examples, source, read.malformed, read.multiple_answer)


def report_of(config: Config, collected: Collected, items: list[dict], content: bytes) -> dict:
    settings = {"eval": dataclasses.asdict(config.eval), "data": {"seed": config.data.seed,
                                                                 "max_bad_fraction": config.data.max_bad_fraction}}
    return {
        "source": collected.source,
        "single_answer_items": len(collected.items),
        "multiple_answer_skipped": collected.multiple_answer,
        "malformed_lines": len(collected.malformed),
        "malformed_examples": [{"line": line, "why": why} for line, why in collected.malformed[:5]],
        "sampled": len(items),
        "per_source": dict(sorted(Counter(item["source"] for item in items).items())),
        "answers": dict(sorted(Counter(item["answer"] for item in items).items())),
        "sha256": hashlib.sha256(content).hexdigest(),
        "provenance": provenance(settings, config.data.seed),
    }


def prepare(config: Config, out: Path) -> dict:
    """Collect, sample and write the items to `out` (its report first); returns the report."""
    collected = collect(config)
    items = sample(collected.items, config.eval.mcq_size, config.data.seed)
    content = "".join(json.dumps(item, ensure_ascii=False) + "\n" for item in items).encode("utf-8")
    report = report_of(config, collected, items, content)
    write_json(out.with_name("mcq_report.json"), report)
    write_if_changed(out, content)  # last: its presence means the step finished
    return report


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from lib.cli import add_config_arguments

    add_config_arguments(parser, method=False)
    parser.add_argument("--out", type=Path, required=True, help="the items file, data/processed/<profile>/mcq.jsonl")


def run(args: argparse.Namespace) -> None:
    from lib.cli import config_from_args

    report = prepare(config_from_args(args), args.out)
    skipped = f"{report['multiple_answer_skipped']} multiple-answer and {report['malformed_lines']} malformed skipped"
    sources = ", ".join(f"{name} {count}" for name, count in report["per_source"].items())
    print(f"mcq-data: {report['sampled']} of {report['single_answer_items']} single-answer items ({skipped}) "
          f"-> {shown(args.out)}")
    print(f"mcq-data: per source: {sources}")
