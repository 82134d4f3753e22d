"""Which question and which two answers a rater sees, and on which side (lib/review/schedule.py)."""

from __future__ import annotations

import itertools
from collections import Counter

from builders import (
    REVIEW_PAIRS,
    REVIEW_RUNS,
)
from lib.review.schedule import make_schedule


def test_every_pair_meets_on_the_same_items_and_every_rater_starts_with_the_shared_ones():
    schedule = make_schedule(REVIEW_RUNS, [f"t{i}" for i in range(10)], n_items=6, shared=2, seed=3)
    alice, bob = schedule.tasks("alice", 1), schedule.tasks("bob", 2)
    for tasks in (alice, bob):
        every_task = itertools.product(schedule.items, range(REVIEW_PAIRS))
        assert Counter((t.item, t.pair) for t in tasks) == Counter(every_task)
        assert {t.item for t in tasks[:2 * REVIEW_PAIRS]} == set(schedule.items[:2])  # the shared items come first
        assert all({t.left, t.right} == set(schedule.pairs[t.pair]) for t in tasks)
    assert alice[2 * REVIEW_PAIRS].item != bob[2 * REVIEW_PAIRS].item  # after the shared items, raters start apart
    assert schedule.tasks("alice", 1) == alice  # resumable: the same schedule at every visit
    lefts = Counter(t.left == schedule.pairs[t.pair][0] for t in alice)
    assert lefts[True] > 5 and lefts[False] > 5  # sides drawn, not fixed by the run names' order
