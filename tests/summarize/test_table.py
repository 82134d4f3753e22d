"""lib/summarize/: the table of runs, the power-law fit, trends, LoRA vs QLoRA, examples.

Run directories are built in tmp_path by tests/builders.py's `write_run`, following the schemas
of the run files (config.json, train_metrics.json, train.done, predictions.jsonl, eval.json).
"""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

import lib.summarize.item_scores
from builders import write_run
from lib.cli import main
from lib.config import Grid, load_grid
from lib.errors import UserError
from lib.io import write_json
from lib.stats import token_weighted_loss
from lib.summarize import scaling_analysis
from lib.summarize.example_answers import choose_examples
from lib.summarize.fits import (
    bootstrap_loss_fits,
    fit_power_law,
    fit_warnings,
    interval,
    points_by_size,
    power_law,
    seed_item_losses,
    slope_per_doubling,
)
from lib.summarize.item_scores import aligned_items, read_predictions
from lib.summarize.markdown import summary_markdown
from lib.summarize.schema import COST_COLUMNS, LOSS_ESTIMATES
from lib.summarize.table import collect_runs, summary_columns

SEED = 42
GRID = Grid(methods=("lora", "qlora"), sizes=("1k", "2k", "4k", "8k"), seeds=(SEED,))


def analyse(runs, grid=GRID, n_samples=100):
    """scaling.json's content for the runs in `runs` (as `summarize` computes it)."""
    rows = collect_runs(runs, grid, SEED)
    return scaling_analysis(rows, grid, SEED, read_predictions(rows, runs), n_samples)


def read_csv(path):
    with path.open(encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


# --- the table ---------------------------------------------------------------------------------


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
    assert columns.index("judge_score") == columns.index("mcq_accuracy_ci_high") + 1


def test_summary_md_shows_every_metric_judge_scores_included():
    rows = [{"run": "lora-1k", "status": "done", "examples": 1000, "method": "lora", "test_loss": 1.5,
             "test_loss_ci_low": 1.4, "test_loss_ci_high": 1.6, "judge_accuracy": 3.5,
             "judge_accuracy_ci_low": 3.1, "judge_accuracy_ci_high": 3.9}]
    scaling = {"resampled": "test items", "loss_fits": {}, "trends": {}, "lora_vs_qlora": [], "notes": []}
    text = summary_markdown("demo", rows, scaling)
    assert "| run | status | examples | test_loss | judge_accuracy |" in text
    assert "| lora-1k | done | 1,000 | 1.50 [1.40, 1.60] | 3.50 [3.10, 3.90] |" in text


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


def test_missing_runs_folder_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="no such folder"):
        collect_runs(tmp_path / "nowhere", GRID, SEED)


# --- the power law -----------------------------------------------------------------------------


def test_loss_per_token_weights_items_by_their_reference_tokens():
    # item 1: mean NLL 1.0 over 10 tokens; item 2: 4.0 over 30 tokens -> (10 + 120) / 40 = 3.25
    scores = {"t1": {"loss": 1.0, "ref_tokens": 10}, "t2": {"loss": 4.0, "ref_tokens": 30}}
    rows = aligned_items([scores], "test_loss")[0]
    assert rows.tolist() == [[10.0, 10.0], [120.0, 30.0]]  # [summed NLL, tokens]
    assert token_weighted_loss(rows) == pytest.approx(3.25)


def test_fit_recovers_exact_power_law():
    sizes = np.array([1_000, 2_000, 4_000, 8_000, 16_000])
    fit = fit_power_law(sizes, power_law(sizes, E=1.2, A=30.0, alpha=0.4))
    assert fit == pytest.approx({"E": 1.2, "A": 30.0, "alpha": 0.4}, rel=1e-4)


def synthetic_study(tmp_path, alpha=0.4, n_items=300, seed=0, seed_effects=None):
    """Runs whose per-item losses are L(D) = 1.2 + 30 D^-alpha, plus an item difficulty shared by
    every run (sd 0.5) and independent noise (sd 0.3). `seed_effects` {training seed: [shift of
    each size's loss]} trains each size once per seed, shifted by that seed's effect."""
    rng = np.random.default_rng(seed)
    difficulty = rng.normal(0, 0.5, n_items)
    runs = tmp_path / "runs"
    for training_seed, shifts in (seed_effects or {SEED: [0.0] * len(GRID.sizes)}).items():
        suffix = "" if training_seed == SEED else f"-s{training_seed}"
        for size, shift in zip(GRID.sizes, shifts):
            examples = int(size[:-1]) * 1_000
            for method, offset in (("lora", 0.0), ("qlora", 0.05)):
                losses = (power_law(examples, 1.2 + offset, 30.0, alpha) + shift + difficulty
                          + rng.normal(0, 0.3, n_items))
                rouge = 20 + 3 * np.log2(examples / 1_000) - 10 * offset + rng.normal(0, 5, n_items)
                write_run(runs, f"{method}-{size}{suffix}", losses, rouge,
                          cost={"wall_time_s": 100.0 * (1 + offset * 10), "peak_memory_gb": 10.0 - 100 * offset,
                                "tokens_per_s": 1000.0})
    return runs


def test_fit_on_noisy_items_recovers_alpha_within_its_interval(tmp_path):
    runs = synthetic_study(tmp_path)
    scaling = analyse(runs, n_samples=300)
    fit = scaling["loss_fits"]["lora"]
    assert fit["status"] == "ok" and fit["bootstrap"]["resampled"] == "test items"
    assert fit["alpha"]["ci_low"] < 0.4 < fit["alpha"]["ci_high"]
    assert fit["alpha"]["value"] == pytest.approx(0.4, abs=0.15)
    assert fit["alpha"]["ci_high"] - fit["alpha"]["ci_low"] < 0.6  # an interval that says something
    assert fit["E"]["ci_low"] <= fit["E"]["value"] <= fit["E"]["ci_high"]
    holdout = fit["holdout"]
    assert holdout["status"] == "ok" and holdout["size"] == 8_000
    assert holdout["abs_error"] == pytest.approx(abs(holdout["predicted"] - holdout["observed"]))
    assert holdout["rel_error"] < 0.05
    assert scaling["notes"] == []  # items reproduce every eval.json value


def test_one_seed_gives_no_p_value_and_says_its_intervals_cover_test_items_only(tmp_path):
    runs = synthetic_study(tmp_path)
    main(["summarize", "--runs", str(runs), "--out", str(tmp_path), "--profile", "demo", "--methods", "lora",
          "qlora", "--sizes", *GRID.sizes, "--seeds", str(SEED), "--set", "eval.bootstrap_samples=50"])
    scaling = json.loads((tmp_path / "scaling.json").read_text(encoding="utf-8"))
    assert scaling["resampled"] == "test items"
    assert all(c[key]["p_value"] is None for c in scaling["lora_vs_qlora"] for key in ("rougeL_diff", "loss_diff"))
    summary = (tmp_path / "summary.md").read_text(encoding="utf-8")
    assert "covers the sampling of test items only, not training randomness, so no p-values" in summary
    assert "p =" not in summary and "p-value " not in summary


# Seed 7 moves each size's loss up or down by 0.15 nats: training noise the test items cannot show.
SEED_EFFECTS = {SEED: [0.0, 0.0, 0.0, 0.0], 7: [0.15, -0.15, 0.15, -0.15]}


def test_two_seeds_resample_seeds_then_items_and_the_fit_uses_it(tmp_path):
    runs = synthetic_study(tmp_path, n_items=100, seed_effects=SEED_EFFECTS)
    grid = Grid(methods=GRID.methods, sizes=GRID.sizes, seeds=(SEED, 7))
    rows = collect_runs(runs, grid, SEED)
    scaling = scaling_analysis(rows, grid, SEED, read_predictions(rows, runs), 100)
    fit = scaling["loss_fits"]["lora"]
    assert scaling["resampled"] == fit["bootstrap"]["resampled"] == "training seeds and test items"
    assert fit["bootstrap"]["seeds"] == [SEED, 7]

    # the same draws, from the per-seed items: the fit's intervals are the hierarchical ones
    item_scores = {run: {item: record["scores"] for item, record in records.items()}
                   for run, records in read_predictions(rows, runs).items()}
    points = points_by_size(rows, "lora", "test_loss")
    sizes = [p["examples"] for p in points]
    per_seed, seeds = seed_item_losses(points, item_scores)
    assert per_seed.shape == (2, 100, 4, 2) and seeds == [SEED, 7]
    hierarchical = bootstrap_loss_fits(sizes, per_seed, 100, "lora")
    slope = LOSS_ESTIMATES.index("slope_per_doubling")
    assert fit["slope_per_doubling"] == interval(fit["slope_per_doubling"]["value"], list(hierarchical[:, slope]))
    # items only: the two seeds' losses averaged item by item (the same reference tokens), one "seed"
    items_only = bootstrap_loss_fits(sizes, per_seed.mean(axis=0, keepdims=True), 100, "lora")

    def width(draws):
        low, high = np.percentile(draws[:, slope], [2.5, 97.5])
        return high - low

    assert width(hierarchical) >= width(items_only)

    comparison = scaling["lora_vs_qlora"][0]["loss_diff"]
    assert comparison["seeds"] == 2 and comparison["resampled"] == "training seeds and test items"
    assert 0 <= comparison["p_value"] <= 1


def test_each_method_starts_from_the_base_model_as_it_loads_it(tmp_path):
    runs = tmp_path / "runs"
    write_run(runs, "base", [3.0] * 4, [10.0] * 4)
    write_run(runs, "base-nf4", [3.4] * 4, [9.0] * 4)
    for size, loss in (("1k", 2.0), ("2k", 1.8)):
        write_run(runs, f"lora-{size}", [loss] * 4)
        write_run(runs, f"qlora-{size}", [loss + 0.1] * 4)
    main(["summarize", "--runs", str(runs), "--out", str(tmp_path), "--profile", "demo",
          "--methods", "lora", "qlora", "--sizes", "1k", "2k", "--seeds", str(SEED)])
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


def test_lora_vs_qlora_differences_and_cost_ratios(tmp_path):
    runs = synthetic_study(tmp_path)
    scaling = analyse(runs)
    comparisons = scaling["lora_vs_qlora"]
    assert [c["size"] for c in comparisons] == list(GRID.sizes)
    first = comparisons[0]
    assert (first["lora_run"], first["qlora_run"], first["examples"]) == ("lora-1k", "qlora-1k", 1000)
    assert first["time_ratio"] == pytest.approx(1.5)        # 150 s / 100 s
    assert first["memory_ratio"] == pytest.approx(0.5)      # 5 GB / 10 GB
    assert first["throughput_ratio"] == pytest.approx(1.0)
    # QLoRA's items were made 0.05 nats worse, and 0.5 ROUGE-L points lower, plus noise
    loss = first["loss_diff"]
    assert loss["ci_low"] <= loss["difference"] <= loss["ci_high"] and loss["n"] == 300
    assert loss["difference"] == pytest.approx(0.05, abs=0.1)
    assert scaling["trends"]["rougeL"]["lora"]["slope_per_doubling"]["value"] == pytest.approx(3.0, abs=0.5)


def test_paired_difference_of_a_constant_shift_is_exact(tmp_path):
    runs = tmp_path / "runs"
    items = [1.0, 2.0, 3.0, 4.0]
    for size in ("1k", "2k"):
        write_run(runs, f"lora-{size}", items, [10.0, 20.0, 30.0, 40.0], cost={"wall_time_s": 10.0})
        write_run(runs, f"qlora-{size}", [x + 0.5 for x in items], [12.0, 22.0, 32.0, 42.0], cost={"wall_time_s": 13.0})
    grid = Grid(methods=("lora", "qlora"), sizes=("1k", "2k"), seeds=(42,))
    comparison = analyse(runs, grid)["lora_vs_qlora"][0]
    assert comparison["rougeL_diff"]["difference"] == pytest.approx(2.0)
    assert comparison["rougeL_diff"]["ci_low"] == pytest.approx(2.0) == comparison["rougeL_diff"]["ci_high"]
    assert comparison["loss_diff"]["difference"] == pytest.approx(0.5)
    assert comparison["time_ratio"] == pytest.approx(1.3)
    assert comparison["memory_ratio"] is None  # unknown memory is no ratio, not 0


def test_three_sizes_fit_but_cannot_check_extrapolation(tmp_path):
    runs = tmp_path / "runs"
    for size, examples in (("1k", 1000), ("2k", 2000), ("4k", 4000)):
        write_run(runs, f"lora-{size}", [float(power_law(examples, 1.0, 20.0, 0.5))] * 5)
    grid = Grid(methods=("lora",), sizes=("1k", "2k", "4k"), seeds=(42,))
    fit = analyse(runs, grid, n_samples=50)["loss_fits"]["lora"]
    assert fit["status"] == "ok"
    assert fit["alpha"]["value"] == pytest.approx(0.5, rel=1e-3)
    assert fit["holdout"]["status"] == "too_few_points"


@pytest.mark.parametrize(("losses", "note"), [
    ([2.0, 2.1, 2.2, 2.3], "the test loss does not fall"),
    ([2.0, 1.9, 1.8, 1.7], "E at the bound"),        # straight on log-log axes: no floor seen
    ([2.0, 1.5, 1.45, 1.44], "alpha at the bound"),  # drops, then flat: sharper than a power law
    ([6.0, 5.0, 4.2, 3.6], None),                    # a clean power law (alpha ~0.36)
])
def test_fits_the_points_cannot_support_are_flagged(losses, note):
    points = [{"value": loss} for loss in losses]
    notes = fit_warnings("lora", points, fit_power_law([1000, 2000, 4000, 8000], losses))
    assert (note in notes[0]) if note else notes == []


def test_mismatch_between_items_and_eval_json_is_noted(tmp_path):
    runs = tmp_path / "runs"
    run_dir = write_run(runs, "lora-1k", [1.0, 2.0])
    eval_result = json.loads((run_dir / "eval.json").read_text())
    eval_result["metrics"]["test_loss"]["value"] = 9.0
    write_json(run_dir / "eval.json", eval_result)
    scaling = analyse(runs, n_samples=10)
    assert scaling["notes"] == ["lora-1k: test_loss from predictions.jsonl is 1.5, eval.json says 9"]


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
    rows = {row["run"]: row for row in collect_runs(runs, GRID, 42)}

    assert rows["base"]["note"] is None and rows["lora-1k"]["note"] is None
    assert '"repetition_penalty": 1.05' in rows["lora-2k"]["note"] and rows["lora-2k"]["status"] == "done"
    assert rows["qlora-1k"]["note"].startswith('decoding {"backend": "vllm"')
    assert rows["qlora-2k"]["note"] == 'adapter_dtype "bfloat16" differs from the other runs\' "float32"'
    # the summary's notes carry them to summary.md and the report
    notes = analyse(runs, n_samples=10)["notes"]
    assert any(note.startswith("qlora-2k: done: adapter_dtype") for note in notes)


# --- trends ------------------------------------------------------------------------------------


def test_slope_per_doubling_of_a_log_linear_metric():
    # metric = 10 + 2 log2(D): exactly 2 points per doubling, whatever the noise level of the points
    points = [{"examples": d, "value": 10 + 2 * np.log2(d), "ci_low": 10 + 2 * np.log2(d) - 1.96,
               "ci_high": 10 + 2 * np.log2(d) + 1.96} for d in (1_000, 2_000, 4_000, 8_000)]
    slope = slope_per_doubling(points, n_samples=2_000)
    assert slope["value"] == pytest.approx(2.0)
    # standard error 1 per point -> slope standard error 1 / sqrt(sum((x - mean x)^2)) = 1 / sqrt(5)
    assert slope["ci_high"] - slope["ci_low"] == pytest.approx(2 * 1.96 / np.sqrt(5), rel=0.1)


# --- examples ----------------------------------------------------------------------------------


def test_examples_come_from_the_best_run_and_the_base_model(tmp_path):
    runs = tmp_path / "runs"
    write_run(runs, "base", [3.0] * 5)
    write_run(runs, "lora-1k", [2.0] * 5)
    write_run(runs, "lora-2k", [1.0] * 5)
    write_run(runs, "qlora-1k", [0.5] * 5, evaluated=False)  # not evaluated: cannot be the best
    rows = collect_runs(runs, GRID, SEED)
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
    rows = collect_runs(runs, GRID, SEED)
    assert choose_examples(rows, read_predictions(rows, runs)) == {"best_run": None, "examples": []}
