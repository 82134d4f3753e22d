"""Small helpers the report's sections share: nested lookups in the run files, the values of
several runs in one cell, names of methods and runs, paths, rules between groups of rows."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from lib.config import BASE_RUN, METHOD_NAMES, NF4_BASE_RUN
from lib.io import shown
from lib.stats import CONFIDENCE
from lib.tex import MISSING, escape, format_count, format_number

BASE_NAME = "基座模型"  # the untuned model where a method's name goes
UNTUNED_NAMES = {BASE_RUN: BASE_NAME, NF4_BASE_RUN: "基座模型（NF4）"}  # the untuned rows' labels in tables
STATUS_WORDS = {"missing": "尚未开始", "training": "训练未完成", "not_evaluated": "已训练、未评测",
                "incomplete": "适配器文件缺失", "corrupt": "结果文件损坏"}  # lib.runs.STATUSES but done
CONFIDENCE_PERCENT = format_number(100 * CONFIDENCE, 0)  # '95'
CONFIDENCE_TEXT = CONFIDENCE_PERCENT + r"\%"  # '95\%' for captions
# What the intervals of the fits and of QLoRA - LoRA cover, by scaling.json's `resampled`.
INTERVAL_SCOPE = {
    "test items": "每个（方法，规模）只训练了一个种子：区间只反映测试题的抽样误差，"
                  "不包括训练的随机性，因此不给 $p$ 值。",
    "training seeds and test items": "区间用分层 bootstrap 先对训练种子、再对测试题重采样，包括训练的随机性。",
}


def interval_scope(scaling: dict | None) -> str:
    return INTERVAL_SCOPE.get((scaling or {}).get("resampled"), "")


def distinct_values(values: list, format_value: Callable) -> str:
    """The formatted values, each once, joined by ' / ' (settings that differ between runs
    show every value instead of the first one's); missing when there are none."""
    shown_values = list(dict.fromkeys(format_value(v) for v in values if v is not None))
    return " / ".join(shown_values) if shown_values else MISSING


def format_plain(value) -> str:
    """A configured number as written: 2.0 -> '2', 0.05 -> '0.05', 1024 -> '1,024'."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return escape(value)
    return format_count(value) if float(value).is_integer() else escape(f"{value:g}")


def method_name(method: str | None) -> str:
    return BASE_NAME if method == BASE_RUN else METHOD_NAMES.get(method, escape(method or "?"))


def run_label(row: dict, default_seed: int) -> list[str]:
    """The method and size cells of a run (a non-default seed is named)."""
    if row["run"] in UNTUNED_NAMES:
        return [UNTUNED_NAMES[row["run"]], "0"]
    size = format_count(row.get("examples")) if row.get("examples") is not None else escape(row.get("size") or "")
    seed = row.get("seed")
    if seed is not None and int(seed) != default_seed:
        size += f"（种子 {int(seed)}）"
    return [method_name(row.get("method")) if row.get("method") else escape(row["run"]), size]


def path_text(path: Path) -> str:
    """A path in typewriter type that may break after each slash."""
    return r"\texttt{" + escape(shown(path)).replace("/", r"/\allowbreak{}") + "}"


def grouped(rows: list[list[str]], groups: list) -> list:
    """The table rows with a rule (None) wherever the group (the method) changes."""
    ruled = []
    for index, (row, group) in enumerate(zip(rows, groups)):
        if index and group != groups[index - 1]:
            ruled.append(None)
        ruled.append(row)
    return ruled
