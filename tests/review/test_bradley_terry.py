"""What the votes say (lib/review/bradley_terry.py): Bradley-Terry strengths with intervals, win rates
against the base model, agreement between raters."""

from __future__ import annotations

from builders import vote
from lib.review.bradley_terry import agreement, analyse


def test_bradley_terry_ranks_the_runs_people_prefer_with_intervals_and_win_rates():
    votes = []
    for item in range(12):  # lora-200 beats everyone, lora-100 beats base, base and qlora-100 tie
        votes += [vote("alice", f"t{item}", "base|lora-200", "second"),
                  vote("alice", f"t{item}", "lora-100|lora-200", "second"),
                  vote("alice", f"t{item}", "base|lora-100", "second" if item % 4 else "first"),
                  vote("alice", f"t{item}", "base|qlora-100", "tie")]
    result = analyse(votes, n_samples=50)
    runs = result["runs"]
    assert runs["base"]["strength"]["value"] == 0  # anchored at the base model
    assert runs["lora-200"]["strength"]["value"] > runs["lora-100"]["strength"]["value"] > 0
    assert abs(runs["qlora-100"]["strength"]["value"]) < 0.5
    for entry in runs.values():
        assert entry["strength"]["ci_low"] <= entry["strength"]["value"] <= entry["strength"]["ci_high"]
    assert runs["lora-200"]["win_rate_vs_base"] == {"value": 1.0, "n": 12}
    assert runs["lora-100"]["win_rate_vs_base"] == {"value": 0.75, "n": 12}
    assert runs["qlora-100"]["win_rate_vs_base"] == {"value": 0.5, "n": 12}
    assert (runs["lora-100"]["method"], runs["lora-100"]["examples"]) == ("lora", 100)
    assert result["raters"] == 1 and result["votes"] == 48 and result["agreement"]["items"] == 0


def test_agreement_is_measured_on_the_tasks_several_raters_voted_on():
    outcomes = ["first", "second", "tie", "both_bad"]
    same = [vote(rater, f"t{i}", "a|b", outcomes[i % 4]) for rater in ("alice", "bob") for i in range(8)]
    assert agreement(same) == {"items": 8, "percent": 100.0, "fleiss_kappa": 1.0}
    opposite = [vote("alice", f"t{i}", "a|b", "first") for i in range(4)] + [
        vote("bob", f"t{i}", "a|b", "second") for i in range(4)]
    result = agreement(opposite)
    assert result["percent"] == 0.0 and result["fleiss_kappa"] < 0
