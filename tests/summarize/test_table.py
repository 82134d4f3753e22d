"""The table of runs (lib/summarize/table.py): statuses, columns, empty cells, the rows of each
method's 0-data run, runs that are not comparable.

Run directories are built in tmp_path by tests/builders.py's `write_run`, following the schemas
of the run files (config.json, train_metrics.json, train.done, predictions.jsonl, eval.json)."""

from __future__ import annotations

import csv
import json

import pytest

from builders import SUMMARY_GRID, SUMMARY_SEED, scaling_of, write_run
from lib.cli import main
from lib.config import load_grid
from lib.errors import UserError
from lib.evaluate.metrics import METRICS
from lib.io import write_json
from lib.summarize.schema import COST_COLUMNS
from lib.summarize.table import collect_runs, summary_columns


def read_csv(path):
    with path.open(encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_statuses_columns_and_empty_cells(tmp_path):
    runs = tmp_path / "runs"
    write_run(runs, "base", [2.0, 4.0])
    write_run(runs, "lora-1k", [1.0, 2.0], cost={"wall_time_s": 100.0, "peak_memory_gb": 8.0},
              mcq={"overall": {"value": 55.0, "ci_low": 50.0, "ci_high": 60.0, "n": 100}, "per_source": {}})
    write_run(runs, "lora-2k", trained=False)                 # still training
    write_run(runs, "qlora-1k", [1.0, 1.0], evaluated=False)  # trained, not evaluated
    write_run(runs, "lora-500", [1.5, 1.5])                   # outside the grid: listed as extra

    main(["summarize", "--runs", str(runs), "--out", str(tmp_path), "--profile", "demo",
          "--methods", "lora", "qlora", "--sizes", "1k", "2k", "--seeds", "42"])
    rows = {row["run"]: row for row in read_csv(tmp_path / "summary.csv")}

    assert list(rows) == ["base", "base-nf4", "lora-1k", "lora-2k", "qlora-1k", "qlora-2k", "lora-500"]
    assert {run: row["status"] for run, row in rows.items()} == {
        "base": "done", "base-nf4": "missing", "lora-1k": "done", "lora-2k": "training", "qlora-1k": "not_evaluated",
        "qlora-2k": "missing", "lora-500": "done"}
    assert (rows["base"]["method"], rows["base"]["examples"]) == ("base", "0")
    assert (rows["lora-1k"]["examples"], rows["lora-500"]["examples"]) == ("1000", "500")
    assert float(rows["base"]["test_loss"]) == pytest.approx(3.0)  # (2 + 4) * 10 tokens / 20 tokens
    assert float(rows["lora-1k"]["mcq_accuracy"]) == 55.0 and float(rows["lora-1k"]["mcq_accuracy_ci_low"]) == 50.0
    assert float(rows["lora-1k"]["wall_time_s"]) == 100.0
    # unknown values are empty cells, never zeros
    assert rows["qlora-2k"]["test_loss"] == "" and rows["qlora-1k"]["test_loss"] == ""
    assert rows["lora-1k"]["tokens_per_s"] == "" and rows["base"]["steps"] == ""
    header = list(next(iter(rows.values())))
    assert header[:6] == ["run", "method", "size", "examples", "seed", "status"]
    assert header[6:10] == ["note", "test_loss", "test_loss_ci_low", "test_loss_ci_high"]
    assert header[-len(COST_COLUMNS):] == list(COST_COLUMNS)
    assert "| lora-2k | training |" in (tmp_path / "summary.md").read_text(encoding="utf-8")
    scaling = json.loads((tmp_path / "scaling.json").read_text(encoding="utf-8"))
    assert scaling["loss_fits"]["lora"]["status"] == "too_few_points"
    assert scaling["loss_fits"]["lora"]["points"] == [[500, 1.5], [1000, 1.5]]


def test_other_seeds_are_named_against_the_study_default_seed(tmp_path):
    runs = tmp_path / "runs"
    runs.mkdir()
    # experiments/grid.yaml's first seed names runs without a suffix, whatever --seeds asks for
    other_seed = load_grid("demo").default_seed + 1
    main(["summarize", "--runs", str(runs), "--out", str(tmp_path), "--profile", "demo",
          "--methods", "lora", "--sizes", "1k", "--seeds", str(other_seed)])
    assert [row["run"] for row in read_csv(tmp_path / "summary.csv")] == ["base", f"lora-1k-s{other_seed}"]


def test_extra_metrics_get_columns_after_the_known_ones():
    rows = [{"run": "a", "test_loss": 1.0, "judge_score": 7.0, "judge_score_ci_low": 6.0, "judge_score_ci_high": 8.0}]
    columns = summary_columns(rows)
    last_registered = [name for name, metric in METRICS.items() if not metric.optional][-1]
    assert columns.index("judge_score") == columns.index(f"{last_registered}_ci_high") + 1


def test_missing_runs_folder_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="no such folder"):
        collect_runs(tmp_path / "nowhere", SUMMARY_GRID, SUMMARY_SEED)


def test_each_method_starts_from_the_base_model_as_it_loads_it(tmp_path):
    runs = tmp_path / "runs"
    write_run(runs, "base", [3.0] * 4, [10.0] * 4)
    write_run(runs, "base-nf4", [3.4] * 4, [9.0] * 4)
    for size, loss in (("1k", 2.0), ("2k", 1.8)):
        write_run(runs, f"lora-{size}", [loss] * 4)
        write_run(runs, f"qlora-{size}", [loss + 0.1] * 4)
    main(["summarize", "--runs", str(runs), "--out", str(tmp_path), "--profile", "demo",
          "--methods", "lora", "qlora", "--sizes", "1k", "2k", "--seeds", str(SUMMARY_SEED)])
    rows = {row["run"]: row for row in read_csv(tmp_path / "summary.csv")}
    assert list(rows)[:2] == ["base", "base-nf4"]
    nf4 = rows["base-nf4"]
    assert (nf4["method"], nf4["examples"], nf4["status"]) == ("base", "0", "done")
    scaling = json.loads((tmp_path / "scaling.json").read_text(encoding="utf-8"))
    for method, run, loss, rouge in (("lora", "base", 3.0, 10.0), ("qlora", "base-nf4", 3.4, 9.0)):
        zero = scaling["loss_fits"][method]["zero_data"]
        assert (zero["run"], zero["examples"], zero["value"]) == (run, 0, pytest.approx(loss))
        assert scaling["trends"]["rougeL"][method]["zero_data"]["value"] == pytest.approx(rouge)
    assert scaling["loss_fits"]["qlora"]["points"] == [[1000, pytest.approx(2.1)], [2000, pytest.approx(1.9)]]
    summary = (tmp_path / "summary.md").read_text(encoding="utf-8")
    assert "3.40 [3.40, 3.40] (base-nf4)" in summary and "3.00 [3.00, 3.00] (base)" in summary


def test_a_run_decoded_or_trained_otherwise_than_the_others_is_marked(tmp_path):
    runs = tmp_path / "runs"
    greedy = {"backend": "transformers", "strategy": "greedy", "max_new_tokens": 512, "repetition_penalty": 1.0,
              "stop_ids": [151645, 151643]}
    decodings = {"base": greedy, "lora-1k": greedy, "lora-2k": greedy | {"repetition_penalty": 1.05},
                 "qlora-1k": greedy | {"backend": "vllm"}, "qlora-2k": greedy}
    for name, decoding in decodings.items():
        run_dir = write_run(runs, name, [1.0, 2.0],
                            cost={"adapter_dtype": "bfloat16" if name == "qlora-2k" else "float32"})
        eval_result = json.loads((run_dir / "eval.json").read_text()) | {"generation": {"decoding": decoding}}
        write_json(run_dir / "eval.json", eval_result)
    rows = {row["run"]: row for row in collect_runs(runs, SUMMARY_GRID, 42)}

    assert rows["base"]["note"] is None and rows["lora-1k"]["note"] is None
    assert '"repetition_penalty": 1.05' in rows["lora-2k"]["note"] and rows["lora-2k"]["status"] == "done"
    assert rows["qlora-1k"]["note"].startswith('decoding {"backend": "vllm"')
    assert rows["qlora-2k"]["note"] == 'adapter_dtype "bfloat16" differs from the other runs\' "float32"'
    # the summary's notes carry them to summary.md and the report
    notes = scaling_of(runs, n_samples=10)["notes"]
    assert any(note.startswith("qlora-2k: done: adapter_dtype") for note in notes)
