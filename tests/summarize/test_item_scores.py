"""Per-item scores (lib/summarize/item_scores.py): read once, token-weighted, checked against eval.json."""

from __future__ import annotations

import json

import pytest

import lib.summarize.item_scores
from builders import scaling_of, write_run
from lib.cli import main
from lib.io import write_json
from lib.stats import token_weighted_loss
from lib.summarize.item_scores import aligned_items


def test_each_predictions_file_is_read_once(tmp_path, monkeypatch):
    runs = tmp_path / "runs"
    write_run(runs, "base", [3.0] * 5)
    write_run(runs, "lora-1k", [2.0] * 5)
    write_run(runs, "lora-2k", [1.0] * 5)  # the best run: its answers and base's go to examples.json
    reads = []
    read_jsonl = lib.summarize.item_scores.read_jsonl
    monkeypatch.setattr(lib.summarize.item_scores, "read_jsonl",
                        lambda path: reads.append(path.parent.name) or read_jsonl(path))
    main(["summarize", "--runs", str(runs), "--out", str(tmp_path), "--profile", "demo",
          "--methods", "lora", "--sizes", "1k", "2k", "--seeds", "42"])
    assert sorted(reads) == ["base", "lora-1k", "lora-2k"]
    examples = json.loads((tmp_path / "examples.json").read_text(encoding="utf-8"))
    assert examples["best_run"] == "lora-2k" and examples["examples"][0]["base"].startswith("base回答")


def test_loss_per_token_weights_items_by_their_reference_tokens():
    # item 1: mean NLL 1.0 over 10 tokens; item 2: 4.0 over 30 tokens -> (10 + 120) / 40 = 3.25
    scores = {"t1": {"loss": 1.0, "ref_tokens": 10}, "t2": {"loss": 4.0, "ref_tokens": 30}}
    rows = aligned_items([scores], "test_loss")[0]
    assert rows.tolist() == [[10.0, 10.0], [120.0, 30.0]]  # [summed NLL, tokens]
    assert token_weighted_loss(rows) == pytest.approx(3.25)


def test_mismatch_between_items_and_eval_json_is_noted(tmp_path):
    runs = tmp_path / "runs"
    run_dir = write_run(runs, "lora-1k", [1.0, 2.0])
    eval_result = json.loads((run_dir / "eval.json").read_text())
    eval_result["metrics"]["test_loss"]["value"] = 9.0
    write_json(run_dir / "eval.json", eval_result)
    scaling = scaling_of(runs, n_samples=10)
    assert scaling["notes"] == ["lora-1k: test_loss from predictions.jsonl is 1.5, eval.json says 9"]


def test_knowledge_track_answers_are_per_item_scores_and_a_damaged_file_makes_its_run_corrupt(tmp_path):
    from lib.config import Grid
    from lib.runs import MCQ_PREDICTIONS
    from lib.summarize.item_scores import read_item_scores, read_predictions
    from lib.summarize.table import collect_runs

    runs = tmp_path / "runs"
    write_run(runs, "lora-1k", [2.0] * 3, mcq_correct=[True, False, True, True])
    write_run(runs, "lora-2k", [1.0] * 3, mcq_correct=[True, True, True, False])
    (runs / "lora-2k" / MCQ_PREDICTIONS).write_text('{"id": "m0", "correct": {"letter": true}}\n{cut',
                                                       encoding="utf-8")
    rows = collect_runs(runs, Grid(methods=("lora",), sizes=("1k", "2k"), seeds=(42,)), 42)
    scores = read_item_scores(rows, runs, read_predictions(rows, runs))
    # the two sets' ids kept apart: t0.. the test items, mcq/m0.. the knowledge track's
    assert scores["lora-1k"]["t0"] == {"rougeL": 20.0, "loss": 2.0, "ref_tokens": 10}
    assert [scores["lora-1k"][f"mcq/m{i}"]["mcq_accuracy"] for i in range(4)] == [100.0, 0.0, 100.0, 100.0]
    row = next(row for row in rows if row["run"] == "lora-2k")
    assert row["status"] == "corrupt" and "mcq/" not in str(scores.get("lora-2k", {}))
    assert f"lora-2k/{MCQ_PREDICTIONS}:2: not valid JSON" in row["note"]
    assert row["note"].endswith("`make eval-lora-2k REDO=1` evaluates it again")
    # a record without its letter result is damaged, not a wrong answer
    (runs / "lora-2k" / MCQ_PREDICTIONS).write_text('{"id": "m0", "correct": true}\n', encoding="utf-8")
    rows = collect_runs(runs, Grid(methods=("lora",), sizes=("1k", "2k"), seeds=(42,)), 42)
    read_item_scores(rows, runs, read_predictions(rows, runs))
    row = next(row for row in rows if row["run"] == "lora-2k")
    assert row["status"] == "corrupt" and "without correct.letter" in row["note"]
