"""Section "General": the general-ability track (does medical fine-tuning cost general knowledge?):
each run's general multiple-choice accuracy by letter and by option text (eval.json general), its
change from its own base row with the paired interval (scaling.json forgetting), and the
findings as sentences written from those numbers (\\GeneralFindings)."""

from __future__ import annotations

from lib.config import BASE_RUN
from lib.evaluate.metrics import MCQ_SCORINGS
from lib.io import nested_value
from lib.report.columns import fixed, stat_cell
from lib.report.formatting import CONFIDENCE_TEXT, distinct_values, method_name
from lib.report.run_tables import run_tables
from lib.report.section import Section, Table, Tabular
from lib.report.study import Study
from lib.tex import MISSING, escape, format_count

COLUMNS_PER_TABLE = 5
SCORING_WORDS = {"letter": "字母准确率", "acc": "完形准确率（acc）", "acc_norm": "完形准确率（按字归一，acc\\_norm）"}
TRACK_WORDS = {"mcq": "医学选择题", "general": "通用选择题"}
SHOWN_CHANGES = ("letter", "acc_norm")  # the headline scoring and the one a small model can show
POINTS = fixed(1)


def changes_by_run(study: Study) -> dict[str, dict]:
    return {change["run"]: change for change in (study.scaling or {}).get("forgetting") or []}


def verdict(stat: dict | None) -> str:
    """What an interval of a change says, in words: below 0, above 0, or containing 0."""
    if not stat or None in (stat.get("ci_low"), stat.get("ci_high")):
        return "没有区间"
    if stat["ci_high"] < 0:
        return "区间整体低于 0，是可测的下降"
    if stat["ci_low"] > 0:
        return "区间整体高于 0，是可测的上升"
    return "区间含 0，在这些题目上看不出变化"


def change_phrase(change: dict, track: str, scoring: str) -> str:
    stat = (change["changes"].get(track) or {}).get(scoring)
    if not stat or stat.get("value") is None:
        return f"{TRACK_WORDS[track]}{SCORING_WORDS[scoring]}没有结果"
    return (f"{TRACK_WORDS[track]}{SCORING_WORDS[scoring]}变化 {POINTS(stat['value'])} 个百分点"
            f"（区间 [{POINTS(stat['ci_low'])}, {POINTS(stat['ci_high'])}]），{verdict(stat)}")


def largest_run_sentence(study: Study, method: str, changes: list[dict]) -> str:
    """The method's largest size at the default seed: its change on both tracks."""
    own = [c for c in changes if c["method"] == method and c["seed"] in (study.default_seed, None)]
    if not own:
        return ""
    largest = max(own, key=lambda c: c["examples"] or 0)
    base = "基座模型（NF4）" if largest["base_run"] != BASE_RUN else "基座模型"
    phrases = [change_phrase(largest, track, scoring) for track in ("general", "mcq") for scoring in SHOWN_CHANGES]
    return (f"{method_name(method)} 在最大规模（{format_count(largest['examples'])} 条）上相对其起点{base}："
            + "；".join(phrases) + "。")


def count_sentence(changes: list[dict]) -> str:
    """How many runs' general change lies below 0 by each shown scoring."""
    parts = []
    for scoring in SHOWN_CHANGES:
        stats = [nested_value(c["changes"], f"general.{scoring}") for c in changes]
        stats = [s for s in stats if s and s.get("ci_high") is not None]
        below = sum(s["ci_high"] < 0 for s in stats)
        parts.append(f"按{SCORING_WORDS[scoring]}，{format_count(len(stats))} 个运行中区间整体低于 0 的有 "
                     f"{format_count(below)} 个")
    return "在全部微调运行中，" + "；".join(parts) + "。"


def chance_sentence(study: Study) -> str:
    """Where a base row's general accuracy is not above chance beyond its interval, it has no measurable
    general knowledge to lose, and a change from it says nothing about forgetting."""
    at_chance, chance = [], None
    for run in dict.fromkeys(c["base_run"] for c in changes_by_run(study).values()):
        general = (study.evals.get(run) or {}).get("general") or {}
        chance = general.get("chance", chance)
        for scoring in SHOWN_CHANGES:
            low = nested_value(general, f"{MCQ_SCORINGS[scoring][0]}.ci_low")
            if chance is not None and low is not None and low <= chance:
                at_chance.append(f"{'基座模型（NF4）' if run != BASE_RUN else '基座模型'}的{SCORING_WORDS[scoring]}")
    if not at_chance:
        return ""
    return (f"注意：{'、'.join(at_chance)}在通用题上的区间含随机水平（{POINTS(chance)}" + r"\%" +
            "）或低于它，即起点没有可测的通用知识可以失去；相应的变化不能说明是否遗忘。")


def findings(study: Study) -> str:
    """Sentences written from the numbers: each method's largest run, then the count over all runs,
    then what the numbers cannot say."""
    changes = list(changes_by_run(study).values())
    if not changes:
        return MISSING
    methods = dict.fromkeys(c["method"] for c in changes)
    sentences = [chance_sentence(study), *(largest_run_sentence(study, method, changes) for method in methods)]
    sentences.append(count_sentence(changes))
    sentences.append("这些变化只针对这一组题目：区间反映题目的抽样误差，单个训练种子时不含训练的随机性；"
                     "区间含 0 说明这里测不出变化，并不证明没有遗忘。")
    return "".join(s for s in sentences if s)


def general_macros(study: Study) -> dict:
    def values(key: str) -> list:
        return [nested_value(e, f"general.{key}") for e in study.evals.values()]

    sources = {s for e in study.evals.values() for s in (nested_value(e, "general.per_source") or {})}
    return {"GeneralItems": distinct_values(values("overall.n"), format_count),
            "GeneralChance": distinct_values(values("chance"), fixed(1)),
            "NumGeneralSources": format_count(len(sources)) if sources else MISSING,
            "GeneralFindings": findings(study)}


def general_rows(study: Study) -> list[Tabular]:
    """Runs in summary order: accuracy by each scoring, then the change of each shown scoring."""
    rows = [row for row in study.rows or [] if nested_value(study.evals.get(row["run"]), "general.overall")]
    changes = changes_by_run(study)
    columns = [("accuracy", scoring) for scoring in MCQ_SCORINGS] + [("change", scoring) for scoring in SHOWN_CHANGES]

    def cells(row: dict, part: list[tuple[str, str]]) -> list[str]:
        general = study.evals[row["run"]]["general"]
        return [stat_cell(general.get(MCQ_SCORINGS[scoring][0]), POINTS) if kind == "accuracy"
                else stat_cell(nested_value(changes.get(row["run"], {}).get("changes"), f"general.{scoring}"), POINTS)
                for kind, scoring in part]

    def header(column: tuple[str, str]) -> str:
        kind, scoring = column
        return SCORING_WORDS[scoring] if kind == "accuracy" else f"{SCORING_WORDS[scoring]}变化"

    note = ("变化为运行的准确率减去其起点（LoRA：基座模型；QLoRA：NF4 基座模型）的准确率，单位为百分点，"
            "区间为对题目的配对 bootstrap。")
    return run_tables(rows, study.default_seed, columns, header, cells, COLUMNS_PER_TABLE, note=escape(note))


SECTION = Section(
    name="General",
    present=lambda study: any(nested_value(e, "general.overall") for e in study.evals.values()),
    missing_sentence=lambda study: "还没有运行的 \\texttt{eval.json} 含通用选择题结果，通用能力评测尚无法给出。",
    macros=general_macros,
    files=(Table("general", rf"通用选择题的准确率与相对起点的变化（\%；括号内为 {CONFIDENCE_TEXT} 区间）",
                 "tab:general", general_rows),),
)
