"""The scaling of the test loss with data, and the trends of ROUGE-L and MCQ accuracy.

- Loss fit: L(D) = E + A * D^(-alpha), D = training examples, L = test loss in nats per
  reference token, fitted by scipy's curve_fit (E >= 0, A > 0, 0 < alpha <= 3). Points are
  averaged over seeds where a size has several. It reports its residual degrees of freedom,
  sizes - 3 parameters: the seed's 4 sizes leave 1, the extended grid's 7 (GRID=extended) leave 4.
- Trends of ROUGE-L and MCQ accuracy: the least-squares slope of metric vs log2(D), i.e. the
  change per doubling of data; descriptive, no power law claimed. The loss has the same
  2-parameter log-linear description beside its power law.
- Intervals, one scheme for all of them (bootstrap_estimates): each resample draws the *training
  seeds* done at every size with replacement, then the *test items*, the same items for every run
  since all runs answer one test set (lib.stats.hierarchical_estimates); it recomputes each run's
  value from its per-item scores (lib.summarize.item_scores: predictions.jsonl, and
  mcq_predictions.jsonl for the knowledge track), averages the drawn seeds, and refits. With one
  training seed it is the item bootstrap: the interval covers test-set noise, not training-seed
  noise, nor the choice of the curve; with several, training randomness is in it too. Resampling
  residuals instead would have almost nothing to resample with 4 sizes and 3 parameters.
- Extrapolation check, leave one size out: the fit without each size predicts it (needs 4 sizes);
  the mean and largest absolute error over the sizes, and the largest size's own (the holdout: how
  far the curve carries beyond the data it saw).

Each method's point at 0 examples is the base model as it loads it; it is not a point of the fits.
"""

from __future__ import annotations

import math
import warnings
from collections import defaultdict

import numpy as np
from tqdm import tqdm

from lib.config import zero_data_run
from lib.stats import BOOTSTRAP_SEED, hierarchical_estimates, is_missing, percentile_interval
from lib.summarize.item_scores import aligned_items
from lib.summarize.schema import (
    FIT_PARAMETERS,
    LOSS_ESTIMATES,
    RESAMPLED,
    Bootstrap,
    Holdout,
    LeaveOneOut,
    LossFit,
    Statistic,
    SummaryRow,
    Trend,
    ZeroDataPoint,
)

# Published data-scaling exponents of language models lie around 0.1-0.5 (Kaplan et al. 2020;
# Hoffmann et al. 2022): 3 only stops a runaway fit of a few points, it does not shape the fit.
ALPHA_MAX = 3.0
ALPHA_MIN = 1e-6  # alpha > 0: a loss that falls with data
ALPHA_START = 0.5


# --- the power law of the test loss ------------------------------------------------------------


def power_law(examples, E: float, A: float, alpha: float):
    return E + A * np.power(examples, -alpha)


def fit_power_law(examples, losses) -> dict:
    """Least-squares E, A, alpha of L(D) = E + A * D^(-alpha); RuntimeError if it does not converge.

    D is measured in units of the smallest size while fitting, so that the amplitude
    A_ref = A * D_min^(-alpha) (the excess loss at D_min) is of order one like E and alpha;
    A = A_ref * D_min^alpha converts it back. Starting values put alpha at ALPHA_START and the
    curve through the first and last points: A_ref = (L_first - L_last) / (1 - (D_last/D_min)^-alpha).
    """
    sizes, losses = np.asarray(examples, dtype=float), np.asarray(losses, dtype=float)
    d_min = sizes.min()
    relative = sizes / d_min
    drop = max(losses[0] - losses[-1], 1e-3 * losses.max())
    a_ref_start = drop / (1 - relative[-1] ** -ALPHA_START)
    e_start = min(max(losses[0] - a_ref_start, 0.0), 0.99 * losses.min())
    from scipy import optimize

    bounds = ([0.0, 1e-12, ALPHA_MIN], [losses.max(), np.inf, ALPHA_MAX])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optimize.OptimizeWarning)  # no covariance from 3 points: not used
        (e, a_ref, alpha), _ = optimize.curve_fit(
            power_law, relative, losses, p0=[e_start, max(losses[0] - e_start, 1e-6), ALPHA_START],
            bounds=bounds, method="trf", maxfev=10_000,
        )
    return {"E": float(e), "A": float(a_ref * d_min**alpha), "alpha": float(alpha)}


def points_by_size(rows: list[SummaryRow], method: str, metric: str) -> list[dict]:
    """{"examples", "value", "ci_low", "ci_high", "runs": {seed: run}} per size of a method's
    finished runs, averaged over seeds, smallest size first."""
    groups = defaultdict(list)
    for row in rows:
        if (row["method"] == method and row["status"] == "done" and not is_missing(row["examples"])
                and not is_missing(row.get(metric))):
            groups[int(row["examples"])].append(row)
    points = []
    for examples, group in sorted(groups.items()):
        points.append({"examples": examples, "runs": {row["seed"]: row["run"] for row in group}} | {
            key: mean_or_none([row.get(f"{metric}{suffix}") for row in group])
            for key, suffix in (("value", ""), ("ci_low", "_ci_low"), ("ci_high", "_ci_high"))
        })
    return points


def zero_data_point(rows: list[SummaryRow], method: str, metric: str) -> ZeroDataPoint | None:
    """The method's point at 0 examples: the untuned model as the method loads it (base-nf4 for a
    4-bit method such as QLoRA, base otherwise: lib.config.zero_data_run), where that row is done.
    Not a point of the fits (D^(-alpha) and log2 D have no value at 0): the start every size's gain
    is measured from."""
    run = zero_data_run(method)
    row = next((row for row in rows if row["run"] == run and row["status"] == "done"), None)
    if row is None or is_missing(row.get(metric)):
        return None
    return {"run": run, "examples": 0, "value": row[metric],
            "ci_low": row.get(f"{metric}_ci_low"), "ci_high": row.get(f"{metric}_ci_high")}


def mean_or_none(values: list) -> float | None:
    return None if any(is_missing(v) for v in values) else float(np.mean(values))


def interval(value: float, estimates: list[float]) -> Statistic:
    """{"value", "ci_low", "ci_high"}: a point estimate and the 95% percentile interval of its
    bootstrap estimates (no interval from no estimates)."""
    if not estimates:
        return {"value": value, "ci_low": None, "ci_high": None}
    low, high = percentile_interval(estimates)
    return {"value": value, "ci_low": low, "ci_high": high}


def slope_per_doubling(sizes: list[int], values) -> float:
    """The least-squares slope of a metric against log2 D: its change per doubling of the data."""
    return float(np.polyfit(np.log2(sizes), values, 1)[0])


def loss_estimates(sizes: list[int], losses: np.ndarray) -> np.ndarray:
    """E, A, alpha of the power law (NaN where it does not converge) and the least-squares slope
    of the loss against log2 D, the 2-parameter log-linear description beside it."""
    try:
        fit = fit_power_law(sizes, losses)
        parameters = [fit[name] for name in FIT_PARAMETERS]
    except RuntimeError:
        parameters = [math.nan] * len(FIT_PARAMETERS)
    return np.array([*parameters, slope_per_doubling(sizes, losses)])


def slope_estimate(sizes: list[int], values: np.ndarray) -> np.ndarray:
    return np.array([slope_per_doubling(sizes, values)])


def bootstrap_estimates(sizes: list[int], item_values: np.ndarray, estimates, n_samples: int,
                        label: str) -> np.ndarray:
    """(n_samples, k): `estimates(sizes, values per size)` on two-stage resamples (lib.stats.
    hierarchical_estimates) of `item_values`, shaped (training seeds, test items, sizes, 2) of
    [sum, weight] (seed_item_values): each resample draws the seeds, then the same items for every
    run; a run's value is sum / weight over its drawn items, averaged over the drawn seeds. With one
    seed it is the item bootstrap."""
    progress = tqdm(total=n_samples, desc=f"bootstrap {label}", leave=False)

    def estimate(sample: np.ndarray) -> np.ndarray:
        progress.update()
        totals = sample.sum(axis=1)  # (seeds, sizes, 2): each run's sum and weight over the drawn items
        return estimates(sizes, (totals[..., 0] / totals[..., 1]).mean(axis=0))

    with progress:
        return hierarchical_estimates(item_values, estimate, n_samples, BOOTSTRAP_SEED)


def bootstrapped(points: list[dict], metric: str, item_scores: dict[str, dict], estimates, n_samples: int,
                 label: str, notes: list[str]) -> tuple[np.ndarray, Bootstrap]:
    """The resampled estimates of a method's points (none, with a note, where a run has no
    per-item scores of the metric) and what they resampled."""
    item_values, seeds = seed_item_values(points, item_scores, metric)
    if item_values is None:
        runs = [run for point in points for run in point["runs"].values()]
        notes.append(f"{label}: no interval, no per-item {metric} shared by {', '.join(runs)} "
                     "(`make eval-<run> REDO=1` writes a run's per-item files)")
        return np.empty((0, 0)), {"resampled": None, "seeds": [], "samples": 0, "failed": 0}
    draws = bootstrap_estimates([p["examples"] for p in points], item_values, estimates, n_samples, label)
    return draws, {"resampled": RESAMPLED[len(seeds) > 1], "seeds": seeds, "samples": n_samples,
                   "failed": int(np.isnan(draws[:, 0]).sum())}


def estimate_intervals(names, observed: np.ndarray, draws: np.ndarray) -> dict[str, Statistic]:
    """Each estimate with the interval of its resamples (those whose fit converged)."""
    return {name: interval(float(observed[i]), [d for d in draws[:, i] if not math.isnan(d)] if len(draws) else [])
            for i, name in enumerate(names)}


def fit_warnings(method: str, points: list[dict], fit: dict) -> list[str]:
    """What a reader of the fit must know: the loss does not fall, or a parameter sits on a bound."""
    if points[-1]["value"] >= points[0]["value"]:
        return [f"loss fit {method}: the test loss does not fall from the smallest to the largest size; "
                "a falling power law does not describe it"]
    # E on its bound 0: the points show no curvature on log-log axes, so the floor is not identified;
    # alpha on its upper bound: the points drop and then flatten too sharply for any power law.
    at_bound = (["E"] if fit["E"] < 1e-9 else []) + (["alpha"] if fit["alpha"] > 0.99 * ALPHA_MAX else [])
    return [f"loss fit {method}: {' and '.join(at_bound)} at the bound of the fit (E = {fit['E']:.3g} >= 0, "
            f"alpha = {fit['alpha']:.3g} <= {ALPHA_MAX:g}); the points do not determine it"] if at_bound else []


def left_out_prediction(points: list[dict], index: int) -> Holdout:
    """Fit without the size at `index` and predict it: how well the curve carries to a size it
    did not see (beyond the data for the largest or smallest size, between them for the others)."""
    index %= len(points)  # -1: the largest size
    held_out, kept = points[index], points[:index] + points[index + 1:]
    result = {"size": held_out["examples"], "observed": held_out["value"]}
    if len(kept) < len(FIT_PARAMETERS):
        return {"status": "too_few_points"} | result
    try:
        fit = fit_power_law([p["examples"] for p in kept], [p["value"] for p in kept])
    except RuntimeError:
        return {"status": "fit_failed"} | result
    predicted = float(power_law(held_out["examples"], **fit))
    error = abs(predicted - held_out["value"])
    return {"status": "ok"} | result | {"predicted": predicted, "abs_error": error,
                                        "rel_error": error / held_out["value"]}


def leave_one_size_out(points: list[dict]) -> LeaveOneOut:
    """Every size predicted by the fit of the others; the mean and largest absolute error of those
    whose fit converged."""
    predictions = [left_out_prediction(points, index) for index in range(len(points))]
    errors = [p["abs_error"] for p in predictions if p["status"] == "ok"]
    if not errors:
        return {"status": predictions[0]["status"], "sizes": predictions}
    return {"status": "ok", "sizes": predictions, "mean_abs_error": float(np.mean(errors)),
            "max_abs_error": float(np.max(errors))}


def loss_fit(rows: list[SummaryRow], method: str, item_scores: dict[str, dict], n_samples: int,
             notes: list[str]) -> LossFit:
    """The power-law fit of one method's test loss over data size, with bootstrap intervals."""
    points = points_by_size(rows, method, "test_loss")
    result = {"points": [[p["examples"], p["value"]] for p in points],
              "zero_data": zero_data_point(rows, method, "test_loss")}
    if len(points) < len(FIT_PARAMETERS):
        return {"status": "too_few_points"} | result
    try:
        fit = fit_power_law([p["examples"] for p in points], [p["value"] for p in points])
    except RuntimeError as err:
        return {"status": "fit_failed", "reason": str(err)} | result
    notes += fit_warnings(method, points, fit)
    observed = loss_estimates([p["examples"] for p in points], np.array([p["value"] for p in points]))
    draws, resampled = bootstrapped(points, "test_loss", item_scores, loss_estimates, n_samples,
                                    f"loss fit {method}", notes)
    return {"status": "ok"} | estimate_intervals(LOSS_ESTIMATES, observed, draws) | result | {
        "residual_dof": len(points) - len(FIT_PARAMETERS),
        "holdout": left_out_prediction(points, -1),
        "leave_one_out": leave_one_size_out(points),
        "bootstrap": resampled,
    }


def seed_item_values(points: list[dict], item_scores: dict[str, dict], metric: str) -> tuple[np.ndarray | None, list]:
    """[sum, weight] per training seed, test item and size, shaped (seeds, items, sizes, 2), over
    the seeds done at every size and the items all their runs scored: [summed NLL, reference
    tokens] for the test loss (a token-weighted mean), [score, 1] for a metric that is the mean of
    its items. (None, []) where a run has no per-item scores of the metric."""
    seeds = [seed for seed in points[0]["runs"] if all(seed in p["runs"] for p in points)]
    runs = [[p["runs"][seed] for p in points] for seed in seeds]
    if not seeds or not all(item_scores.get(run) for row in runs for run in row):
        return None, []
    aligned = aligned_items([item_scores[run] for row in runs for run in row], metric)
    if not len(aligned[0]):
        return None, []
    if aligned[0].ndim == 1:  # one score per item: its weight is 1
        aligned = [np.column_stack([values, np.ones_like(values)]) for values in aligned]
    per_seed = np.array(aligned).reshape(len(seeds), len(points), *aligned[0].shape)
    return per_seed.transpose(0, 2, 1, 3), seeds


# --- descriptive trends ------------------------------------------------------------------------


def trend(rows: list[SummaryRow], method: str, metric: str, item_scores: dict[str, dict], n_samples: int,
          notes: list[str]) -> Trend:
    """A metric's change per doubling of the data, its interval resampled as the loss fit's."""
    points = points_by_size(rows, method, metric)
    result = {"points": [[p["examples"], p["value"]] for p in points],
              "zero_data": zero_data_point(rows, method, metric)}
    if len(points) < 2:
        return {"status": "too_few_points"} | result
    observed = slope_estimate([p["examples"] for p in points], np.array([p["value"] for p in points]))
    draws, resampled = bootstrapped(points, metric, item_scores, slope_estimate, n_samples,
                                    f"{metric} trend {method}", notes)
    return {"status": "ok"} | estimate_intervals(["slope_per_doubling"], observed, draws) | result | {
        "bootstrap": resampled}
