"""The sections of the report, in the order of paper/report.tex (and of macros.tex).

Each module declares SECTION (lib/report/section.py): its inputs check, its "missing" sentence,
its macros and its files in tables/. A new section is a new module here and one entry below.
"""

from __future__ import annotations

from lib.report.section import Section
from lib.report.sections import (
    comparison,
    configuration,
    dataset,
    examples,
    general,
    knowledge,
    preference,
    reproducibility,
    results,
    scaling,
)

SECTIONS: tuple[Section, ...] = (
    dataset.SECTION,
    configuration.SECTION,
    results.SECTION,
    scaling.SECTION,
    comparison.SECTION,
    knowledge.SECTION,
    general.SECTION,
    examples.SECTION,
    preference.SECTION,
    reproducibility.SECTION,
)
