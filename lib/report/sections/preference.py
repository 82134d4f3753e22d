"""Section "Preference": what people preferred in the blind side-by-side review (`make review`),
from results/<profile>/review/preference.json (lib.review.bradley_terry): Bradley-Terry strengths with
bootstrap intervals, win rates against the base model, agreement between raters. Shown only when
someone has voted; it says how many raters and votes it rests on.

An LLM judge's votes (`make review-judge`, raters judge:<model>) are never among people's: they
have macros of their own (PreferenceJudge...) and a sentence of their own under people's table
that names each judge, its votes, its own Bradley-Terry ranking and how often people chose as it did."""

from __future__ import annotations

from lib.config import BASE_RUN
from lib.report.columns import fixed, interval_macros, stat_cell
from lib.report.formatting import CONFIDENCE_TEXT, method_name
from lib.report.section import Section, Table, Tabular
from lib.report.study import Study
from lib.tex import MISSING, format_count, format_number, texttt


def ranked_runs(study: Study) -> list[tuple[str, dict]]:
    """(run, its entry) strongest first."""
    return ranked((study.preference or {}).get("runs") or {})


def ranked(runs: dict) -> list[tuple[str, dict]]:
    return sorted(runs.items(), key=lambda entry: -entry[1]["strength"]["value"])


def judges(study: Study) -> dict:
    """{judge:<model>: its analysis} of the LLM judges that voted."""
    return {name: entry for name, entry in ((study.preference or {}).get("judges") or {}).items() if entry.get("votes")}


def judge_sentence(study: Study) -> str | None:
    """People's table's note on the judges' votes, kept out of it; None without judges."""
    found = judges(study)
    if not found:
        return None
    parts = []
    for name, entry in found.items():
        order = " $>$ ".join(f"{texttt(run)}（{format_number(run_entry['strength']['value'], 2)}）"
                             for run, run_entry in ranked(entry["runs"]))
        agreement = entry.get("agreement_with_people") or {}
        agreed = (f"；在双方都评过的比较上，评审者的 {format_count(agreement['votes'])} 票中有 "
                  f"{format_number(agreement['percent'], 0)}\\% 与它的结论相同"
                  if agreement.get("percent") is not None else "")
        parts.append(f"{texttt(name)} 的 {format_count(entry['votes'])} 票（其 Bradley--Terry 排序：{order}{agreed}）")
    return (f"另有 LLM 评审 {'、'.join(parts)}，不计入本表与一致率；LLM 评审对每个比较看两次"
            "（交换两个回答的 A、B 位置），两次结论一致才计该结论，否则计为平局。")


def win_rate_text(entry: dict) -> str:
    rate = entry.get("win_rate_vs_base")
    return f"{format_number(100 * rate['value'], 0)}\\%（{format_count(rate['n'])}）" if rate else MISSING


def preference_macros(study: Study) -> dict:
    preference = study.preference or {}
    agreement = preference.get("agreement") or {}
    kappa, percent = agreement.get("fleiss_kappa"), agreement.get("percent")
    ranked = ranked_runs(study)
    top_run, top = next(((run, entry) for run, entry in ranked if run != BASE_RUN), (None, {}))
    found = judges(study)
    first_judge = next(iter(found.values()), {})
    judge_top = next((run for run, _ in ranked_of(first_judge) if run != BASE_RUN), None)
    judge_agreement = (first_judge.get("agreement_with_people") or {}).get("percent")
    return {"PreferenceRaters": format_count(preference.get("raters")),
            "PreferenceVotes": format_count(preference.get("votes")),
            "PreferenceItems": format_count(preference.get("items")),
            "PreferencePairs": format_count(preference.get("pairs")),
            "PreferenceAgreementItems": format_count(agreement.get("items")),
            "PreferenceAgreement": format_number(percent, 0) if percent is not None else MISSING,
            "PreferenceKappa": format_number(kappa, 2) if kappa is not None else MISSING,
            "PreferenceTopRun": texttt(top_run) if top_run else MISSING,
            "PreferenceTopWinRate": win_rate_text(top) if top else MISSING,
            **interval_macros("PreferenceTopStrength", top.get("strength"), fixed(2)),
            "PreferenceJudges": "、".join(texttt(name) for name in found) if found else MISSING,
            "PreferenceJudgeVotes": format_count(sum(entry["votes"] for entry in found.values())),
            "PreferenceJudgeTopRun": texttt(judge_top) if judge_top else MISSING,
            "PreferenceJudgeAgreement": format_number(judge_agreement, 0) if judge_agreement is not None else MISSING}


def ranked_of(entry: dict) -> list[tuple[str, dict]]:
    return ranked(entry.get("runs") or {})


def preference_rows(study: Study) -> Tabular:
    rows = [[texttt(run), method_name(entry.get("method")) if entry.get("method") else MISSING,
             format_count(entry.get("examples")), stat_cell(entry["strength"], fixed(2)), win_rate_text(entry),
             format_count(entry["votes"]), format_count(entry["unsafe"])] for run, entry in ranked_runs(study)]
    anchor = "基座模型为 0" if study.preference.get("anchor") == "base" else "各运行的均值为 0"
    note = f"强度为对数尺度，{anchor}；相差 1 表示约 73\\% 的胜率。平局与“都不好”各算半胜。"
    if (sentence := judge_sentence(study)) is not None:
        note += sentence
    return Tabular("l l r c r r r",
                   ["运行", "方法", "训练数据", "Bradley--Terry 强度", "对基座胜率（次数）", "比较次数", "不安全标记"],
                   rows, note=note)


SECTION = Section(
    name="Preference",
    present=lambda study: bool((study.preference or {}).get("votes")),
    missing_sentence=lambda study: "还没有人参加盲评（\\texttt{make review}），人工偏好尚无法给出。",
    macros=preference_macros,
    files=(Table("preference",
                 rf"盲评中的人工偏好：Bradley--Terry 强度（括号内为对评测题 bootstrap 的 {CONFIDENCE_TEXT} 区间）",
                 "tab:preference", preference_rows),),
)
