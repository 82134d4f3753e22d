"""Section "Provenance": what the runs were made with (the provenance record of each run's
config.json, or eval.json where a run has no config: the base model): commit, hardware,
platform, seeds, dates, library versions. Every run's value, each once."""

from __future__ import annotations

from collections.abc import Callable

from lib.io import nested_value
from lib.report.formatting import distinct_values, format_plain
from lib.report.section import Section, Table, Tabular
from lib.report.study import Study
from lib.tex import escape, macro_name, texttt


def provenances(study: Study) -> list[dict]:
    """The provenance of every run's config.json, and of eval.json where a run has no config."""
    records = [c.get("provenance") for c in study.configs.values()]
    records += [e.get("provenance") for run, e in study.evals.items() if run not in study.configs]
    return [record for record in records if record]


def short_commit(git: dict) -> str | None:
    commit = (git or {}).get("commit")
    if not commit:
        return None
    return commit[:12] + ("（含未提交改动）" if git.get("dirty") else "")


def hub_commit(origin: dict | None) -> str:
    """The hub commit an input was fetched at, or what it was instead (a local or generated file)."""
    commit = (origin or {}).get("commit")
    return commit[:12] if commit else "无（本地或生成的文件）"


def model_origins(study: Study) -> list[dict | None]:
    """What `make model` recorded of the base model, from each run's config.json and eval.json."""
    return ([nested_value(c, "resolved.model_origin") for c in study.configs.values()]
            + [e.get("model_origin") for e in study.evals.values()])


def hardware_text(hardware: dict) -> str | None:
    if not hardware:
        return None
    gpus = hardware.get("gpus") or []
    if gpus:
        names = list(dict.fromkeys(gpus))
        return "、".join(f"{name} × {gpus.count(name)}" for name in names)
    return f"CPU（{hardware.get('cpu_count', '?')} 核）"


def facts(study: Study) -> list[tuple[str, str, str, str]]:
    """(macro name, label, macro text, table cell) of each fact; the cell differs from the macro
    where the table sets it in typewriter."""
    records = provenances(study)
    packages = list(dict.fromkeys(p for r in records for p in (r.get("versions") or {})))
    dates = sorted(str(r["created"])[:10] for r in records if r.get("created"))

    def fact(name: str, label: str, values: list, format_value: Callable = escape, cell_format: Callable | None = None):
        text = distinct_values(values, format_value)
        return name, label, text, distinct_values(values, cell_format) if cell_format else text

    commits = [short_commit(r.get("git")) for r in records]
    rows = [fact("GitCommit", "Git 提交", commits, cell_format=texttt),
            fact("ModelCommit", "基座模型的 hub 提交", [hub_commit(o) for o in model_origins(study)]),
            fact("DataCommit", "数据的 hub 提交", [hub_commit(nested_value(study.manifest, "source"))]),
            fact("Hardware", "硬件", [hardware_text(r.get("hardware")) for r in records]),
            fact("Platform", "平台", [nested_value(r, "hardware.platform") for r in records]),
            fact("Seeds", "随机种子", [r.get("seed") for r in records], format_plain),
            fact("RunDates", "运行日期（UTC）", dates)]
    rows += [fact(macro_name(package, "version"), texttt(package),
                  [(r.get("versions") or {}).get(package) for r in records])
             for package in packages]
    return rows


def reproducibility_macros(study: Study) -> dict:
    return {name: text for name, _, text, _ in facts(study)}


def reproducibility_rows(study: Study) -> Tabular:
    return Tabular(r"l p{0.6\linewidth}", ["项目", "值"], [[label, cell] for _, label, _, cell in facts(study)],
                   note="一格中有多个值（以 / 分隔）表示不同运行的记录不同。")


SECTION = Section(
    name="Provenance",
    present=lambda study: bool(provenances(study)),
    missing_sentence=lambda study: "还没有记录 provenance 的运行，可复现信息尚无法给出。",
    macros=reproducibility_macros,
    files=(Table("reproducibility", "可复现信息（来自各运行记录的 provenance）", "tab:reproducibility",
                 reproducibility_rows),),
)
