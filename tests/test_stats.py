"""lib/stats.py's hierarchical bootstrap on small arrays whose answer is known."""

from __future__ import annotations

import numpy as np
import pytest

from lib.stats import bootstrap, hierarchical_estimates, mean_statistic, percentile_interval, token_weighted_loss


def mean_over_seeds(statistic):
    return lambda sample: np.mean([statistic(seed) for seed in sample])


@pytest.mark.parametrize("n_seeds", [1, 3])
def test_identical_seeds_give_the_item_bootstrap(n_seeds):
    items = np.random.default_rng(1).normal(2.0, 1.0, 40)
    estimates = hierarchical_estimates(np.tile(items, (n_seeds, 1)), mean_over_seeds(mean_statistic), 300, seed=5)
    expected = bootstrap(items, mean_statistic, 300, seed=5)
    assert percentile_interval(estimates) == pytest.approx((expected["ci_low"], expected["ci_high"]), rel=1e-12)


def test_rows_per_item_are_resampled_whole():
    # [summed NLL, tokens] rows: token_weighted_loss sees whole rows, as in the item bootstrap
    rows = np.column_stack([np.arange(1.0, 21.0), np.full(20, 2.0)])
    estimates = hierarchical_estimates(rows[None], mean_over_seeds(token_weighted_loss), 200, seed=0)
    expected = bootstrap(rows, token_weighted_loss, 200, seed=0)
    assert percentile_interval(estimates) == pytest.approx((expected["ci_low"], expected["ci_high"]))


def test_seeds_that_differ_widen_the_interval_by_their_spread():
    # no item noise: each seed scores every item 1 or 3, so a resample's mean is 1, 2 or 3 as it
    # draws seed A twice, once or never (probabilities 1/4, 1/2, 1/4): the interval is [1, 3]
    values = np.array([np.full(10, 1.0), np.full(10, 3.0)])
    estimates = hierarchical_estimates(values, mean_over_seeds(mean_statistic), 2_000, seed=0)
    assert set(np.round(estimates, 9)) == {1.0, 2.0, 3.0}
    assert np.mean(estimates == 2.0) == pytest.approx(0.5, abs=0.05)
    assert percentile_interval(estimates) == (1.0, 3.0)
