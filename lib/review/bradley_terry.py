"""What the votes say: Bradley-Terry strengths, win rates against the base model, agreement.

    python -m lib review analyse --db results/demo/review/votes.sqlite --out results/demo/review/preference.json

Bradley-Terry: P(run i beats run j) = 1 / (1 + exp(s_j - s_i)). The strengths s are fitted by
choix (iterative Luce spectral ranking, with a small regularisation so that a run that won or
lost every comparison still has a finite strength). A tie or "both bad" counts as one win each
way. Strengths are shifted so that the base model is 0 (the mean is 0 where there is no base
row); their 95% intervals come from a bootstrap over review items (the items are the sampled
unit: votes on one item are not independent).

People and LLM judges (raters of kind model, `review judge`, lib/review/model_rater.py) are kept apart:
the top-level numbers are people's only; each judge's votes get a fit of their own under "judges",
with how often it chose what people chose on the tasks both voted on.

preference.json:
    {"raters", "votes", "items", "pairs",                  what the numbers rest on (people only)
     "runs": {run: {"method", "examples", "strength": {"value", "ci_low", "ci_high"},
                    "win_rate_vs_base": {"value", "n"} | null, "votes", "unsafe"}},
     "agreement": {"items", "percent", "fleiss_kappa"},   on tasks that several raters voted on
     "anchor": "base" | "mean", "bootstrap_samples",
     "judges": {"judge:<model>": {"votes", "items", "pairs", "runs": {...as above}, "anchor",
                                  "agreement_with_people": {"votes", "percent"}}},
     "provenance"}
"""

from __future__ import annotations

import itertools
from collections import Counter, defaultdict

import numpy as np

from lib.config import BASE_RUN, parse_count, parse_run_name
from lib.errors import UserError
from lib.review.store import OUTCOMES, Vote
from lib.stats import BOOTSTRAP_SEED

REGULARISATION = 0.01  # choix's alpha: keeps a run that always wins (or loses) finite
BOOTSTRAP_SAMPLES = 200


def comparisons(votes: list[Vote], index: dict[str, int]) -> list[tuple[int, int]]:
    """choix's pairwise data, (winner, loser) per comparison; a tie or both-bad gives one each way."""
    data = []
    for vote in votes:
        first, second = (index[run] for run in vote.pair.split("|"))
        if vote.outcome == "first":
            data.append((first, second))
        elif vote.outcome == "second":
            data.append((second, first))
        else:
            data += [(first, second), (second, first)]
    return data


def strengths(votes: list[Vote], runs: list[str]) -> np.ndarray:
    """Bradley-Terry strengths of `runs` (log scale), anchored at the base model where it is one of them."""
    import choix

    index = {run: i for i, run in enumerate(runs)}
    params = choix.ilsr_pairwise(len(runs), comparisons(votes, index), alpha=REGULARISATION, max_iter=1000)
    return params - params[index[BASE_RUN]] if BASE_RUN in index else params - params.mean()


def bootstrap_strengths(votes: list[Vote], runs: list[str], n_samples: int, seed: int) -> np.ndarray:
    """Strengths refitted on items drawn with replacement: an array of n_samples x runs."""
    by_item = defaultdict(list)
    for vote in votes:
        by_item[vote.item].append(vote)
    items = sorted(by_item)
    rng = np.random.default_rng(seed)
    samples = []
    for _ in range(n_samples):
        drawn = [vote for i in rng.integers(len(items), size=len(items)) for vote in by_item[items[i]]]
        samples.append(strengths(drawn, runs))
    return np.array(samples)


def win_rate_against_base(votes: list[Vote], run: str) -> dict | None:
    """Share of the run's comparisons with the base model that it won, a tie or both-bad counting half."""
    against = [vote for vote in votes if vote.pair.split("|") == sorted((run, BASE_RUN))]
    if run == BASE_RUN or not against:
        return None
    wins = sum(1.0 if winner(vote) == run else 0.5 if winner(vote) is None else 0.0 for vote in against)
    return {"value": wins / len(against), "n": len(against)}


def winner(vote: Vote) -> str | None:
    first, second = vote.pair.split("|")
    return {"first": first, "second": second}.get(vote.outcome)


def agreement(votes: list[Vote]) -> dict:
    """Agreement on the tasks (item, pair) that two or more raters voted on: the share of rater
    pairs that chose the same outcome, and Fleiss' kappa over the four outcomes (the form that
    allows a different number of raters per task)."""
    by_task = defaultdict(list)
    for vote in votes:
        by_task[(vote.item, vote.pair)].append(vote.outcome)
    tasks = [outcomes for outcomes in by_task.values() if len(outcomes) >= 2]
    if not tasks:
        return {"items": 0, "percent": None, "fleiss_kappa": None}
    same = [a == b for outcomes in tasks for a, b in itertools.combinations(outcomes, 2)]
    per_task = []  # Fleiss' P_i: agreeing rater pairs / all rater pairs of task i
    totals = Counter()
    for outcomes in tasks:
        counts = Counter(outcomes)
        n = len(outcomes)
        per_task.append((sum(c * c for c in counts.values()) - n) / (n * (n - 1)))
        totals.update(counts)
    observed = float(np.mean(per_task))
    chance = sum((totals[o] / sum(totals.values())) ** 2 for o in OUTCOMES)
    kappa = (observed - chance) / (1 - chance) if chance < 1 else None  # all one outcome: kappa undefined
    return {"items": len(tasks), "percent": 100 * float(np.mean(same)), "fleiss_kappa": kappa}


def run_identity(run: str) -> tuple[str | None, int | None]:
    """(method, training examples) of a run name; (base, 0) for the base model."""
    if run == BASE_RUN:
        return BASE_RUN, 0
    try:
        method, size, _ = parse_run_name(run, default_seed=0)
    except UserError:  # a run folder named otherwise: shown in tables, left out of the figure
        return None, None
    return method, parse_count(size)


def analyse(votes: list[Vote], n_samples: int = BOOTSTRAP_SAMPLES, seed: int = BOOTSTRAP_SEED) -> dict:
    """preference.json's content (the module docstring) from every vote: people's, and each judge's apart."""
    people = [vote for vote in votes if vote.kind != "model"]
    judges = {}
    for name in sorted({vote.rater for vote in votes if vote.kind == "model"}):
        theirs = [vote for vote in votes if vote.rater == name]
        fitted = fit(theirs, n_samples, seed)
        judges[name] = {key: fitted[key] for key in ("votes", "items", "pairs", "runs", "anchor")} | {
            "agreement_with_people": agreement_with_people(theirs, people)}
    return fit(people, n_samples, seed) | {"judges": judges}


def agreement_with_people(judged: list[Vote], people: list[Vote]) -> dict:
    """The share of people's votes, on the tasks the judge voted on too, that chose the judge's outcome."""
    outcome = {(vote.item, vote.pair): vote.outcome for vote in judged}
    shared = [vote.outcome == outcome[(vote.item, vote.pair)] for vote in people if (vote.item, vote.pair) in outcome]
    return {"votes": len(shared), "percent": 100 * float(np.mean(shared)) if shared else None}


def fit(votes: list[Vote], n_samples: int, seed: int) -> dict:
    """Strengths, win rates and agreement of one group of raters' votes."""
    if not votes:  # the report then says that no one has voted yet
        return {"raters": 0, "votes": 0, "items": 0, "pairs": 0, "runs": {}, "agreement": agreement(votes),
                "anchor": None, "bootstrap_samples": n_samples}
    runs = sorted({run for vote in votes for run in vote.pair.split("|")})
    value = strengths(votes, runs)
    low, high = np.percentile(bootstrap_strengths(votes, runs, n_samples, seed), [2.5, 97.5], axis=0)
    per_run = {}
    for i, run in enumerate(runs):
        method, examples = run_identity(run)
        mine = [vote for vote in votes if run in vote.pair.split("|")]
        unsafe = sum(vote.unsafe_first if vote.pair.split("|")[0] == run else vote.unsafe_second for vote in mine)
        per_run[run] = {"method": method, "examples": examples,
                        "strength": {"value": float(value[i]), "ci_low": float(low[i]), "ci_high": float(high[i])},
                        "win_rate_vs_base": win_rate_against_base(votes, run), "votes": len(mine),
                        "unsafe": int(unsafe)}
    return {"raters": len({vote.rater for vote in votes}), "votes": len(votes),
            "items": len({vote.item for vote in votes}), "pairs": len({vote.pair for vote in votes}),
            "runs": per_run, "agreement": agreement(votes),
            "anchor": "base" if BASE_RUN in runs else "mean", "bootstrap_samples": n_samples}
