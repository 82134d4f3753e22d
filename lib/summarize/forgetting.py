"""What fine-tuning costs or adds on the multiple-choice tracks: each run against its own base row.

A trained run starts from the base model as its method loads it (lib.config.zero_data_run: base
for LoRA, base-nf4 for QLoRA), so its change on a track is its accuracy minus that row's, on the
items both answered: on the medical track (mcq) a gain is knowledge the data added, on the
general track (general) a loss is forgetting. The interval is the paired percentile bootstrap
over items (lib.stats.bootstrap of the per-item differences: each resample draws the same items
for both rows, so the items' difficulty, shared by both, cancels out).

Each eval.json keeps every item's right or wrong per scoring (lib.evaluate.multiple_choice
mcq_summary `items`: {id: [letter, acc, acc_norm]}); the changes are in points of accuracy.
"""

from __future__ import annotations

from pathlib import Path

from lib.config import BASE_RUN, zero_data_run
from lib.evaluate.metrics import MCQ_SCORINGS, MCQ_TRACKS
from lib.runs import readable_run_files
from lib.stats import BOOTSTRAP_SEED, bootstrap
from lib.summarize.schema import RunChange, Statistic, SummaryRow


def read_track_items(rows: list[SummaryRow], runs_dir: Path) -> dict[str, dict[str, dict]]:
    """{run: {track: {item id: [letter, acc, acc_norm]}}} of every finished run and base row."""
    found = {}
    for row in rows:
        if row["status"] != "done":
            continue
        result = readable_run_files(runs_dir / row["run"], ("eval.json",)).get("eval.json") or {}
        found[row["run"]] = {track: result[track]["items"] for track in MCQ_TRACKS
                             if isinstance(result.get(track), dict) and isinstance(result[track].get("items"), dict)}
    return found


def paired_change(run_items: dict, base_items: dict, scoring: int, n_samples: int) -> Statistic | None:
    """run - base accuracy in points over the items both answered, with its paired bootstrap interval."""
    shared = [item for item in run_items if item in base_items]
    if not shared:
        return None
    differences = [100.0 * (run_items[item][scoring] - base_items[item][scoring]) for item in shared]
    return bootstrap(differences, n_samples=n_samples, seed=BOOTSTRAP_SEED)


def changes_from_base(rows: list[SummaryRow], track_items: dict[str, dict[str, dict]],
                      n_samples: int) -> list[RunChange]:
    """One entry per finished trained run whose base row is finished too, in summary order."""
    changes = []
    for row in rows:
        if row["method"] in (None, BASE_RUN) or row["run"] not in track_items:
            continue
        base = zero_data_run(row["method"])
        if base not in track_items:
            continue
        per_track = {}
        for track in MCQ_TRACKS:
            run_items, base_items = track_items[row["run"]].get(track), track_items[base].get(track)
            if run_items and base_items:
                per_track[track] = {name: paired_change(run_items, base_items, index, n_samples)
                                    for index, name in enumerate(MCQ_SCORINGS)}
        if per_track:
            changes.append({"run": row["run"], "method": row["method"], "examples": row["examples"],
                            "seed": row["seed"], "base_run": base, "changes": per_track})
    return changes
