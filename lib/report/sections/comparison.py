"""Section "Comparison": QLoRA against LoRA at each size both finished, quality by paired
bootstrap over the shared test items (and the training seeds, where there are several), cost as
ratios (scaling.json's lora_vs_qlora). p-values only where scaling.json has them (several seeds):
with one seed the intervals leave training randomness out, and the table says so."""

from __future__ import annotations

from collections.abc import Callable

from lib.report.columns import fixed, interval_macros, stat_cell
from lib.report.formatting import interval_scope
from lib.report.section import Section, Table, Tabular
from lib.report.study import Study
from lib.tex import format_count, format_number, format_p_value

DIFFERENCES = (("rougeL_diff", "RougeL", fixed(1)), ("loss_diff", "Loss", fixed(3)))  # key, macro name, format
RATIOS = (("time_ratio", "Time"), ("memory_ratio", "Memory"), ("throughput_ratio", "Throughput"))


def excludes_zero(stat: dict | None) -> bool:
    return (stat or {}).get("ci_low") is not None and (stat["ci_low"] > 0 or stat["ci_high"] < 0)


def comparison_macros(study: Study) -> dict:
    comparisons = [c for c in (study.scaling or {}).get("lora_vs_qlora") or [] if c]
    last = comparisons[-1] if comparisons else {}
    macros = {"ComparisonSize": format_count(last.get("examples")), "NumComparisons": format_count(len(comparisons))}
    for key, name, format_value in DIFFERENCES:
        stat = last.get(key) or {}
        macros |= interval_macros(f"Qlora{name}Diff", stat, format_value, value_key="difference")
        macros[f"Qlora{name}DiffP"] = format_p_value(stat.get("p_value"), relation=True)
        macros[f"Num{name}DiffsExcludingZero"] = format_count(sum(excludes_zero(c.get(key)) for c in comparisons))
    for key, name in RATIOS:
        macros[f"Qlora{name}Ratio"] = format_number(last.get(key), 2)
    return macros


def has_p_values(comparisons: list[dict]) -> bool:
    return any((c.get(key) or {}).get("p_value") is not None for c in comparisons for key, _, _ in DIFFERENCES)


def comparison_rows(study: Study) -> Tabular:
    comparisons = study.scaling["lora_vs_qlora"]
    with_p = has_p_values(comparisons)

    def difference(stat: dict | None, format_value: Callable) -> list[str]:
        cell = stat_cell(stat, format_value, "difference")
        return [cell, format_p_value((stat or {}).get("p_value"))] if with_p else [cell]

    rows = [[format_count(c.get("examples")),
             *(cell for key, _, format_value in DIFFERENCES for cell in difference(c.get(key), format_value)),
             *(format_number(c.get(key), 2) for key, _ in RATIOS)]
            for c in comparisons]
    p_header = ["$p$"] if with_p else []
    return Tabular("r c r c r r r r" if with_p else "r c c r r r",
                   ["训练数据", r"$\Delta$ROUGE-L", *p_header, r"$\Delta$测试损失", *p_header,
                    "时间比", "峰值内存比", "吞吐比"],
                   rows, note=r"$\Delta$ROUGE-L 为正、$\Delta$测试损失为负表示 QLoRA 更好；"
                              r"时间比与内存比小于 1 表示 QLoRA 更省。"
                              + interval_scope(study.scaling))


def missing_sentence(study: Study) -> str:
    if not study.present("scaling"):
        return study.absent_files_sentence(["scaling"], "两种方法的比较")
    return "还没有一个数据规模上 LoRA 与 QLoRA 都已完成评测，本节的比较尚无法给出。"


SECTION = Section(
    name="Comparison",
    present=lambda study: bool((study.scaling or {}).get("lora_vs_qlora")),
    missing_sentence=missing_sentence,
    macros=comparison_macros,
    files=(Table("lora_vs_qlora",
                 r"QLoRA 与 LoRA 的比较：质量差（QLoRA $-$ LoRA，配对 bootstrap）与成本比（QLoRA / LoRA）",
                 "tab:lora-vs-qlora", comparison_rows),),
)
