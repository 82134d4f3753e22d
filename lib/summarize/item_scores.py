"""Per-item scores from each finished run's predictions.jsonl: what the bootstrap intervals of the
fits and of LoRA vs QLoRA resample.

A run's loss from its items is sum(loss_i * ref_tokens_i) / sum(ref_tokens_i) (each item's
`scores.loss` is a mean over its own reference tokens, so loss_i * ref_tokens_i is its summed
NLL: lib.stats.token_weighted_loss), which must equal eval.json's test_loss; ROUGE-L is the mean
of the items' `scores.rougeL`, on eval.json's scale (F1 x 100). check_item_scores notes every run
whose items do not reproduce its reported numbers.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from lib.errors import UserError
from lib.io import read_jsonl, shown
from lib.runs import MCQ_PREDICTIONS, redo_hint
from lib.stats import is_missing, mean_statistic, token_weighted_loss
from lib.summarize.schema import SummaryRow

# Where a run's loss or ROUGE-L recomputed from predictions.jsonl differs from its eval.json value
# by more than this share, the items do not describe the reported number: say so.
ITEM_MISMATCH_TOLERANCE = 0.01


def read_predictions(rows: list[SummaryRow], runs_dir: Path) -> dict[str, dict[str, dict]]:
    """{run: {item id: record}} of every finished run's predictions.jsonl ({} where it is
    absent), read once for both the scaling analysis and the examples. A file that does not read
    makes its run corrupt (the row's status and note say so)."""
    predictions = {}
    for row in rows:
        if row["status"] == "done":
            path = runs_dir / row["run"] / "predictions.jsonl"
            try:
                predictions[row["run"]] = ({item_id(record, path): record for record in read_jsonl(path)}
                                           if path.is_file() else {})
            except UserError as err:
                row |= {"status": "corrupt", "note": f"{err}; {redo_hint(path.name, row['run'])}"}
    return predictions


def read_item_scores(rows: list[SummaryRow], runs_dir: Path,
                     predictions: dict[str, dict[str, dict]]) -> dict[str, dict[str, dict]]:
    """{run: {item id: scores}} of every finished run: each test item's scores from its
    predictions (read_predictions), and each knowledge-track item's mcq_accuracy, 100 where it was
    answered right, else 0, from mcq_predictions.jsonl (under "mcq/<id>": the two sets' ids are
    apart). A run without that file has no per-item MCQ scores; one that does not read makes the
    run corrupt."""
    item_scores = {run: {item: record.get("scores") or {} for item, record in records.items()}
                   for run, records in predictions.items()}
    for row in rows:
        path = runs_dir / row["run"] / MCQ_PREDICTIONS
        if row["status"] != "done" or not path.is_file():
            continue
        try:
            right = {item_id(record, path): letter_right(record, path) for record in read_jsonl(path)}
        except UserError as err:
            row |= {"status": "corrupt", "note": f"{err}; {redo_hint(path.name, row['run'])}"}
            continue
        item_scores.setdefault(row["run"], {}).update(
            {f"mcq/{item}": {"mcq_accuracy": 100.0 * answered_right} for item, answered_right in right.items()})
    return item_scores


def letter_right(record: dict, path: Path) -> bool:
    """Whether the option letter was right (the knowledge track's headline scoring); a record
    without it is damaged, never counted as a wrong answer."""
    correct = record.get("correct")
    if not isinstance(correct, dict) or not isinstance(correct.get("letter"), bool):
        raise UserError(f"{shown(path)}: a record without correct.letter ({str(record)[:60]}...)")
    return correct["letter"]


def item_id(record: dict, path: Path) -> str:
    if "id" not in record:
        raise UserError(f"{shown(path)}: a record without \"id\" ({str(record)[:60]}...)")
    return str(record["id"])


def item_values(scores: dict, metric: str):
    """One item's value for a statistic: for test_loss (summed NLL, reference tokens), the row
    lib.stats.token_weighted_loss takes (`loss` is the mean NLL over the item's own tokens, so
    loss x tokens is its sum); else the score."""
    if metric == "test_loss":
        loss, tokens = scores.get("loss"), scores.get("ref_tokens") or 1
        return None if loss is None else (loss * tokens, tokens)
    return scores.get(metric)


STATISTICS = {"test_loss": token_weighted_loss, "rougeL": mean_statistic}


def aligned_items(score_maps: list[dict], metric: str) -> list[np.ndarray]:
    """The metric's per-item values of several runs, restricted to the items all runs scored,
    in one order (so row i of every array is the same test item)."""
    common = set.intersection(*({item for item, scores in runs.items() if item_values(scores, metric) is not None}
                                for runs in score_maps))
    order = sorted(common)
    return [np.array([item_values(runs[item], metric) for item in order], dtype=float) for runs in score_maps]



def check_item_scores(rows: list[SummaryRow], item_scores: dict[str, dict], notes: list[str]) -> None:
    """Note every run whose per-item losses or ROUGE-L do not reproduce its eval.json value:
    intervals computed from those items would then not describe the reported number."""
    for row in rows:
        scores = item_scores.get(row["run"])
        for metric, statistic in STATISTICS.items():
            if not scores or is_missing(row.get(metric)):
                continue
            values = aligned_items([scores], metric)[0]
            recomputed = statistic(values) if len(values) else math.nan
            if not abs(recomputed - row[metric]) <= ITEM_MISMATCH_TOLERANCE * abs(row[metric]):
                notes.append(f"{row['run']}: {metric} from predictions.jsonl is {recomputed:.4g}, "
                             f"eval.json says {row[metric]:.4g}")
