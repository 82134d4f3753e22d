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
