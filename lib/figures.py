"""The figures of a study, as PDF (for the paper) and PNG (for the README).

    python -m lib figures --summary results/demo --runs results/demo/runs \\
        --png results/demo/figures --pdf paper/generated/demo/figures

Reads what `python -m lib summarize` wrote to --summary (summary.csv, scaling.json,
examples.json) and, for what the summary does not hold, the runs themselves: the loss curves
(train_metrics.json log_history) and the knowledge track per source (eval.json mcq.per_source).
Each figure is <stem>.pdf and <stem>.png:

    metrics_vs_size  test loss, ROUGE-L, BLEU-4 (characters), MCQ accuracy vs training examples
                     (log x), one line per method with its 95% band, each method's 0-data row as a
                     horizontal line: the unquantised base (LoRA's, dashed) and the NF4 base (QLoRA's, dotted)
    loss_fit         test loss on log-log axes with the fitted E + A * D^(-alpha) per method and
                     the hold-out prediction of the largest size
    cost             wall time, peak memory and training throughput per method and size
    loss_curves      train (solid) and dev (dashed) loss over steps, a panel per method
    knowledge        MCQ accuracy vs size, overall and per source
    forgetting       medical gain and general change vs size: each run's accuracy minus its own base
                     row's with the paired interval (scaling.json forgetting), by letter and by cloze
    examples         a few test questions with the reference, base and best run's answers
    preference       human preference (Bradley-Terry strength from the blind review's
                     review/preference.json) vs training examples, one line per method

A figure the data cannot show yet (no finished run, no fit, no Chinese font for the examples)
is skipped with a note, and an old file of it is removed, so the folders always match the
summary. Last, figures.json is written to both folders:
    {"made": [stems], "skipped": {stem: reason}, "cjk_font": family | null, "provenance": {...}}

Labels are Chinese and English when a CJK font is installed (lib/fonts.py), English otherwise;
the metrics' labels are the registry's (lib.evaluate.metrics.METRICS).
"""

from __future__ import annotations

import argparse
import math
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from lib.config import BASE_RUN, METHOD_NAMES, NF4_BASE_RUN
from lib.errors import UserError
from lib.evaluate.metrics import MCQ_TRACKS, METRICS, track_metric
from lib.io import atomic_write, provenance, read_json, shown, write_json
from lib.runs import readable_run_files
from lib.summarize.fits import power_law
from lib.summarize.schema import FIT_PARAMETERS, TEXT_COLUMNS, Examples, Scaling
from lib.summarize.table import read_summary_rows
from lib.tex import printable

PNG_DPI = 200  # sharp on high-density screens in a README, ~100-200 kB per figure

# Why a method has no loss fit, by its status in scaling.json's loss_fits.
FIT_STATUS_LABELS = {
    "too_few_points": (f"少于 {len(FIT_PARAMETERS)} 个数据规模，暂不拟合",
                       f"fewer than {len(FIT_PARAMETERS)} sizes: no fit yet"),
    "fit_failed": ("拟合未收敛", "the fit did not converge"),
}

# Labels other than the metrics' (lib.evaluate.metrics.METRICS has those): key -> (Chinese,
# English). English alone where no CJK font is installed.
LABELS = {
    "examples": ("训练样本数", "training examples"),
    "base": ("基座模型", "base model"),
    "base_line": ("基座模型（未量化，LoRA 的起点）", "base model (unquantised, LoRA's start)"),
    "base_nf4_line": ("基座模型（NF4，QLoRA 的起点）", "base model (NF4, QLoRA's start)"),
    "wall_time": ("训练时间", "training time"),
    "peak_memory_gb": ("峰值显存/内存 GB", "peak memory (GB)"),
    "tokens_per_s": ("吞吐 tokens/s", "throughput (tokens/s)"),
    "step": ("步数", "step"),
    "loss": ("损失", "loss"),
    "train": ("训练集", "train"),
    "dev": ("验证集", "dev"),
    "fit": ("拟合", "fit"),
    "holdout": ("留出预测", "hold-out prediction"),
    "overall": ("总体", "overall"),
    "question": ("问题", "question"),
    "reference": ("参考答案", "reference"),
    "best": ("最佳模型", "best run:"),
    "no_data": ("暂无数据", "no data yet"),
    "change_from_base": ("相对自身基座的变化（百分点）", "change from own base (points)"),
    "preference": ("人工偏好：Bradley–Terry 强度", "human preference (Bradley–Terry strength)"),
    **FIT_STATUS_LABELS,
}
METRIC_PANELS = ("test_loss", "rougeL", "bleu4_char", "mcq_accuracy")
# Each method's 0-data row as a horizontal line: its style and label (a key of LABELS).
UNTUNED_LINES = {BASE_RUN: ("--", "base_line"), NF4_BASE_RUN: (":", "base_nf4_line")}
X_MARGIN = 1.25  # log x axes reach a quarter of a size step beyond the smallest and largest size
MAX_SOURCE_PANELS = 8  # the knowledge figure shows the largest sources; more would be unreadable
FORGETTING_SCORINGS = ("letter", "acc_norm")  # the headline scoring, and cloze per character

# The examples table: each cell wraps at this many half-width characters (a Chinese character
# counts 2) and keeps at most this many lines, ending in "…" where the text goes on.
EXAMPLE_CELL_WIDTH = 30
EXAMPLE_CELL_LINES = 8
EXAMPLE_FONT_PT = 8


class NothingToDraw(Exception):
    """The data cannot show this figure yet; the message says why."""


@dataclass
class Inputs:
    summary: pd.DataFrame
    scaling: Scaling | None
    examples: Examples | None
    runs_dir: Path
    cjk_font: str | None  # the family that renders Chinese, or None: English labels only
    preference: dict | None = None  # the blind review's analysis (lib.review.bradley_terry), where there is one

    @property
    def chinese(self) -> bool:
        return self.cjk_font is not None

    def label(self, key: str, separator: str = "\n") -> str:
        """The label of a metric (from the registry) or of another key of LABELS."""
        metric = METRICS.get(key)
        chinese, english = (metric.chinese, metric.english) if metric else LABELS[key]
        return f"{chinese}{separator}{english}" if self.chinese and chinese != english else english


# --- style -------------------------------------------------------------------------------------


def set_style() -> str | None:
    """seaborn's theme, then the CJK font (set_theme resets rcParams); the CJK family or None."""
    import matplotlib

    matplotlib.use("Agg")
    import seaborn as sns

    from lib.fonts import use_cjk_font

    sns.set_theme(context="paper", style="whitegrid")
    family = use_cjk_font()
    matplotlib.rcParams["pdf.fonttype"] = 42  # TrueType in the PDF: selectable text, no Type 3
    matplotlib.rcParams["savefig.bbox"] = "tight"
    return family


def method_colors(methods) -> dict:
    import seaborn as sns

    palette = sns.color_palette("colorblind")
    ordered = [m for m in METHOD_NAMES if m in methods] + sorted(set(methods) - set(METHOD_NAMES))
    return {method: palette[i % len(palette)] for i, method in enumerate(ordered)}


def method_name(method: str) -> str:
    return METHOD_NAMES.get(method, method)


def compact_count(examples: float) -> str:
    """10000 -> '10k', 1500 -> '1.5k', 250 -> '250', 2000000 -> '2M': the grid's own size labels."""
    for scale, suffix in ((1_000_000, "M"), (1_000, "k")):
        if examples >= scale:
            return f"{examples / scale:g}{suffix}"
    return f"{examples:g}"


def size_axis(ax, examples) -> None:
    """A log x axis with one tick per training size, labelled as in the grid (10k, 20k, ...)."""
    from matplotlib import ticker

    sizes = sorted(set(examples))
    ax.set_xscale("log")
    ax.set_xlim(sizes[0] / X_MARGIN, sizes[-1] * X_MARGIN)  # explicit: one size alone is a valid axis too
    ax.xaxis.set_major_locator(ticker.FixedLocator(sizes))
    ax.xaxis.set_major_formatter(ticker.FixedFormatter([compact_count(d) for d in sizes]))
    ax.xaxis.set_minor_locator(ticker.NullLocator())


def legend_if_any(ax, **options) -> None:
    if ax.get_legend_handles_labels()[0]:
        ax.legend(**options)


def note_on(ax, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="0.4")


# --- data --------------------------------------------------------------------------------------


def read_summary(folder: Path) -> pd.DataFrame:
    ("summary.csv, checked by lib.summarize.table.read_summary_rows: text identity columns, float numbers "
     "(NaN where empty).")
    path = folder / "summary.csv"
    if not path.is_file():
        raise UserError(f"{shown(path)}: no such file (run `python -m lib summarize` first)")
    header, rows = read_summary_rows(path)
    summary = pd.DataFrame(rows, columns=header)
    numbers = [column for column in header if column not in TEXT_COLUMNS]
    summary[numbers] = summary[numbers].astype(float)
    return summary


def read_optional_json(path: Path) -> dict | None:
    return read_json(path) if path.is_file() else None


def trained_points(summary: pd.DataFrame, metric: str) -> pd.DataFrame:
    """method, examples, value, ci_low, ci_high of finished trained runs, seeds averaged."""
    columns = [metric, f"{metric}_ci_low", f"{metric}_ci_high"]
    if metric not in summary:
        return pd.DataFrame(columns=["method", "examples", "value", "ci_low", "ci_high"])
    done = summary[(summary.status == "done") & (summary.method != BASE_RUN)].dropna(subset=["examples", metric])
    points = done.groupby(["method", "examples"], as_index=False)[columns].mean()
    return points.rename(columns=dict(zip(columns, ["value", "ci_low", "ci_high"])))


def untuned_value(summary: pd.DataFrame, run: str, metric: str) -> pd.Series | None:
    """The row of an untuned run (base, base-nf4) where it is done and has this metric."""
    if metric not in summary:
        return None
    base = summary[(summary.run == run) & (summary.status == "done")].dropna(subset=[metric])
    return base.iloc[0] if len(base) else None


def draw_method_lines(ax, points: pd.DataFrame, colors: dict) -> None:
    """One line per method over log-spaced sizes, with its 95% interval as a band (an error bar
    where a method has one size so far)."""
    for method, group in points.groupby("method", sort=False):
        group = group.sort_values("examples")
        ax.plot(group.examples, group.value, marker="o", color=colors[method], label=method_name(method))
        if group.ci_low.isna().any():
            continue
        if len(group) == 1:
            ax.errorbar(group.examples, group.value, yerr=[group.value - group.ci_low, group.ci_high - group.value],
                        color=colors[method], capsize=3)
        else:
            ax.fill_between(group.examples, group.ci_low, group.ci_high, color=colors[method], alpha=0.2, linewidth=0)


def draw_untuned_line(ax, run: str, value: float, inputs: Inputs) -> None:
    style, label = UNTUNED_LINES[run]
    ax.axhline(value, color="0.3", linestyle=style, linewidth=1, label=inputs.label(label, " "))


def draw_untuned_lines(ax, summary: pd.DataFrame, metric: str, inputs: Inputs) -> None:
    """Each untuned row present as a horizontal line with its interval as a band: base (LoRA's
    0-data row), base-nf4 (QLoRA's)."""
    for run in UNTUNED_LINES:
        base = untuned_value(summary, run, metric)
        if base is None:
            continue
        draw_untuned_line(ax, run, base[metric], inputs)
        if not pd.isna(base.get(f"{metric}_ci_low")):
            ax.axhspan(base[f"{metric}_ci_low"], base[f"{metric}_ci_high"], color="0.5", alpha=0.12, linewidth=0)


# --- the figures -------------------------------------------------------------------------------


def metrics_vs_size(inputs: Inputs):
    import matplotlib.pyplot as plt

    summary = inputs.summary
    panels = {metric: trained_points(summary, metric) for metric in METRIC_PANELS}
    if all(points.empty for points in panels.values()):
        raise NothingToDraw("no finished trained run yet")
    colors = method_colors(summary.method.dropna().unique())
    fig, axes = plt.subplots(2, 2, figsize=(8, 6), sharex=True)
    all_sizes = pd.concat(list(panels.values())).examples
    for ax, (metric, points) in zip(axes.flat, panels.items()):
        ax.set_title(inputs.label(metric))
        size_axis(ax, all_sizes)
        if points.empty:
            note_on(ax, inputs.label("no_data", " "))
            continue
        draw_method_lines(ax, points, colors)
        draw_untuned_lines(ax, summary, metric, inputs)
    for ax in axes[-1]:
        ax.set_xlabel(inputs.label("examples", " "))
    handles = {}
    for ax in axes.flat:
        handles |= dict(zip(*reversed(ax.get_legend_handles_labels())))
    fig.legend(handles.values(), handles.keys(), loc="lower center", ncol=len(handles), bbox_to_anchor=(0.5, -0.04))
    fig.tight_layout()
    return fig


def loss_fit(inputs: Inputs):
    import matplotlib.pyplot as plt
    from matplotlib import ticker

    if inputs.scaling is None:
        raise NothingToDraw("no scaling.json")
    fits = {m: fit for m, fit in inputs.scaling["loss_fits"].items() if fit.get("points")}
    if not fits:
        raise NothingToDraw("no finished run with a test loss")
    colors = method_colors(fits)
    points = trained_points(inputs.summary, "test_loss")
    fig, ax = plt.subplots(figsize=(5.5, 4))
    sizes = [d for fit in fits.values() for d, _ in fit["points"]]
    curve_sizes = np.geomspace(min(sizes) / 1.5, max(sizes) * 1.5, 200)
    for method, fit in fits.items():
        observed = points[points.method == method].sort_values("examples")
        errors = [observed.value - observed.ci_low, observed.ci_high - observed.value]
        ax.errorbar(observed.examples, observed.value, yerr=errors if observed.ci_low.notna().all() else None,
                    fmt="o", color=colors[method], label=method_name(method), capsize=2)
        if fit["status"] != "ok":
            continue
        E, A, alpha = (fit[name]["value"] for name in ("E", "A", "alpha"))
        ax.plot(curve_sizes, power_law(curve_sizes, E, A, alpha), color=colors[method], linewidth=1,
                label=f"{method_name(method)} {inputs.label('fit', ' ')}: α = {alpha:.2f}")
        holdout = fit.get("holdout") or {}
        if holdout.get("status") == "ok":
            ax.plot(holdout["size"], holdout["predicted"], marker="x", color=colors[method], linestyle="none",
                    label=f"{method_name(method)} {inputs.label('holdout', ' ')}")
    unfitted = [f"{method_name(method)}: "
                + (inputs.label(fit["status"], " ") if fit["status"] in FIT_STATUS_LABELS else fit["status"])
                for method, fit in fits.items() if fit["status"] != "ok"]
    if unfitted:
        ax.set_title("\n".join(unfitted), fontsize=9, color="0.4")
    size_axis(ax, sizes)
    ax.set_xlim(curve_sizes[0], curve_sizes[-1])  # the fitted curves run beyond the measured sizes
    ax.set_yscale("log")
    # a loss range of well under a decade: plain numbers at linear steps read better than 2x10^0
    ax.yaxis.set_major_locator(ticker.MaxNLocator(6))
    ax.yaxis.set_major_formatter(ticker.ScalarFormatter())
    ax.yaxis.set_minor_formatter(ticker.NullFormatter())
    ax.set_xlabel(inputs.label("examples", " "))
    ax.set_ylabel(inputs.label("test_loss"))
    legend_if_any(ax, fontsize=7)
    fig.tight_layout()
    return fig


def time_unit(longest_seconds: float) -> tuple[float, str]:
    """Seconds per unit and its name: hours for runs over 2 h, minutes over 2 min, else seconds."""
    if longest_seconds > 2 * 3600:
        return 3600.0, "h"
    return (60.0, "min") if longest_seconds > 2 * 60 else (1.0, "s")


def cost(inputs: Inputs):
    import matplotlib.pyplot as plt
    import seaborn as sns

    columns = ["wall_time_s", "peak_memory_gb", "tokens_per_s"]
    trained = inputs.summary[inputs.summary.method != BASE_RUN].dropna(subset=["examples"])
    trained = trained.dropna(subset=columns, how="all")
    if trained.empty:
        raise NothingToDraw("no run has finished training")
    trained = trained.groupby(["method", "size", "examples"], as_index=False)[columns].mean()
    seconds, unit = time_unit(trained.wall_time_s.max() if trained.wall_time_s.notna().any() else 0)
    trained["wall_time"] = trained.wall_time_s / seconds
    sizes = trained.sort_values("examples")["size"].unique()
    colors = method_colors(trained.method.unique())
    methods = list(colors)
    fig, axes = plt.subplots(1, 3, figsize=(10, 3.2))
    for ax, column in zip(axes, ["wall_time", "peak_memory_gb", "tokens_per_s"]):
        title = inputs.label(column) + (f" ({unit})" if column == "wall_time" else "")
        ax.set_title(title)
        if trained[column].isna().all():
            note_on(ax, inputs.label("no_data", " "))
            continue
        sns.barplot(trained, x="size", y=column, hue="method", order=sizes, hue_order=methods,
                    palette=colors, ax=ax, errorbar=None)
        ax.set_xlabel(inputs.label("examples", " "))
        ax.set_ylabel("")
        legend = ax.get_legend()
        if legend is not None:
            legend.remove()
    handles = [plt.Rectangle((0, 0), 1, 1, color=color) for color in colors.values()]
    fig.legend(handles, [method_name(m) for m in methods], loc="lower center", ncol=len(methods),
               bbox_to_anchor=(0.5, -0.06))
    fig.tight_layout()
    return fig


def loss_curves(inputs: Inputs):
    import matplotlib.pyplot as plt
    import seaborn as sns

    histories = {}
    trained = inputs.summary[inputs.summary.method != BASE_RUN].dropna(subset=["method", "examples"])
    for row in trained.itertuples():
        metrics = readable_run_files(inputs.runs_dir / row.run, ("train_metrics.json",)).get("train_metrics.json")
        log = (metrics or {}).get("log_history")
        if log:
            histories[row.run] = (row.method, row.examples, pd.DataFrame(log))
    if not histories:
        raise NothingToDraw("no run has a training log yet")
    methods = list(dict.fromkeys(method for method, _, _ in histories.values()))
    sizes = sorted({examples for _, examples, _ in histories.values()})
    shades = dict(zip(sizes, sns.color_palette("viridis", len(sizes))))
    fig, axes = plt.subplots(1, len(methods), figsize=(4.5 * len(methods), 3.5), sharey=True, squeeze=False)
    for ax, method in zip(axes[0], methods):
        ax.set_title(method_name(method))
        for run, (run_method, examples, log) in histories.items():
            if run_method != method:
                continue
            for column, style in (("loss", "-"), ("eval_loss", "--")):
                if column in log:
                    curve = log.dropna(subset=[column])
                    ax.plot(curve.step, curve[column], linestyle=style, color=shades[examples],
                            label=run if style == "-" else None)
        ax.set_xlabel(inputs.label("step", " "))
        legend_if_any(ax, fontsize=7, title=f"— {inputs.label('train', ' ')}   -- {inputs.label('dev', ' ')}",
                      title_fontsize=7)
    axes[0][0].set_ylabel(inputs.label("loss", " "))
    fig.tight_layout()
    return fig


def mcq_points(inputs: Inputs) -> pd.DataFrame:
    """run, method, examples, source, value, ci_low, ci_high, n from the finished runs' eval.json."""
    records = []
    for row in inputs.summary[inputs.summary.status == "done"].itertuples():
        result = readable_run_files(inputs.runs_dir / row.run, ("eval.json",)).get("eval.json") or {}
        mcq = result.get("mcq") or {}
        sources = {"overall": mcq.get("overall")} | (mcq.get("per_source") or {})
        records += [{"run": row.run, "method": row.method, "examples": row.examples, "source": source, **stat}
                    for source, stat in sources.items() if stat and stat.get("value") is not None]
    return pd.DataFrame(records, columns=["run", "method", "examples", "source", "value", "ci_low", "ci_high", "n"])


def knowledge(inputs: Inputs):
    import matplotlib.pyplot as plt

    points = mcq_points(inputs)
    if points.empty:
        raise NothingToDraw("no run has MCQ results")
    trained = points[points.method != BASE_RUN]
    if trained.empty:  # the size axis needs at least one trained size
        raise NothingToDraw("only the base model has MCQ results")
    by_size = points.groupby("source").n.max().drop("overall", errors="ignore").sort_values(ascending=False)
    sources = ["overall", *by_size.index[:MAX_SOURCE_PANELS]]
    columns = min(3, len(sources))
    rows = math.ceil(len(sources) / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(3.3 * columns, 2.8 * rows), squeeze=False, sharey=True)
    colors = method_colors(trained.method.unique())
    for ax, source in zip(axes.flat, sources):
        ax.set_title(inputs.label("overall", " ") if source == "overall" else source)
        size_axis(ax, trained.examples)
        here = (trained[trained.source == source]
                .groupby(["method", "examples"], as_index=False)[["value", "ci_low", "ci_high"]].mean())
        draw_method_lines(ax, here, colors)
        base = points[(points.method == BASE_RUN) & (points.source == source)]
        for run, value in zip(base.run, base.value):
            draw_untuned_line(ax, run, value, inputs)
        if here.empty and base.empty:
            note_on(ax, inputs.label("no_data", " "))
    for ax in axes.flat[len(sources):]:
        ax.set_axis_off()
    for ax in axes[-1]:
        ax.set_xlabel(inputs.label("examples", " "))
    for ax in axes[:, 0]:
        ax.set_ylabel(inputs.label("mcq_accuracy", " "))
    legend_if_any(axes[0][0], fontsize=7)
    fig.tight_layout()
    return fig


def change_points(inputs: Inputs, track: str, scoring: str) -> pd.DataFrame:
    """method, examples, value, ci_low, ci_high of each run's change from its own base row
    (scaling.json forgetting), seeds averaged."""
    records = [{"method": change["method"], "examples": change["examples"], **stat}
               for change in (inputs.scaling or {}).get("forgetting") or []
               if (stat := (change["changes"].get(track) or {}).get(scoring)) and stat.get("value") is not None]
    points = pd.DataFrame(records, columns=["method", "examples", "value", "ci_low", "ci_high", "n"])
    return points.groupby(["method", "examples"], as_index=False)[["value", "ci_low", "ci_high"]].mean()


def forgetting(inputs: Inputs):
    """Medical gain and general change against data size: each run's accuracy minus its own base
    row's (base for LoRA, base-nf4 for QLoRA), paired over items; a column per track, a row per
    scoring (letter; cloze per character), 0 (no change) as a line."""
    import matplotlib.pyplot as plt

    panels = {(track, scoring): change_points(inputs, track, scoring)
              for scoring in FORGETTING_SCORINGS for track in MCQ_TRACKS}
    if all(points.empty for points in panels.values()):
        raise NothingToDraw("no trained run has multiple-choice results beside its base row's")
    fig, axes = plt.subplots(len(FORGETTING_SCORINGS), len(MCQ_TRACKS), squeeze=False, sharex=True,
                             figsize=(4.4 * len(MCQ_TRACKS), 3.2 * len(FORGETTING_SCORINGS)))
    every = pd.concat([points for points in panels.values() if not points.empty])
    colors = method_colors(every.method.unique())
    for (track, scoring), ax in zip(panels, axes.flat):
        points = panels[(track, scoring)]
        ax.set_title(inputs.label(track_metric(track, scoring)), fontsize=8)  # Chinese over English
        size_axis(ax, every.examples)
        ax.axhline(0, color="0.3", linewidth=1)
        draw_method_lines(ax, points, colors)
        if points.empty:
            note_on(ax, inputs.label("no_data", " "))
    for ax in axes[-1]:
        ax.set_xlabel(inputs.label("examples", " "))
    for ax in axes[:, 0]:
        ax.set_ylabel(inputs.label("change_from_base"), fontsize=8)
    legend_if_any(axes[0][0], fontsize=7)
    fig.tight_layout()
    return fig


def display_width(character: str) -> int:
    return 2 if unicodedata.east_asian_width(character) in ("W", "F") else 1


def wrap_text(text: str | None, width: int = EXAMPLE_CELL_WIDTH, max_lines: int = EXAMPLE_CELL_LINES) -> list[str]:
    """Lines of at most `width` half-width units (a Chinese character is 2), at most `max_lines`
    of them; the last ends in "…" where text was cut. Characters without a glyph are left out,
    as in the report."""
    lines, line, used = [], "", 0
    for character in " ".join((text or "—").split()):
        if not printable(character):
            continue
        if used + display_width(character) > width:
            lines.append(line)
            line, used = "", 0
        line += character
        used += display_width(character)
    lines.append(line)
    if len(lines) > max_lines:
        lines = lines[:max_lines]
        lines[-1] = lines[-1][:-1] + "…"
    return lines


def examples(inputs: Inputs):
    import matplotlib.pyplot as plt

    chosen = (inputs.examples or {}).get("examples") or []
    if not chosen:
        raise NothingToDraw("no examples.json or no examples in it")
    if not inputs.chinese:
        raise NothingToDraw("no Chinese font installed (make setup-tex installs fonts-wqy-microhei)")
    headers = [inputs.label("question", " "), inputs.label("reference", " "), inputs.label("base", " "),
               f"{inputs.label('best', ' ')} {inputs.examples['best_run']}"]
    cells = [[wrap_text(item[key]) for key in ("question", "reference", "base", "best")] for item in chosen]
    # Layout in lines of text: a header line, then each example as tall as its longest cell.
    line_height = EXAMPLE_FONT_PT * 1.45 / 72  # inches
    heights = [max(len(cell) for cell in row) + 1 for row in cells]
    column_width = EXAMPLE_CELL_WIDTH * EXAMPLE_FONT_PT / 2 / 72 + 0.15  # a half-width unit is ~half an em
    fig = plt.figure(figsize=(4 * column_width, (sum(heights) + 2) * line_height))
    total = sum(heights) + 2
    for column, header in enumerate(headers):
        fig.text(column / 4 + 0.005, 1 - 0.5 / total, header, fontsize=EXAMPLE_FONT_PT, color="0.25", va="center")
    top = 1.5
    for row, height in zip(cells, heights):
        fig.add_artist(plt.Line2D([0, 1], [1 - top / total] * 2, color="0.7", linewidth=0.6))
        for column, lines in enumerate(row):
            fig.text(column / 4 + 0.005, 1 - (top + 0.3) / total, "\n".join(lines), fontsize=EXAMPLE_FONT_PT,
                     va="top", linespacing=1.3)
        top += height
    return fig


def preference(inputs: Inputs):
    """Bradley-Terry strength of each reviewed run vs its training examples, the base model as a line."""
    import matplotlib.pyplot as plt

    if not (inputs.preference or {}).get("votes"):
        raise NothingToDraw("no blind review votes yet (make review)")
    runs = inputs.preference["runs"]
    rows = [{"method": entry["method"], "examples": entry["examples"], **entry["strength"]}
            for entry in runs.values() if entry.get("method")]
    points = pd.DataFrame(rows, columns=["method", "examples", "value", "ci_low", "ci_high"])
    trained = points[points.method != BASE_RUN].groupby(["method", "examples"], as_index=False).mean()
    if trained.empty:
        raise NothingToDraw("no vote on a trained run yet")
    fig, ax = plt.subplots(figsize=(5, 3.4))
    size_axis(ax, trained.examples)
    draw_method_lines(ax, trained, method_colors(trained.method.unique()))
    base = points[points.method == BASE_RUN]
    if len(base):
        ax.axhline(base.value.iloc[0], color="0.3", linestyle="--", linewidth=1, label=inputs.label("base", " "))
    ax.set_xlabel(inputs.label("examples", " "))
    ax.set_ylabel(inputs.label("preference", "\n"))
    legend_if_any(ax, fontsize=7)
    fig.tight_layout()
    return fig


FIGURES: dict[str, Callable[[Inputs], object]] = {
    "metrics_vs_size": metrics_vs_size, "loss_fit": loss_fit, "cost": cost,
    "loss_curves": loss_curves, "knowledge": knowledge, "forgetting": forgetting, "examples": examples,
    "preference": preference,
}


# --- saving ------------------------------------------------------------------------------------


def save(fig, stem: str, png_dir: Path, pdf_dir: Path) -> None:
    import matplotlib.pyplot as plt

    with atomic_write(pdf_dir / f"{stem}.pdf", "wb") as handle:
        fig.savefig(handle, format="pdf", metadata={"CreationDate": None})  # same input, same bytes
    with atomic_write(png_dir / f"{stem}.png", "wb") as handle:
        fig.savefig(handle, format="png", dpi=PNG_DPI)
    plt.close(fig)


def draw_all(inputs: Inputs, png_dir: Path, pdf_dir: Path) -> dict:
    """Draw every figure it can; {"made": [...], "skipped": {stem: reason}}."""
    made, skipped = [], {}
    for stem, draw in FIGURES.items():
        try:
            save(draw(inputs), stem, png_dir, pdf_dir)
            made.append(stem)
        except NothingToDraw as reason:
            skipped[stem] = str(reason)
            for stale in (png_dir / f"{stem}.png", pdf_dir / f"{stem}.pdf"):
                stale.unlink(missing_ok=True)
    return {"made": made, "skipped": skipped}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--summary", required=True, type=Path,
                        help="folder with summary.csv, scaling.json, examples.json (and review/preference.json)")
    parser.add_argument("--runs", required=True, type=Path,
                        help="folder of run directories (loss curves, MCQ per source)")
    parser.add_argument("--png", required=True, type=Path, help="where the PNGs go, e.g. results/demo/figures")
    parser.add_argument("--pdf", required=True, type=Path, help="where the PDFs go, e.g. paper/generated/demo/figures")


def run(args: argparse.Namespace) -> None:
    inputs = Inputs(
        summary=read_summary(args.summary),
        scaling=read_optional_json(args.summary / "scaling.json"),
        examples=read_optional_json(args.summary / "examples.json"),
        preference=read_optional_json(args.summary / "review" / "preference.json"),
        runs_dir=args.runs,
        cjk_font=set_style(),
    )
    outcome = draw_all(inputs, args.png, args.pdf)
    manifest = outcome | {"cjk_font": inputs.cjk_font, "provenance": provenance()}
    for folder in (args.png, args.pdf):
        write_json(folder / "figures.json", manifest)
    for stem, reason in outcome["skipped"].items():
        print(f"figures: skipped {stem}: {reason}")
    print(f"figures: {len(outcome['made'])} of {len(FIGURES)} drawn -> {shown(args.pdf)}, {shown(args.png)}")
