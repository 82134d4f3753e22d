"""examples.json: a few test items with the base model's and the best run's answers, for the
report's and the README's qualitative examples.
"""

from __future__ import annotations

import hashlib

from lib.config import BASE_RUN
from lib.stats import is_missing
from lib.summarize.schema import Examples, SummaryRow

EXAMPLE_COUNT = 3
EXAMPLE_MAX_QUESTION_CHARS = 80  # a question that fits in a few lines of the examples figure


def choose_examples(rows: list[SummaryRow], predictions: dict[str, dict[str, dict]],
                    count: int = EXAMPLE_COUNT) -> Examples:
    """A few test items with the base model's and the best run's answers (`predictions` as
    read_predictions returns them).

    The best run has the lowest test loss among finished trained runs. Items are taken in the
    order of sha256(id), which is fixed but unrelated to how well any run did on them,
    preferring questions short enough to read in the figure.
    """
    trained = [row for row in rows
               if row["method"] != BASE_RUN and row["status"] == "done" and not is_missing(row.get("test_loss"))]
    if not trained:
        return {"best_run": None, "examples": []}
    best_run = min(trained, key=lambda row: (row["test_loss"], row["run"]))["run"]
    best = predictions[best_run]
    base = predictions.get(BASE_RUN, {})
    candidates = [item for item in best if not base or item in base]
    candidates.sort(key=lambda item: (len(best[item].get("question") or "") > EXAMPLE_MAX_QUESTION_CHARS,
                                      hashlib.sha256(item.encode()).hexdigest()))
    examples = [{
        "id": item, "question": best[item].get("question"), "reference": best[item].get("reference"),
        "base": base[item].get("prediction") if base else None, "best": best[item].get("prediction"),
    } for item in candidates[:count]]
    return {"best_run": best_run, "examples": examples}
