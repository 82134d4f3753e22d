"""Uncertainty by bootstrap over test items: one resampling scheme for every metric.

Each metric is a statistic of per-item values (a mean, or a corpus score computed from per-item
counts). Resampling the items with replacement and recomputing the statistic gives its sampling
distribution; the 2.5th and 97.5th percentiles are the 95% interval (percentile bootstrap,
Efron & Tibshirani 1993). Comparing two runs on the same items resamples the *pairs*, so the
item difficulty shared by both runs cancels out of the difference. A statistic that every
resample biases one way (distinct-n: an item drawn twice repeats all its n-grams) gets the same
resamples, shifted to centre on the point estimate (recentred_bootstrap).

Where a study trains several seeds per cell, training randomness is a second source of noise:
hierarchical_estimates resamples the seeds, then the items (Davison & Hinkley 1997, sec. 3.8);
with one seed it is the item bootstrap, and lib.summarize compares runs (paired) through it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

CONFIDENCE = 0.95
BOOTSTRAP_SEED = 0  # one seed for every interval, so all metrics of a run see the same resamples


def is_missing(value) -> bool:
    """None or NaN: a number no input gave."""
    return value is None or (isinstance(value, float) and math.isnan(value))


def resample_indices(n_items: int, n_samples: int, seed: int) -> np.ndarray:
    """(n_samples, n_items) indices drawn with replacement; the same seed gives the same draws."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, n_items, size=(n_samples, n_items))


def mean_statistic(values: np.ndarray) -> float:
    return float(np.mean(values))


def token_weighted_loss(rows: np.ndarray) -> float:
    """rows: (items, 2) of [summed NLL, tokens]: the mean NLL per token over those items, the
    average the training loss uses (a long answer weighs by its tokens)."""
    return float(rows[:, 0].sum() / rows[:, 1].sum())


def percentile_interval(estimates) -> tuple[float, float]:
    """The central CONFIDENCE share of resampled estimates (NaN estimates left out)."""
    low, high = np.nanpercentile(estimates, [50 * (1 - CONFIDENCE), 50 * (1 + CONFIDENCE)])
    return float(low), float(high)


def bootstrap(
    values: Sequence | np.ndarray,
    statistic: Callable[[np.ndarray], float] = mean_statistic,
    n_samples: int = 1_000,
    seed: int = BOOTSTRAP_SEED,
) -> dict:
    """{'value', 'ci_low', 'ci_high', 'n'}: the statistic on all items and its 95% interval.

    `values` is one entry per item (a row per item for corpus statistics such as BLEU, whose
    `statistic` sums the rows' counts before scoring).
    """
    values = np.asarray(values)
    n_items = len(values)
    if n_items == 0:
        return {"value": None, "ci_low": None, "ci_high": None, "n": 0}
    estimates = [statistic(values[rows]) for rows in resample_indices(n_items, n_samples, seed)]
    low, high = percentile_interval(estimates)
    return {"value": statistic(values), "ci_low": low, "ci_high": high, "n": n_items}


def recentred_bootstrap(
    statistic: Callable[[np.ndarray], float],
    n_items: int,
    n_samples: int = 1_000,
    seed: int = BOOTSTRAP_SEED,
) -> dict | None:
    """{'value', 'ci_low', 'ci_high', 'n'} of a statistic of item *indices* (repeats allowed),
    its interval the resamples shifted by value - mean(resamples): the sampling spread without
    the resampling bias. None when the statistic of all items is undefined (NaN)."""
    value = float(statistic(np.arange(n_items)))
    if np.isnan(value):
        return None
    estimates = np.array([statistic(rows) for rows in resample_indices(n_items, n_samples, seed)])
    low, high = percentile_interval(estimates + value - np.nanmean(estimates))
    return {"value": value, "ci_low": low, "ci_high": high, "n": n_items}


def sign_change_p_value(differences) -> float:
    """Two-sided share of resampled differences on the other side of zero (Koehn 2004)."""
    differences = np.asarray(differences)
    return float(min(1.0, 2 * min(np.mean(differences <= 0), np.mean(differences >= 0))))


def hierarchical_estimates(
    values: np.ndarray,
    statistic: Callable[[np.ndarray], float | np.ndarray],
    n_samples: int = 1_000,
    seed: int = BOOTSTRAP_SEED,
) -> np.ndarray:
    """The statistic on n_samples two-stage resamples of `values`, shaped (training seeds, test
    items, ...): each draws the seeds with replacement, then the items with replacement, the same
    items for every drawn seed (every run answers one test set, so an item's difficulty is shared
    by all of them). `statistic` gets a (seeds, items, ...) array and averages over the seeds
    itself (a fit averages the seeds' losses before fitting).

    The items are drawn exactly as bootstrap draws them with `seed` (the seeds from seed + 1):
    where every seed gave the same values, this is the item bootstrap, and with one seed the two
    are the same resamples.
    """
    values = np.asarray(values)
    n_seeds, n_items = values.shape[:2]
    seed_draws = resample_indices(n_seeds, n_samples, seed + 1)
    item_draws = resample_indices(n_items, n_samples, seed)
    return np.array([statistic(values[seeds][:, items]) for seeds, items in zip(seed_draws, item_draws)])
