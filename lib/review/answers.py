"""The runs' answers that the review shows: every evaluated run's predictions.jsonl
(lib.evaluate.run writes it: id, question, reference, prediction, scores, ...).

Only runs whose status is done (lib.runs.run_status) are read, and only the test items that every
one of them answered are reviewed, so that every pair of runs is compared on the same questions.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from lib.errors import UserError
from lib.io import numbered_jsonl, shown
from lib.runs import run_status

PREDICTIONS = "predictions.jsonl"


@dataclass(frozen=True)
class Item:
    id: str
    question: str
    reference: str
    answers: dict[str, str]  # run -> its answer
    scores: dict[str, dict]  # run -> its per-item scores (rougeL, loss, ...)

    def spread(self, metric: str = "rougeL") -> float:
        """How much the runs disagree on this item: the range of their per-item scores."""
        values = [s[metric] for s in self.scores.values() if isinstance(s.get(metric), int | float)]
        return max(values) - min(values) if values else 0.0


@dataclass(frozen=True)
class Answers:
    runs: tuple[str, ...]  # sorted
    items: dict[str, Item]  # test id -> item, in the order of the first run's file


def read_predictions(path: Path) -> dict[str, dict]:
    """{test id: record} of one predictions.jsonl; a record without its fields is an error naming the line."""
    records = {}
    for line, record in numbered_jsonl(path):
        missing = [key for key in ("id", "question", "reference", "prediction") if not isinstance(record.get(key), str)]
        if missing:
            raise UserError(f"{shown(path)}:{line}: no {', '.join(missing)} (expected a line of lib.evaluate.run's "
                            "predictions); evaluate the run again")
        records[record["id"]] = record
    return records


def load_answers(runs_dir: Path) -> Answers:
    """The answers of every evaluated run under `runs_dir`, on the items all of them answered."""
    runs_dir = Path(runs_dir)
    done = sorted(path for path in runs_dir.glob("*") if path.is_dir() and run_status(path)[0] == "done"
                  and (path / PREDICTIONS).is_file()) if runs_dir.is_dir() else []
    if len(done) < 2:
        raise UserError(f"{shown(runs_dir)}: {len(done)} evaluated run(s) with {PREDICTIONS}; a review compares "
                        "two or more (make all-experiments evaluates them)")
    predictions = {path.name: read_predictions(path / PREDICTIONS) for path in done}
    first = next(iter(predictions.values()))
    shared = [item for item in first if all(item in records for records in predictions.values())]
    if not shared:
        raise UserError(f"{shown(runs_dir)}: the runs' {PREDICTIONS} have no test item in common; "
                        "evaluate them on the same test set")
    items = {}
    for item in shared:
        record = first[item]
        items[item] = Item(id=item, question=record["question"], reference=record["reference"],
                           answers={run: records[item]["prediction"] for run, records in predictions.items()},
                           scores={run: records[item].get("scores") or {} for run, records in predictions.items()})
    return Answers(runs=tuple(predictions), items=items)
