"""Tables with a row per run (the results, the cost, the knowledge track): method and size,
then one cell per column, the columns spread over as many floats as fit the page width."""

from __future__ import annotations

from collections.abc import Callable

from lib.report.formatting import grouped, run_label
from lib.report.section import Tabular


def chunks(items: list, size: int) -> list[list]:
    return [items[start:start + size] for start in range(0, len(items), size)] or [[]]


def run_tables(rows: list[dict], default_seed: int, columns: list, header: Callable, cells: Callable,
               per_table: int, note: str | None = None) -> list[Tabular]:
    """A part per `per_table` columns: each row's method and size, then `cells(row, part)`;
    `header(column)` heads a column; `note` goes under the last part; a rule between methods."""
    parts = chunks(columns, per_table)
    return [Tabular("l r" + " c" * len(part), ["方法", "训练数据", *(header(column) for column in part)],
                    grouped([[*run_label(row, default_seed), *cells(row, part)] for row in rows],
                            [row.get("method") for row in rows]),
                    note if number == len(parts) else None)
            for number, part in enumerate(parts, start=1)]
