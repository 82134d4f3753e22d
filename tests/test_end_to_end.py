"""The whole study through make: data -> train -> evaluate -> summary -> figures -> report -> PDF,
and the story the demo tells, checked so that a broken pipeline cannot pass.

The same targets and settings as `make demo` (experiments/profiles/demo.yaml: its test items, its
multiple-choice items, its training settings), in a scratch folder, on the demo's pretrained tiny
model, for the demo's smallest and largest sizes only: a run's data, training and evaluation do
not depend on which other sizes exist (the test checks that the data step writes the same test,
items and train files for these two sizes as for the whole grid), so these runs are the ones
`make demo` shows. `story_failures` holds what the demo must show: test loss falling with every
size, the largest run's ROUGE-L interval above the base model's, its answers about the disease the
question asks about far more often than chance, stopping at <|im_end|>, and the base model knowing
what its pages taught: its medical cloze accuracy above chance beyond its interval (the general
facts are not learnt well enough by the tiny base to show: see CLOZE_SCORING). Each check is shown
to fail under a fault it guards against: answers shuffled between the training questions
(disease), the loss mask on the question (test loss, ROUGE-L), generation prompts written without
the chat template (disease), generation not stopping at <|im_end|> (truncation), and a base model
pretrained on pages whose facts are scrambled (cloze). The PDF step runs where TeX is installed
(CI installs it with make setup-tex).
"""

from __future__ import annotations

import csv
import dataclasses
import json
import random
import re
import shutil
import subprocess
from itertools import pairwise
from pathlib import Path

import pytest

from builders import REPO_ROOT
from lib.config import load_grid
from lib.data.synthetic import DISEASES
from lib.io import read_json, read_jsonl, sha256_file, write_jsonl

pytestmark = pytest.mark.slow

GRID = load_grid("demo")
SIZES = (GRID.sizes[0], GRID.sizes[-1])  # the demo's smallest and largest
SETTINGS = ("train.report_to=none",)  # make demo's own settings; only no TensorBoard files, which change no number
# Margins, from measurement on the demo's settings (the note of each says what the healthy run and the
# faulted one gave): the largest run answers about the question's disease in 47% of the items (28x the
# 1 in 60 of a disease at random), the base model in 13%, the run trained on shuffled answers in 12%;
# the healthy runs truncate 0-1% of answers, the base 23%. ROUGE-L: lora-600 34.5 [31.4, 38.0], the
# base 13.2 [12.4, 14.2]; with the mask on the question 6.0, with prompts without the template 10.0
RIGHT_DISEASE_OVER_CHANCE = 15
MAX_TRUNCATED_PERCENT = 15
TRACKS = ("mcq", "general")  # eval.json's multiple-choice tracks: medical knowledge, general ability
# measured on the demo's 100 medical items, the base's cloze accuracy: acc 38% [28, 47], acc_norm 34% [25, 43]
# (chance 25%); on the general items acc 25%, acc_norm 27% [19, 36]: the general facts on its pages are
# not learnt well enough to show, so only the medical track is checked
CLOZE_SCORING = "acc"


def make(scratch: Path, tiny_model: Path, *targets: str) -> subprocess.CompletedProcess:
    variables = ["PROFILE=demo", f"DATA_DIR={scratch}/data", f"RESULTS_DIR={scratch}/results",
                 f"GENERATED_DIR={scratch}/generated", f"BUILD_DIR={scratch}/build", f"MODEL={tiny_model}",
                 f"SIZES={' '.join(SIZES)}", f"SET={' '.join(SETTINGS)}"]
    return subprocess.run(["make", *variables, *targets], cwd=REPO_ROOT, capture_output=True, text=True, timeout=1200)


def cli(tiny_model: Path, *args: str) -> list[str]:
    """`python -m lib` arguments with the demo profile and this test's settings."""
    settings = [f"model.name_or_path={tiny_model}", *SETTINGS]
    return [*args, "--profile", "demo", *(item for s in settings for item in ("--set", s))]


# --- the story ------------------------------------------------------------------------------------


def disease_of(text: str) -> str | None:
    """The disease a text names first (小儿支气管肺炎, not the 肺炎 inside it)."""
    found = [(text.find(d.name), -len(d.name), d.name) for d in DISEASES if d.name in text]
    return min(found)[2] if found else None


def right_disease_share(predictions: Path) -> float:
    """Share of the answers about the disease their reference is about (where the reference names one)."""
    hits = [disease_of(item["prediction"]) == disease_of(item["reference"])
            for item in read_jsonl(predictions) if disease_of(item["reference"])]
    return sum(hits) / len(hits)


def story_failures(runs: dict[str, Path]) -> list[str]:
    """What the demo fails to show, for runs named as the grid names them (base, lora-100, ...)."""
    evals = {name: read_json(folder / "eval.json") for name, folder in runs.items()}
    metric = lambda run, key: evals[run]["metrics"][key]  # noqa: E731
    failures = []
    for method, untuned in (("lora", "base"), ("qlora", "base-nf4")):
        losses = [metric(run, "test_loss")["value"] for run in (untuned, *(f"{method}-{size}" for size in SIZES))]
        if not all(smaller > larger for smaller, larger in pairwise(losses)):
            failures.append(f"test loss: {method} does not fall with every size: {losses}")
    largest = f"lora-{SIZES[-1]}"
    if not metric(largest, "rougeL")["ci_low"] > metric("base", "rougeL")["ci_high"]:
        failures.append(f"rougeL: {largest}'s interval is not above the base's: "
                        f"{metric(largest, 'rougeL')} vs {metric('base', 'rougeL')}")
    # what the pages taught the base: the right option is the likelier text (its letters are at chance:
    # it never saw an exam). Only the medical track: the general facts are not learnt by this recipe
    cloze, chance = evals["base"]["mcq"][CLOZE_SCORING], evals["base"]["mcq"]["chance"]
    if not cloze["ci_low"] > chance:
        failures.append(f"cloze: the base's medical cloze accuracy ({CLOZE_SCORING}) {cloze} is not above chance "
                        f"({chance}%) beyond its interval")
    share, chance = right_disease_share(runs[largest] / "predictions.jsonl"), 1 / len(DISEASES)
    if share < RIGHT_DISEASE_OVER_CHANCE * chance:
        failures.append(f"disease: {largest} answers about the question's disease in {share:.1%} of the items "
                        f"(chance {chance:.1%})")
    truncated = metric(largest, "truncated_rate")["value"]
    if truncated > MAX_TRUNCATED_PERCENT:
        failures.append(f"truncated: {truncated:.0f}% of {largest}'s answers run to the token limit")
    return failures


# --- faults a broken pipeline could have, injected here only ----------------------------------------


def shuffled_answers(processed: Path, out: Path) -> Path:
    """The largest training split with each question paired with another question's answer."""
    out.mkdir(parents=True)
    records = list(read_jsonl(processed / f"train-{SIZES[-1]}.jsonl"))
    answers = [record["messages"][-1] for record in records]
    random.Random(0).shuffle(answers)
    write_jsonl(out / f"train-{SIZES[-1]}.jsonl", [{**record, "messages": [*record["messages"][:-1], answer]}
                                                   for record, answer in zip(records, answers, strict=True)])
    shutil.copy(processed / "dev.jsonl", out / "dev.jsonl")
    return out


def question_instead_of_answer(assistant_tokens):
    """The training mask turned around: the system turn and the question are learned, not the answer."""
    def masked(*args, **kwargs):
        ids, mask = assistant_tokens(*args, **kwargs)
        return ids, [1 - m for m in mask]
    return masked


def train_and_evaluate(tiny_model: Path, train_data: Path, test_data: Path, run: Path) -> Path:
    """The largest LoRA run again, in this process (where a fault is patched in), into `run`."""
    from lib.cli import main

    main(cli(tiny_model, "train", "--method", "lora", "--size", SIZES[-1], "--seed", str(GRID.default_seed),
             "--data", str(train_data), "--out", str(run)))
    return evaluate_again(tiny_model, run, test_data)


def evaluate_again(tiny_model: Path, run: Path, test_data: Path) -> Path:
    from lib.cli import main

    main(cli(tiny_model, "evaluate", "--method", "lora", "--run-dir", str(run), "--data", str(test_data)))
    return run


def scrambled_facts_model(out: Path, monkeypatch) -> Path:
    """The tiny model built from pages whose facts are scrambled: each disease's page under the name
    of the disease half the table away, each general fact with another answer of its family. The
    pages read as before; no fact an item asks is stated on them."""
    import lib.data.general_facts as general_facts
    import lib.data.synthetic as synthetic
    from lib.tiny_model import build

    diseases = synthetic.DISEASES
    half = len(diseases) // 2
    renamed = tuple(dataclasses.replace(d, name=diseases[(i + half) % len(diseases)].name)
                    for i, d in enumerate(diseases))

    def other_answers(family):
        answers = sorted({answer for _, answer in family.facts})
        following = dict(zip(answers, answers[1:] + answers[:1]))
        return dataclasses.replace(family, facts=tuple((subject, following[a]) for subject, a in family.facts))

    with monkeypatch.context() as patch:
        patch.setattr(synthetic, "DISEASES", renamed)
        patch.setattr(general_facts, "FAMILIES", tuple(other_answers(f) for f in general_facts.FAMILIES))
        return build(out)


def data_of_the_whole_grid(tiny_model: Path, scratch: Path) -> dict[str, str]:
    """sha256 of the files the data step writes for the demo's whole grid."""
    from lib.cli import main
    from lib.io import sha256_file

    main(cli(tiny_model, "data", "--raw-dir", str(scratch / "raw"), "--out", str(scratch / "processed"),
             "--sizes", *GRID.sizes))
    for track in TRACKS:
        main(cli(tiny_model, "mcq-data", "--track", track, "--out", str(scratch / "processed" / f"{track}.jsonl")))
    return {path.name: sha256_file(path) for path in (scratch / "processed").glob("*.jsonl")}


def trained_copy(trained: Path, run: Path) -> Path:
    shutil.copytree(trained, run, ignore=shutil.ignore_patterns("eval.json", "predictions*.jsonl"))
    return run


# --- the test ---------------------------------------------------------------------------------------


@pytest.mark.timeout(3600)  # ~15 minutes on 2 cores: five trainings, eight evaluations, a tiny model, the PDF
def test_the_study_runs_end_to_end_and_tells_its_story(tiny_model, tmp_path, monkeypatch):
    study = tmp_path / "study"
    experiments = make(study, tiny_model, "all-experiments")
    assert experiments.returncode == 0, experiments.stderr[-3000:]
    runs = study / "results" / "demo" / "runs"
    names = ("base", "base-nf4", *(f"{method}-{size}" for method in ("lora", "qlora") for size in SIZES))
    for name in names:
        assert (runs / name / "eval.json").is_file(), name
    for name in names[2:]:
        assert (runs / name / "adapter" / "adapter_model.safetensors").is_file()
        assert (runs / name / "train_metrics.json").is_file() and (runs / name / "config.json").is_file()
    assert "-m lib" not in make(study, tiny_model, "-n", "all-experiments").stdout  # nothing left to do

    processed, largest = study / "data" / "processed" / "demo", f"lora-{SIZES[-1]}"
    # the demo's two sizes are the runs of the whole grid: the same test set, items and train files
    whole_grid = data_of_the_whole_grid(tiny_model, tmp_path / "whole-grid")
    assert {name: digest for name, digest in whole_grid.items() if (processed / name).is_file()} == \
        {path.name: sha256_file(path) for path in processed.glob("*.jsonl")}

    healthy = {name: runs / name for name in names}
    measured = {name: {**{key: read_json(run / "eval.json")["metrics"][key]["value"]
                          for key in ("test_loss", "rougeL", "truncated_rate")},
                       **{f"{track}_{scoring}": read_json(run / "eval.json")[track][scoring]
                          for track in TRACKS for scoring in ("overall", "acc", "acc_norm")}}
                for name, run in healthy.items()}
    measured["right_disease_share"] = {name: right_disease_share(run / "predictions.jsonl")
                                       for name, run in healthy.items()}
    print("measured:", json.dumps(measured, ensure_ascii=False))
    healthy_failures = story_failures(healthy)  # asserted after the faults, so that one run measures them all
    # each check fails under the fault it guards against
    import lib.evaluate.run
    import lib.prompts
    import lib.train

    shuffled = train_and_evaluate(tiny_model, shuffled_answers(processed, tmp_path / "shuffled-data"), processed,
                                  tmp_path / "shuffled" / largest)
    with monkeypatch.context() as patch:
        patch.setattr(lib.train, "assistant_tokens", question_instead_of_answer(lib.train.assistant_tokens))
        masked = train_and_evaluate(tiny_model, processed, processed, tmp_path / "mask" / largest)
    with monkeypatch.context() as patch:
        patch.setattr(lib.evaluate.run, "render_prompt",
                      lambda tokenizer, messages: "\n".join(m["content"] for m in messages) + "\n")
        plain = evaluate_again(tiny_model, trained_copy(runs / largest, tmp_path / "plain" / largest), processed)
    with monkeypatch.context() as patch:
        patch.setattr(lib.prompts, "end_of_turn_ids", lambda tokenizer, model: [tokenizer.pad_token_id])
        no_stop = evaluate_again(tiny_model, trained_copy(runs / largest, tmp_path / "no-stop" / largest), processed)
    scrambled = scrambled_facts_model(tmp_path / "scrambled" / "tiny-qwen2", monkeypatch)
    from lib.cli import main

    base_of_scrambled = tmp_path / "scrambled" / "base"
    main([*cli(tiny_model, "evaluate", "--run-dir", str(base_of_scrambled), "--data", str(processed)),
          "--set", f"model.name_or_path={scrambled}"])
    # the checks that must fail on each faulted run (the faulted base replaces the base)
    caught_by = {(largest, shuffled): ("disease:",), (largest, masked): ("test loss:", "rougeL:"),
                 (largest, plain): ("disease:",), (largest, no_stop): ("truncated:",),
                 ("base", base_of_scrambled): ("cloze:",)}
    faulted = {run: story_failures({**healthy, replaced: run}) for replaced, run in caught_by}
    print("faulted:", json.dumps({str(run): failures for run, failures in faulted.items()}, ensure_ascii=False))
    assert healthy_failures == []
    for (_, run), checks in caught_by.items():
        for check in checks:
            assert any(failure.startswith(check) for failure in faulted[run]), (check, run, faulted[run])

    figures = make(study, tiny_model, "figures")
    assert figures.returncode == 0, figures.stderr[-3000:]
    with (study / "results" / "demo" / "summary.csv").open(encoding="utf-8") as handle:
        rows = {row["run"]: row for row in csv.DictReader(handle)}
    assert set(rows) >= set(names) and all(row["status"] == "done" for row in rows.values())
    assert (study / "results" / "demo" / "figures" / "metrics_vs_size.png").is_file()
    # the general track: every run and both base rows, each trained run against its own base row
    assert all(row["general_acc_norm"] and row["mcq_acc_norm"] for row in rows.values())
    forgetting = read_json(study / "results" / "demo" / "scaling.json")["forgetting"]
    assert sorted(change["run"] for change in forgetting) == sorted(names[2:])
    assert all(change["changes"]["general"]["acc_norm"]["ci_low"] is not None for change in forgetting)
    assert (study / "results" / "demo" / "figures" / "forgetting.png").is_file()

    # deleting one run redoes that run only
    shutil.rmtree(runs / "qlora-100")
    plan = make(study, tiny_model, "-n", "all-experiments").stdout
    assert "--out " + str(runs / "qlora-100") in plan and f"lora-{SIZES[-1]}" not in plan

    if not (shutil.which("xelatex") and shutil.which("latexmk")):
        pytest.skip("TeX is not installed (make setup-tex): the PDF step is not checked here")
    assert make(study, tiny_model, "all-experiments").returncode == 0
    paper = make(study, tiny_model, "paper")
    assert paper.returncode == 0, paper.stderr[-3000:]
    pdf = study / "build" / "demo" / "report.pdf"
    assert paper.stdout.strip().splitlines()[-1] == str(pdf)

    from pypdf import PdfReader

    text = " ".join(page.extract_text() for page in PdfReader(pdf).pages)
    assert "演示" in text or "demo" in text.lower()  # the demo's disclaimer
    # a number of summary.csv, as the report formats test losses (3 decimals), is quoted in the PDF
    assert f"{float(rows[f'lora-{SIZES[-1]}']['test_loss']):.3f}" in text

    # deleting the figures redoes them and what quotes them, nothing upstream
    shutil.rmtree(study / "generated" / "demo" / "figures")
    steps = re.findall(r"-m lib (\S+)", make(study, tiny_model, "-n", "paper").stdout)
    assert steps == ["figures", "report", "paper"]
