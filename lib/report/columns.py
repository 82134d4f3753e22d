"""The numbers of summary.csv as the report shows them: a Column (header, macro name, format)
per metric, from the registry lib.evaluate.metrics.METRICS, and per training cost; the macros
and table cells of a summary row."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from lib.evaluate.metrics import METRICS
from lib.tex import escape, format_count, format_number, format_significant, macro_name, value_with_interval

UNREGISTERED_DECIMALS = 2  # a metric summary.csv has but the registry does not describe
INTERVAL_SUFFIXES = (("", ""), ("_ci_low", "Low"), ("_ci_high", "High"))  # summary.csv column, macro name


def fixed(decimals: int) -> Callable:
    return lambda value: format_number(value, decimals)


def scaled(divisor: float, format_value: Callable) -> Callable:
    """Format value / divisor: seconds as minutes, parameters in millions."""
    return lambda value: format_value(None if value is None else value / divisor)


@dataclass(frozen=True)
class Column:
    """A number of summary.csv: its column, table header, macro name and format."""
    key: str
    header: str
    format: Callable
    name: str = ""

    @property
    def macro(self) -> str:
        return self.name or macro_name(self.key)


def metric_column(name: str) -> Column:
    """A metric as its registry entry describes it (units as in eval.json: ROUGE and BLEU 0-100,
    rates and accuracy in percent, loss in nats per reference token); its name and two decimals
    where it is not registered."""
    metric = METRICS.get(name)
    if metric is None:
        return Column(name, escape(name), fixed(UNREGISTERED_DECIMALS))
    return Column(name, escape(metric.chinese), fixed(metric.decimals))


def quoted_metrics() -> list[Column]:
    """The metrics every report has macros for, measured or not, so that paper/report.tex may
    quote any of them: all registered ones but the optional (the judge's)."""
    return [metric_column(name) for name, metric in METRICS.items() if not metric.optional]


COSTS = (
    Column("wall_time_s", "训练时长（分钟）", scaled(60, fixed(1)), "WallTimeMinutes"),
    Column("steps", "优化步数", format_count, "Steps"),
    Column("examples_per_step", "每步样本", format_count, "ExamplesPerStep"),
    Column("tokens_per_step", "每步 token", format_count, "TokensPerStep"),
    Column("train_tokens", "训练 token（百万）", scaled(1e6, fixed(2)), "TrainTokensMillions"),
    Column("tokens_per_s", "token/秒", format_count, "TokensPerSecond"),
    Column("peak_memory_gb", "峰值内存（GB）", fixed(1), "PeakMemory"),
    Column("trainable_params", "可训练参数（百万）", scaled(1e6, format_significant), "TrainableParamsMillions"),
    Column("total_params", "总参数（百万）", scaled(1e6, format_significant), "TotalParamsMillions"),
    Column("final_train_loss", "最终训练损失", fixed(3), "FinalTrainLoss"),
    Column("best_dev_loss", "最佳验证损失", fixed(3), "BestDevLoss"),
)
MFU = Column("mfu", r"MFU（\%）", scaled(0.01, fixed(1)), "Mfu")  # train_metrics.json: a fraction, or null on CPU


def interval_macros(prefix: str, stat: dict | None, format_value: Callable, value_key: str = "value") -> dict:
    """{prefix: value, prefixLow: .., prefixHigh: ..} from a {"value", "ci_low", "ci_high"} dict."""
    stat = stat or {}
    return {prefix: format_value(stat.get(value_key)), f"{prefix}Low": format_value(stat.get("ci_low")),
            f"{prefix}High": format_value(stat.get("ci_high"))}


def row_macros(prefix: str, row: dict | None, metrics: list[Column]) -> dict:
    """Macros of one summary row: every metric with its interval, then every cost column."""
    row = row or {}
    macros = {}
    for column in metrics:
        for suffix, name_suffix in INTERVAL_SUFFIXES:
            macros[f"{prefix}{column.macro}{name_suffix}"] = column.format(row.get(f"{column.key}{suffix}"))
    for column in COSTS:
        macros[f"{prefix}{column.macro}"] = column.format(row.get(column.key))
    return macros


def metric_cell(row: dict, column: Column) -> str:
    """A summary row's metric with its interval."""
    return value_with_interval(*(column.format(row.get(f"{column.key}{suffix}")) for suffix, _ in INTERVAL_SUFFIXES))


def stat_cell(stat: dict | None, format_value: Callable, value_key: str = "value") -> str:
    """A {"value" (or "difference"), "ci_low", "ci_high"} statistic with its interval."""
    stat = stat or {}
    return value_with_interval(*(format_value(stat.get(key)) for key in (value_key, "ci_low", "ci_high")))
