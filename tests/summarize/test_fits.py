"""The scaling of the test loss and the trends (lib/summarize/fits.py): the power law recovered from
exact and noisy points, its bootstrap over items and seeds, the extrapolation check, the flags."""

from __future__ import annotations

import numpy as np
import pytest

from builders import SUMMARY_GRID, SUMMARY_SEED, scaling_of, synthetic_study, write_run
from lib.config import Grid
from lib.summarize import scaling_analysis
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
from lib.summarize.item_scores import read_predictions
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


def test_two_seeds_resample_seeds_then_items_and_the_fit_uses_it(tmp_path):
    runs = synthetic_study(tmp_path, n_items=100, seed_effects=SEED_EFFECTS)
    grid = Grid(methods=SUMMARY_GRID.methods, sizes=SUMMARY_GRID.sizes, seeds=(SUMMARY_SEED, 7))
    rows = collect_runs(runs, grid, SUMMARY_SEED)
    scaling = scaling_analysis(rows, grid, SUMMARY_SEED, read_predictions(rows, runs), 100)
    fit = scaling["loss_fits"]["lora"]
    assert scaling["resampled"] == fit["bootstrap"]["resampled"] == "training seeds and test items"
    assert fit["bootstrap"]["seeds"] == [SUMMARY_SEED, 7]

    # the same draws, from the per-seed items: the fit's intervals are the hierarchical ones
    item_scores = {run: {item: record["scores"] for item, record in records.items()}
                   for run, records in read_predictions(rows, runs).items()}
    points = points_by_size(rows, "lora", "test_loss")
    sizes = [p["examples"] for p in points]
    per_seed, seeds = seed_item_losses(points, item_scores)
    assert per_seed.shape == (2, 100, 4, 2) and seeds == [SUMMARY_SEED, 7]
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


def test_three_sizes_fit_but_cannot_check_extrapolation(tmp_path):
    runs = tmp_path / "runs"
    for size, examples in (("1k", 1000), ("2k", 2000), ("4k", 4000)):
        write_run(runs, f"lora-{size}", [float(power_law(examples, 1.0, 20.0, 0.5))] * 5)
    grid = Grid(methods=("lora",), sizes=("1k", "2k", "4k"), seeds=(42,))
    fit = scaling_of(runs, grid, n_samples=50)["loss_fits"]["lora"]
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


def test_slope_per_doubling_of_a_log_linear_metric():
    # metric = 10 + 2 log2(D): exactly 2 points per doubling, whatever the noise level of the points
    points = [{"examples": d, "value": 10 + 2 * np.log2(d), "ci_low": 10 + 2 * np.log2(d) - 1.96,
               "ci_high": 10 + 2 * np.log2(d) + 1.96} for d in (1_000, 2_000, 4_000, 8_000)]
    slope = slope_per_doubling(points, n_samples=2_000)
    assert slope["value"] == pytest.approx(2.0)
    # standard error 1 per point -> slope standard error 1 / sqrt(sum((x - mean x)^2)) = 1 / sqrt(5)
    assert slope["ci_high"] - slope["ci_low"] == pytest.approx(2 * 1.96 / np.sqrt(5), rel=0.1)
