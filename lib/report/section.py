"""What a section of the report declares: whether its inputs are there, the sentence it shows
instead, its macros and its files in tables/.

paper/report.tex shows a section's text between \\ifHave<Name> and \\else, and its
\\<Name>MissingNote after: status.tex defines both from `present` and `missing_sentence`
(lib/report/status.py). Every table file exists whatever is missing, so report.tex always
compiles: where the section's inputs are absent the writer (lib/report/write.py) puts the
"missing" form of each of its files there instead of the table.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from lib.report.study import Study
from lib.tex import missing_table, table


@dataclass(frozen=True)
class Tabular:
    """The inside of a table float: column spec, header cells, rows of LaTeX cells (None draws a
    rule between groups), a note in small print under it."""
    columns: str
    header: list[str]
    rows: list
    note: str | None = None


def always_ready(study: Study) -> None:
    """No check of a table's own: its section's inputs are all it needs."""
    return None


@dataclass(frozen=True)
class Table:
    """The file tables/<stem>.tex: one table float, or several where `body` returns several
    parts (a table too wide for the page: "（1/2）" after the caption, ":2" after the label)."""
    stem: str
    caption: str
    label: str  # \\label, for \\ref in report.tex
    body: Callable[[Study], Tabular | list[Tabular]]
    # A check of this table's own beyond its section's: why it cannot be shown yet, or None.
    unavailable: Callable[[Study], str | None] = always_ready

    def tex(self, study: Study) -> str:
        if (sentence := self.unavailable(study)) is not None:
            return self.missing(sentence)
        parts = self.body(study)
        parts = [parts] if isinstance(parts, Tabular) else parts
        floats = []
        for number, part in enumerate(parts, start=1):
            suffix = f"（{number}/{len(parts)}）" if len(parts) > 1 else ""
            label = self.label if number == 1 else f"{self.label}:{number}"
            floats.append(table(self.caption + suffix, label, part.columns, part.header, part.rows, note=part.note))
        return "\n".join(floats)

    def missing(self, sentence: str) -> str:
        """The float with its caption (references still resolve) and the sentence."""
        return missing_table(self.caption, self.label, sentence)


@dataclass(frozen=True)
class Listing:
    """The file tables/<stem>.tex that is not a float: LaTeX that report.tex places as it is."""
    stem: str
    body: Callable[[Study], str]

    def tex(self, study: Study) -> str:
        return self.body(study)

    def missing(self, sentence: str) -> str:
        return f"\\MissingInput{{{sentence}}}\n"


@dataclass(frozen=True)
class Section:
    """One section of paper/report.tex."""
    name: str  # report.tex's \\ifHave<name> and \\<name>MissingNote
    present: Callable[[Study], bool]  # whether its inputs are there
    missing_sentence: Callable[[Study], str]  # what it shows instead (its tables show the same)
    macros: Callable[[Study], dict[str, str]]  # macro name -> LaTeX, every name whatever is missing
    files: tuple[Table | Listing, ...]  # its files in tables/
