"""Section "Knowledge": medical multiple-choice accuracy per run, overall and per source (each
run's eval.json mcq), scored by letter and by option text (the numbers of both scorings are the
registry's metrics mcq_accuracy, mcq_acc, mcq_acc_norm: their macros come from the results section)."""

from __future__ import annotations

from lib.io import nested_value
from lib.report.columns import fixed, stat_cell
from lib.report.formatting import CONFIDENCE_TEXT, distinct_values
from lib.report.run_tables import run_tables
from lib.report.section import Section, Table, Tabular
from lib.report.study import Study
from lib.tex import MISSING, format_count, texttt

SOURCES_PER_TABLE = 5


def knowledge_macros(study: Study) -> dict:
    sources = {source for e in study.evals.values() for source in (nested_value(e, "mcq.per_source") or {})}
    macros = {"NumMcqSources": format_count(len(sources)) if sources else MISSING}
    def values(key: str) -> list:
        return [nested_value(e, f"mcq.{key}") for e in study.evals.values()]

    macros["McqItems"] = distinct_values(values("overall.n"), format_count)
    macros["McqChance"] = distinct_values(values("chance"), fixed(1))  # accuracy by guessing, %
    return macros


def knowledge_rows(study: Study) -> list[Tabular]:
    """Runs in summary order, then runs with MCQ results that summary.csv does not list."""
    runs = [run for run, e in study.evals.items() if nested_value(e, "mcq.overall")]
    listed = [row for row in study.rows or [] if row["run"] in runs]
    rows = listed + [{"run": run, "method": None} for run in sorted(set(runs) - {row["run"] for row in listed})]
    sources = sorted({s for run in runs for s in nested_value(study.evals[run], "mcq.per_source") or {}})

    def cells(row: dict, part: list[str | None]) -> list[str]:
        mcq = study.evals[row["run"]]["mcq"]
        per_source = mcq.get("per_source") or {}
        return [stat_cell(mcq["overall"] if source is None else per_source.get(source), fixed(1)) for source in part]

    def header(source: str | None) -> str:
        return "总体" if source is None else texttt(source)

    return run_tables(rows, study.default_seed, [None, *sources], header, cells, SOURCES_PER_TABLE)


SECTION = Section(
    name="Knowledge",
    present=lambda study: any(nested_value(e, "mcq.overall") for e in study.evals.values()),
    missing_sentence=lambda study: "还没有运行的 \\texttt{eval.json} 含选择题结果，知识评测尚无法给出。",
    macros=knowledge_macros,
    files=(Table("knowledge", rf"医学知识选择题的准确率（\%，按来源；括号内为 {CONFIDENCE_TEXT} 区间）",
                 "tab:knowledge", knowledge_rows),),
)
