"""The scaling of the test loss with data, and the trends of ROUGE-L and MCQ accuracy.

- Loss fit: L(D) = E + A * D^(-alpha), D = training examples, L = test loss in nats per
  reference token, fitted by scipy's curve_fit (E >= 0, A > 0, 0 < alpha <= 3). Points are
  averaged over seeds where a size has several. Its interval resamples the *test items*: each
  bootstrap sample draws the same items (with replacement) for every run, since all runs share
  one test set, recomputes each run's loss from predictions.jsonl (lib.summarize.item_scores) and
  refits. Resampling residuals instead would have nothing to resample: 4 sizes and 3 parameters
  leave one degree of freedom. With one training seed the interval therefore covers test-set
  noise, not training-seed noise, nor the choice of the curve. With several seeds (those done at
  every size), each sample first draws the seeds with replacement, then the items, the same for
  every run (lib.stats.hierarchical_estimates), and averages the drawn seeds' losses before
  refitting: training randomness is then in the interval too.
  Beside it, the 2-parameter log-linear description: the least-squares slope of the loss against
  log2 D (loss per doubling of the data), refitted on the same resamples.
- Extrapolation check: the fit without the largest size predicts it (needs 4 sizes).
- Trends of ROUGE-L and MCQ accuracy: the least-squares slope of metric vs log2(D), i.e. the
  change per doubling of data; descriptive, no power law claimed. Its interval redraws each
  point from a normal with the standard error implied by the run's 95% bootstrap interval
  (half-width / 1.96) and refits; this treats the runs' errors as independent, which is
  conservative since runs share the test items.

Each method's point at 0 examples is the base model as it loads it; it is not a point of the fits.
"""

from __future__ import annotations

import math
import warnings
from collections import defaultdict

import numpy as np
from tqdm import tqdm

from lib.config import zero_data_run
from lib.stats import BOOTSTRAP_SEED, CONFIDENCE, hierarchical_estimates, is_missing, percentile_interval
from lib.summarize.item_scores import aligned_items
from lib.summarize.schema import (
    FIT_PARAMETERS,
    LOSS_ESTIMATES,
    RESAMPLED,
    Holdout,
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


def loss_estimates(sizes: list[int], losses: np.ndarray) -> np.ndarray:
    """E, A, alpha of the power law (NaN where it does not converge) and the least-squares slope
    of the loss against log2 D, the 2-parameter log-linear description beside it."""
    try:
        fit = fit_power_law(sizes, losses)
        parameters = [fit[name] for name in FIT_PARAMETERS]
    except RuntimeError:
        parameters = [math.nan] * len(FIT_PARAMETERS)
    return np.array([*parameters, np.polyfit(np.log2(sizes), losses, 1)[0]])


def bootstrap_loss_fits(sizes: list[int], item_losses: np.ndarray, n_samples: int, label: str) -> np.ndarray:
    """(n_samples, LOSS_ESTIMATES) from refitting on two-stage resamples (lib.stats.
    hierarchical_estimates) of `item_losses`, shaped (training seeds, test items, sizes, 2) of
    [summed NLL, reference tokens]: each resample draws the seeds, then the same items for every
    run. With one seed it is the item bootstrap."""
    progress = tqdm(total=n_samples, desc=f"bootstrap {label}", leave=False)

    def estimates(sample: np.ndarray) -> np.ndarray:
        progress.update()
        totals = sample.sum(axis=1)  # (seeds, sizes, 2): each run's summed NLL and tokens
        losses = (totals[..., 0] / totals[..., 1]).mean(axis=0)  # token-weighted loss, averaged over seeds
        return loss_estimates(sizes, losses)

    with progress:
        return hierarchical_estimates(item_losses, estimates, n_samples, BOOTSTRAP_SEED)


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


def holdout_check(points: list[dict]) -> Holdout:
    """Fit without the largest size and predict it: how well the curve extrapolates."""
    held_out = points[-1]
    result = {"size": held_out["examples"], "observed": held_out["value"]}
    if len(points) - 1 < len(FIT_PARAMETERS):
        return {"status": "too_few_points"} | result
    try:
        fit = fit_power_law([p["examples"] for p in points[:-1]], [p["value"] for p in points[:-1]])
    except RuntimeError:
        return {"status": "fit_failed"} | result
    predicted = float(power_law(held_out["examples"], **fit))
    error = abs(predicted - held_out["value"])
    return {"status": "ok"} | result | {"predicted": predicted, "abs_error": error,
                                        "rel_error": error / held_out["value"]}


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
    sizes = [p["examples"] for p in points]
    observed = loss_estimates(sizes, np.array([p["value"] for p in points]))
    item_losses, seeds = seed_item_losses(points, item_scores)
    draws, resampled = np.empty((0, len(LOSS_ESTIMATES))), None
    if item_losses is not None:
        draws = bootstrap_loss_fits(sizes, item_losses, n_samples, method)
        resampled = RESAMPLED[len(seeds) > 1]
    else:
        runs = [run for point in points for run in point["runs"].values()]
        notes.append(f"loss fit {method}: no interval, no per-item losses shared by {', '.join(runs)}")
    failed = int(np.isnan(draws[:, 0]).sum())
    return {"status": "ok"} | {
        name: interval(float(observed[i]), [d for d in draws[:, i] if not math.isnan(d)])
        for i, name in enumerate(LOSS_ESTIMATES)
    } | result | {
        "holdout": holdout_check(points),
        "bootstrap": {"resampled": resampled, "seeds": seeds, "samples": n_samples if resampled else 0,
                      "failed": failed},
    }


def seed_item_losses(points: list[dict], item_scores: dict[str, dict]) -> tuple[np.ndarray | None, list]:
    """[summed NLL, tokens] per training seed, test item and size, shaped (seeds, items, sizes, 2),
    over the seeds done at every size and the items all their runs scored; (None, []) where a run
    has no per-item losses."""
    seeds = [seed for seed in points[0]["runs"] if all(seed in p["runs"] for p in points)]
    runs = [[p["runs"][seed] for p in points] for seed in seeds]
    if not seeds or not all(item_scores.get(run) for row in runs for run in row):
        return None, []
    aligned = aligned_items([item_scores[run] for row in runs for run in row], "test_loss")
    if not len(aligned[0]):
        return None, []
    per_seed = np.array(aligned).reshape(len(seeds), len(points), *aligned[0].shape)
    return per_seed.transpose(0, 2, 1, 3), seeds



# --- descriptive trends ------------------------------------------------------------------------


def slope_per_doubling(points: list[dict], n_samples: int) -> Statistic:
    """Least-squares slope of the metric against log2(examples), with a 95% interval from
    redrawing each point within its own standard error (95% half-width / 1.96)."""
    doublings = np.log2([p["examples"] for p in points])
    values = np.array([p["value"] for p in points])
    slope = float(np.polyfit(doublings, values, 1)[0])
    if any(p["ci_low"] is None or p["ci_high"] is None for p in points):
        return {"value": slope, "ci_low": None, "ci_high": None}
    from scipy import stats

    z = stats.norm.ppf(0.5 + CONFIDENCE / 2)
    standard_errors = np.array([(p["ci_high"] - p["ci_low"]) / (2 * z) for p in points])
    rng = np.random.default_rng(BOOTSTRAP_SEED)
    draws = values + rng.standard_normal((n_samples, len(points))) * standard_errors
    slopes = np.polyfit(doublings, draws.T, 1)[0]
    return interval(slope, list(slopes))


def trend(rows: list[SummaryRow], method: str, metric: str, n_samples: int) -> Trend:
    points = points_by_size(rows, method, metric)
    result = {"points": [[p["examples"], p["value"]] for p in points],
              "zero_data": zero_data_point(rows, method, metric)}
    if len(points) < 2:
        return {"status": "too_few_points"} | result
    return {"status": "ok", "slope_per_doubling": slope_per_doubling(points, n_samples)} | result
