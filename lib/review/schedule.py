"""Which question and which two answers a rater sees, in which order, and on which side.

The review set is `n_items` test items drawn once from the seed. A task is one item and one pair
of runs; every pair of runs is compared on every review item, so each pair meets on the same
questions (a balanced design: no pair is judged on easier items than another).

A rater's schedule is a list of tasks decided by the seed and the rater alone, so a rater who
stops and comes back resumes at the first task they have not voted on:
  1. the `shared` first review items, for every rater: the items whose several votes measure
     agreement between raters;
  2. the other items, each rater starting at a different place (their invitation position times
     the golden ratio, around the list), so a few raters who stop early still cover different items;
  3. within an item, its pairs in an order of the rater's own, and each answer's side (left or
     right) drawn per rater, item and pair: position says nothing about which run wrote it.
"""

from __future__ import annotations

import itertools
import math
import random
from dataclasses import dataclass

from lib.errors import UserError
from lib.review.store import pair_key

GOLDEN_FRACTION = (math.sqrt(5) - 1) / 2  # successive multiples of it fall evenly around a circle


@dataclass(frozen=True)
class Task:
    item: str
    pair: int  # index into Schedule.pairs: the page carries this number, never the run names
    left: str  # the run whose answer is shown on the left
    right: str


@dataclass(frozen=True)
class Schedule:
    items: tuple[str, ...]  # the review items; the first `shared` are rated by everyone
    shared: int
    pairs: tuple[tuple[str, str], ...]  # every pair of runs, each sorted
    seed: int

    def pair_name(self, index: int) -> str:
        return pair_key(*self.pairs[index])

    def tasks(self, rater_name: str, rater_position: int) -> list[Task]:
        """The rater's whole schedule, in order."""
        rng = random.Random(f"{self.seed}:{rater_name}")
        shared, rest = list(self.items[:self.shared]), list(self.items[self.shared:])
        rng.shuffle(shared)
        start = int(rater_position * GOLDEN_FRACTION * len(rest)) % len(rest) if rest else 0
        tasks = []
        for item in shared + rest[start:] + rest[:start]:
            order = list(range(len(self.pairs)))
            rng.shuffle(order)
            tasks += [self.task(rater_name, item, pair) for pair in order]
        return tasks

    def task(self, rater_name: str, item: str, pair: int) -> Task:
        """The task of this item and pair for this rater, its sides drawn from the seed."""
        first, second = self.pairs[pair]
        if random.Random(f"{self.seed}:{rater_name}:{item}:{pair}").random() < 0.5:
            first, second = second, first
        return Task(item=item, pair=pair, left=first, right=second)


def make_schedule(runs: tuple[str, ...], item_ids: list[str], n_items: int, shared: int, seed: int) -> Schedule:
    """The review set (`n_items` items drawn from `item_ids` by `seed`) and every pair of `runs`."""
    if n_items < 1 or not 0 <= shared <= n_items:
        raise UserError(f"--items {n_items} --shared {shared}: expected at least one item and 0 <= shared <= items")
    chosen = random.Random(seed).sample(sorted(item_ids), min(n_items, len(item_ids)))
    pairs = tuple(itertools.combinations(sorted(runs), 2))
    return Schedule(items=tuple(chosen), shared=min(shared, len(chosen)), pairs=pairs, seed=seed)
