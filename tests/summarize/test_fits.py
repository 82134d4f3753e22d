"""The scaling of the test loss and the trends (lib/summarize/fits.py): the power law recovered from
exact and noisy points (on the extended grid too), its bootstrap over items and seeds, the residual
degrees of freedom and the leave-one-size-out check, the flags, and the trends' bootstrap."""

from __future__ import annotations

import numpy as np
import pytest

from builders import SUMMARY_GRID, SUMMARY_SEED, scaling_of, synthetic_study, write_run
from lib.config import Grid, load_grid
from lib.runs import MCQ_PREDICTIONS
from lib.summarize.fits import (
    bootstrap_estimates,
    fit_power_law,
    fit_warnings,
    interval,
    leave_one_size_out,
    loss_estimates,
    points_by_size,
    power_law,
    seed_item_values,
    slope_estimate,
    slope_per_doubling,
)
from lib.summarize.item_scores import read_item_scores, read_predictions
from lib.summarize.schema import LOSS_ESTIMATES
from lib.summarize.table import collect_runs


def test_fit_recovers_exact_power_law():
    sizes = np.array([1_000, 2_000, 4_000, 8_000, 16_000])
    fit = fit_power_law(sizes, power_law(sizes, E=1.2, A=30.0, alpha=0.4))
    assert fit == pytest.approx({"E": 1.2, "A": 30.0, "alpha": 0.4}, rel=1e-4)


def test_fit_on_noisy_items_recovers_alpha_within_its_interval(tmp_path):
    runs = synthetic_study(tmp_path)
    scaling = scaling_of(runs, n_samples=300)
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


# Seed 7 moves each size's loss up or down by 0.15 nats: training noise the test items cannot show.
SEED_EFFECTS = {SUMMARY_SEED: [0.0, 0.0, 0.0, 0.0], 7: [0.15, -0.15, 0.15, -0.15]}


def width(draws: np.ndarray, column: int) -> float:
    low, high = np.percentile(draws[:, column], [2.5, 97.5])
    return high - low


def test_two_seeds_resample_seeds_then_items_and_the_fit_uses_it(tmp_path):
    runs = synthetic_study(tmp_path, n_items=100, seed_effects=SEED_EFFECTS)
    grid = Grid(methods=SUMMARY_GRID.methods, sizes=SUMMARY_GRID.sizes, seeds=(SUMMARY_SEED, 7))
    scaling = scaling_of(runs, grid)
    fit = scaling["loss_fits"]["lora"]
    assert scaling["resampled"] == fit["bootstrap"]["resampled"] == "training seeds and test items"
    assert fit["bootstrap"]["seeds"] == [SUMMARY_SEED, 7]

    # the same draws, from the per-seed items: the fit's intervals are the hierarchical ones
    rows = collect_runs(runs, grid, SUMMARY_SEED)
    item_scores = read_item_scores(rows, runs, read_predictions(rows, runs))
    points = points_by_size(rows, "lora", "test_loss")
    sizes = [p["examples"] for p in points]
    per_seed, seeds = seed_item_values(points, item_scores, "test_loss")
    assert per_seed.shape == (2, 100, 4, 2) and seeds == [SUMMARY_SEED, 7]
    hierarchical = bootstrap_estimates(sizes, per_seed, loss_estimates, 100, "lora")
    slope = LOSS_ESTIMATES.index("slope_per_doubling")
    assert fit["slope_per_doubling"] == interval(fit["slope_per_doubling"]["value"], list(hierarchical[:, slope]))
    # items only: the two seeds' losses averaged item by item (the same reference tokens), one "seed"
    items_only = bootstrap_estimates(sizes, per_seed.mean(axis=0, keepdims=True), loss_estimates, 100, "lora")
    assert width(hierarchical, slope) >= width(items_only, slope)

    comparison = scaling["lora_vs_qlora"][0]["loss_diff"]
    assert comparison["seeds"] == 2 and comparison["resampled"] == "training seeds and test items"
    assert 0 <= comparison["p_value"] <= 1


@pytest.mark.parametrize("metric", ["rougeL", "mcq_accuracy"])
def test_the_trends_resample_seeds_then_items_as_the_loss_fit_does(tmp_path, metric):
    runs = synthetic_study(tmp_path, n_items=100, seed_effects=SEED_EFFECTS)
    grid = Grid(methods=SUMMARY_GRID.methods, sizes=SUMMARY_GRID.sizes, seeds=(SUMMARY_SEED, 7))
    trend = scaling_of(runs, grid)["trends"][metric]["lora"]
    assert trend["bootstrap"] == {"resampled": "training seeds and test items", "seeds": [SUMMARY_SEED, 7],
                                  "samples": 100, "failed": 0}

    rows = collect_runs(runs, grid, SUMMARY_SEED)
    item_scores = read_item_scores(rows, runs, read_predictions(rows, runs))
    points = points_by_size(rows, "lora", metric)
    sizes = [p["examples"] for p in points]
    per_seed, _ = seed_item_values(points, item_scores, metric)
    assert per_seed.shape == (2, 100, 4, 2) and np.all(per_seed[..., 1] == 1)  # a mean: each item weighs 1
    hierarchical = bootstrap_estimates(sizes, per_seed, slope_estimate, 100, metric)
    slope = trend["slope_per_doubling"]
    # the point estimate is the slope through the runs' eval.json values, its interval the two-stage resamples'
    assert slope["value"] == pytest.approx(slope_per_doubling(sizes, [p["value"] for p in points]))
    assert slope == interval(slope["value"], list(hierarchical[:, 0]))
    items_only = bootstrap_estimates(sizes, per_seed.mean(axis=0, keepdims=True), slope_estimate, 100, metric)
    assert width(hierarchical, 0) > width(items_only, 0)  # the seeds' effects widen it


def test_a_trend_without_per_item_scores_has_no_interval_and_says_why(tmp_path):
    runs = synthetic_study(tmp_path, n_items=50)
    (runs / "lora-2k" / MCQ_PREDICTIONS).unlink()  # evaluated before the file existed
    scaling = scaling_of(runs)
    trend = scaling["trends"]["mcq_accuracy"]["lora"]
    assert trend["status"] == "ok" and trend["slope_per_doubling"]["ci_low"] is None
    assert trend["bootstrap"]["resampled"] is None
    assert any(note.startswith("mcq_accuracy trend lora: no interval, no per-item mcq_accuracy shared by")
               for note in scaling["notes"])
    assert scaling["trends"]["mcq_accuracy"]["qlora"]["slope_per_doubling"]["ci_low"] is not None


def test_the_extended_grid_recovers_a_known_exponent_within_its_interval(tmp_path):
    extended = load_grid("paper", "extended")
    assert extended.sizes == ("1k", "2.5k", "5k", "10k", "20k", "40k", "60k")
    runs = synthetic_study(tmp_path, alpha=0.3, sizes=extended.sizes)
    scaling = scaling_of(runs, Grid(methods=("lora", "qlora"), sizes=extended.sizes, seeds=(SUMMARY_SEED,)),
                         n_samples=300, profile="paper")
    assert scaling["grid"] == {"name": "extended", "sizes": [1_000, 2_500, 5_000, 10_000, 20_000, 40_000, 60_000]}
    for method in ("lora", "qlora"):
        fit = scaling["loss_fits"][method]
        assert fit["status"] == "ok" and fit["residual_dof"] == 7 - 3
        assert fit["alpha"]["ci_low"] < 0.3 < fit["alpha"]["ci_high"]
        assert fit["alpha"]["ci_high"] - fit["alpha"]["ci_low"] < 0.3  # an interval that says something
        loo = fit["leave_one_out"]
        assert loo["status"] == "ok" and [p["size"] for p in loo["sizes"]] == scaling["grid"]["sizes"]
        assert loo["sizes"][-1] == fit["holdout"] and fit["holdout"]["size"] == 60_000


def test_residual_dof_and_leave_one_size_out_on_a_case_computed_by_hand(tmp_path):
    # 9, 5, 3 lie on 1 + 8 (D / 1k)^-1; the largest size is 0.5 above that curve's 2. Three points
    # and three parameters: each fit without one size passes through the other three exactly.
    losses = {"1k": 9.0, "2k": 5.0, "4k": 3.0, "8k": 2.5}
    runs = tmp_path / "runs"
    for size, loss in losses.items():
        write_run(runs, f"lora-{size}", [loss] * 5)
    fit = scaling_of(runs, Grid(methods=("lora",), sizes=tuple(losses), seeds=(42,)), n_samples=50)["loss_fits"]["lora"]
    assert fit["residual_dof"] == 4 - 3
    # without 8k: the curve above, 2 at 8k. Without 1k: 5, 3, 2.5 at a ratio of 2 apart fall by 2 then 0.5, so
    # 2^-alpha = 0.25 and 1k is 5 + 2 / 0.25 = 13. Without 2k: with y = 2^-alpha, 9 - 3 = a (1 - y^2) and
    # 3 - 2.5 = a y^2 (1 - y), so (1 + y) / y^2 = 12, y = 1/3, a = 6.75, E = 2.25: 2k is 2.25 + 6.75 / 3 = 4.5.
    # Without 4k: 9 - 5 = a (1 - y), 5 - 2.5 = a y (1 - y^2), so y^2 + y = 0.625 and 4k is 9 - 4 (1 + y) = 5 - 4y.
    y = (-1 + np.sqrt(3.5)) / 2
    predicted = {1_000: 13.0, 2_000: 4.5, 4_000: 5 - 4 * y, 8_000: 2.0}
    loo = fit["leave_one_out"]
    assert {p["size"]: p["predicted"] for p in loo["sizes"]} == pytest.approx(predicted, rel=1e-3)
    errors = [4.0, 0.5, abs(5 - 4 * y - 3.0), 0.5]
    assert [p["abs_error"] for p in loo["sizes"]] == pytest.approx(errors, rel=1e-3)
    assert loo["mean_abs_error"] == pytest.approx(np.mean(errors), rel=1e-3)
    assert loo["max_abs_error"] == pytest.approx(4.0, rel=1e-3)
    assert fit["holdout"]["predicted"] == pytest.approx(2.0, rel=1e-3)
    assert fit["holdout"]["rel_error"] == pytest.approx(0.5 / 2.5, rel=1e-3)


def test_leave_one_size_out_needs_three_other_sizes():
    points = [{"examples": d, "value": float(power_law(d, 1.0, 20.0, 0.5))} for d in (1_000, 2_000, 4_000)]
    assert leave_one_size_out(points)["status"] == "too_few_points"
    assert "mean_abs_error" not in leave_one_size_out(points)


def test_three_sizes_fit_but_cannot_check_extrapolation(tmp_path):
    runs = tmp_path / "runs"
    for size, examples in (("1k", 1000), ("2k", 2000), ("4k", 4000)):
        write_run(runs, f"lora-{size}", [float(power_law(examples, 1.0, 20.0, 0.5))] * 5)
    grid = Grid(methods=("lora",), sizes=("1k", "2k", "4k"), seeds=(42,))
    fit = scaling_of(runs, grid, n_samples=50)["loss_fits"]["lora"]
    assert fit["status"] == "ok"
    assert fit["alpha"]["value"] == pytest.approx(0.5, rel=1e-3)
    assert fit["holdout"]["status"] == "too_few_points" and fit["residual_dof"] == 0


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


def test_slope_per_doubling_of_a_log_linear_metric():
    # metric = 10 + 2 log2(D): exactly 2 points per doubling
    sizes = [1_000, 2_000, 4_000, 8_000]
    assert slope_per_doubling(sizes, [10 + 2 * np.log2(d) for d in sizes]) == pytest.approx(2.0)
