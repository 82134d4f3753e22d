"""examples.json (lib/summarize/example_answers.py): the best run's and the base model's answers."""

from __future__ import annotations

from builders import SUMMARY_GRID, SUMMARY_SEED, write_run
from lib.summarize.example_answers import choose_examples
from lib.summarize.item_scores import read_predictions
from lib.summarize.table import collect_runs


def test_examples_come_from_the_best_run_and_the_base_model(tmp_path):
    runs = tmp_path / "runs"
    write_run(runs, "base", [3.0] * 5)
    write_run(runs, "lora-1k", [2.0] * 5)
    write_run(runs, "lora-2k", [1.0] * 5)
    write_run(runs, "qlora-1k", [0.5] * 5, evaluated=False)  # not evaluated: cannot be the best
    rows = collect_runs(runs, SUMMARY_GRID, SUMMARY_SEED)
    predictions = read_predictions(rows, runs)
    chosen = choose_examples(rows, predictions, count=2)
    assert chosen["best_run"] == "lora-2k"
    assert len(chosen["examples"]) == 2
    first = chosen["examples"][0]
    number = first["id"][1:]
    assert first == {"id": f"t{number}", "question": f"问题{number}", "reference": f"参考{number}",
                     "base": f"base回答{number}", "best": f"lora-2k回答{number}"}
    assert choose_examples(rows, predictions, count=2) == chosen  # deterministic


def test_no_finished_run_gives_no_examples(tmp_path):
    runs = tmp_path / "runs"
    write_run(runs, "base", [3.0] * 5)
    rows = collect_runs(runs, SUMMARY_GRID, SUMMARY_SEED)
    assert choose_examples(rows, read_predictions(rows, runs)) == {"best_run": None, "examples": []}
