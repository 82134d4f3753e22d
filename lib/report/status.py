"""status.tex: what the report has and lacks.

\\if switches for paper/report.tex (DemoProfile, SingleSeed, HubData, ReportComplete, and
Have<Section> per section), each section's \\<Section>MissingNote, and \\MissingList: every
absent input file, unfinished run and failed fit, one item each.
"""

from __future__ import annotations

from lib.io import nested_value
from lib.report.formatting import STATUS_WORDS, method_name, path_text
from lib.report.sections.scaling import fit_status_text
from lib.report.study import Study
from lib.summarize.table import expected_runs
from lib.tex import escape, format_count, macro, texttt

INPUT_FILES = ("cleaning", "manifest", "summary", "scaling", "examples")  # of Study.files


def missing_items(study: Study) -> list[str]:
    """What the report lacks, one LaTeX phrase each: absent files, unfinished runs, failed fits."""
    items = [f"缺少 {path_text(study.files[name])}" for name in INPUT_FILES if not study.present(name)]
    if study.rows is not None:
        listed = {row["run"] for row in study.rows}
        expected = [run["run"] for run in expected_runs(study.grid, study.default_seed)]
        by_status: dict[str, list[str]] = {}
        for row in study.rows:
            if row["status"] != "done":
                by_status.setdefault(row["status"], []).append(row["run"])
        by_status.setdefault("missing", []).extend(run for run in expected if run not in listed)
        for status, runs in by_status.items():
            if runs:
                names = "、".join(texttt(run) for run in runs)
                items.append(f"{STATUS_WORDS.get(status, escape(status))}的运行"
                             f"（{format_count(len(runs))} 个）：{names}")
    for method, fit in ((study.scaling or {}).get("loss_fits") or {}).items():
        if fit.get("status") != "ok":
            items.append(f"{method_name(method)} 的规模拟合：{fit_status_text(fit.get('status'))}")
    return items


def status_tex(study: Study, sections: dict[str, tuple[bool, str]], items: list[str]) -> str:
    """`sections`: each section's name -> (inputs present, its missing sentence); `items`:
    missing_items."""
    lines = ["% What the report has and lacks; written by `python -m lib report`. Do not edit."]
    sources = {nested_value(config, "data.source") for config in study.configs.values()}
    switches = {"DemoProfile": study.profile == "demo", "SingleSeed": len(study.seeds) == 1,
                "HubData": sources == {"hub"},  # the shibing624/medical data, to be cited
                "ReportComplete": not items}
    switches |= {f"Have{name}": present for name, (present, _) in sections.items()}
    for name, value in switches.items():
        lines += [f"\\newif\\if{name}", f"\\{name}{'true' if value else 'false'}"]
    lines += [macro(f"{name}MissingNote", f"\\MissingInput{{{sentence}}}") for name, (_, sentence) in sections.items()]
    body = "\n".join(f"  \\item {item}" for item in items) or r"  \item 无"
    lines.append(macro("MissingList", "\n\\begin{itemize}\n" + body + "\n\\end{itemize}\n"))
    return "\n".join(lines) + "\n"
