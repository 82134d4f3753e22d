"""Uncertainty by bootstrap over test items: one resampling scheme for every metric.

Each metric is a statistic of per-item values (a mean, or a corpus score computed from per-item
counts). Resampling the items with replacement and recomputing the statistic gives its sampling
distribution; the 2.5th and 97.5th percentiles are the 95% interval (percentile bootstrap,
Efron & Tibshirani 1993). Comparing two runs on the same items resamples the *pairs*, so the
item difficulty shared by both runs cancels out of the difference.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

CONFIDENCE = 0.95


def resample_indices(n_items: int, n_samples: int, seed: int) -> np.ndarray:
    """(n_samples, n_items) indices drawn with replacement; the same seed gives the same draws."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, n_items, size=(n_samples, n_items))


def mean_statistic(values: np.ndarray) -> float:
    return float(np.mean(values))


def bootstrap(
    values: Sequence | np.ndarray,
    statistic: Callable[[np.ndarray], float] = mean_statistic,
    n_samples: int = 1_000,
    seed: int = 0,
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
    low, high = np.percentile(estimates, [50 * (1 - CONFIDENCE), 50 * (1 + CONFIDENCE)])
    return {"value": statistic(values), "ci_low": float(low), "ci_high": float(high), "n": n_items}


def paired_bootstrap(
    values_a: Sequence | np.ndarray,
    values_b: Sequence | np.ndarray,
    statistic: Callable[[np.ndarray], float] = mean_statistic,
    n_samples: int = 1_000,
    seed: int = 0,
) -> dict:
    """Difference statistic(a) - statistic(b) on the same items, with its 95% interval.

    `p_value` is the two-sided share of resamples in which the difference changes sign
    (the usual paired-bootstrap test of Koehn 2004 for MT metrics).
    """
    values_a, values_b = np.asarray(values_a), np.asarray(values_b)
    if len(values_a) != len(values_b):
        raise ValueError(f"paired bootstrap needs the same items: {len(values_a)} vs {len(values_b)} values")
    if len(values_a) == 0:
        return {"difference": None, "ci_low": None, "ci_high": None, "p_value": None, "n": 0}
    differences = np.array([
        statistic(values_a[rows]) - statistic(values_b[rows])
        for rows in resample_indices(len(values_a), n_samples, seed)
    ])
    low, high = np.percentile(differences, [50 * (1 - CONFIDENCE), 50 * (1 + CONFIDENCE)])
    observed = statistic(values_a) - statistic(values_b)
    p_value = 2 * min(np.mean(differences <= 0), np.mean(differences >= 0))
    return {
        "difference": float(observed),
        "ci_low": float(low),
        "ci_high": float(high),
        "p_value": float(min(1.0, p_value)),
        "n": len(values_a),
    }
