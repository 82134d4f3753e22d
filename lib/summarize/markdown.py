"""summary.md: the table of runs (quality with 95% intervals and what each metric measures, then
training cost) and the scaling analysis, as Markdown tables for people.
"""

from __future__ import annotations

from lib.config import BASE_RUN
from lib.evaluate.metrics import METRICS
from lib.io import nested_value
from lib.runs import STATUSES
from lib.stats import is_missing
from lib.summarize.schema import (
    COST_COLUMNS,
    LOSS_ESTIMATES,
    FitGrid,
    Holdout,
    LeaveOneOut,
    PairedDifference,
    Scaling,
    Statistic,
    SummaryRow,
    ZeroDataPoint,
)
from lib.summarize.table import metric_names

# whole numbers in summary.md
COUNT_COLUMNS = ("examples", "steps", "examples_per_step", "trainable_params", "total_params", "train_tokens")


def readable_number(value, count: bool = False) -> str:
    """A number for reading: counts and values from 100 up as integers with separators, values
    from 1 up with 2 decimal places, smaller ones with 3."""
    if is_missing(value):
        return ""
    value = float(value)
    if count or abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.2f}" if abs(value) >= 1 else f"{value:.3f}"


def with_interval(row: SummaryRow, name: str) -> str:
    value = readable_number(row.get(name))
    low, high = readable_number(row.get(f"{name}_ci_low")), readable_number(row.get(f"{name}_ci_high"))
    return f"{value} [{low}, {high}]" if value and low and high else value


def markdown_table(header: list[str], lines: list[list[str]]) -> str:
    if not lines:
        return "(none yet)"
    rows = [header, ["---"] * len(header), *lines]
    return "\n".join("| " + " | ".join(cells) + " |" for cells in rows)


def interval_text(stat: Statistic | PairedDifference | None) -> str:
    """value [low, high], and p = .. where the statistic has a p-value."""
    if not stat:
        return ""
    value = readable_number(stat.get("value", stat.get("difference")))
    if stat.get("ci_low") is None:
        return value
    p_value = f", p = {stat['p_value']:.3g}" if stat.get("p_value") is not None else ""
    return f"{value} [{readable_number(stat['ci_low'])}, {readable_number(stat['ci_high'])}]{p_value}"


INTERVAL_SCOPE = {
    "test items": "One training seed per run: every interval covers the sampling of test items only, "
                  "not training randomness, so no p-values are given.",
    "training seeds and test items": "The intervals of the fits, the trends and QLoRA - LoRA resample the "
                                     "training seeds, then the test items (hierarchical bootstrap); a run's own "
                                     "interval covers its test items only.",
}


def summary_markdown(profile: str, rows: list[SummaryRow], scaling: Scaling) -> str:
    """summary.md: the runs (quality, then cost) and the scaling analysis, as Markdown tables."""
    metrics = [m for m in metric_names(rows) if any(not is_missing(r.get(m)) for r in rows)]
    costs = [c for c in COST_COLUMNS if any(not is_missing(r.get(c)) for r in rows)]
    status_counts = ", ".join(f"{s}: {sum(r['status'] == s for r in rows)}" for s in STATUSES
                              if s in ("done", "missing") or any(r["status"] == s for r in rows))
    parts = [
        f"# Results: profile {profile}",
        f"Runs: {status_counts}. Values with 95% bootstrap intervals over test items. "
        f"{INTERVAL_SCOPE[scaling['resampled']]}",
        "## Quality",
        markdown_table(["run", "status", "examples", *metrics],
                       [[r["run"], r["status"], readable_number(r["examples"], count=True),
                         *(with_interval(r, m) for m in metrics)] for r in rows]),
        metrics_markdown(metrics),
        "## Training cost",
        markdown_table(["run", *costs],
                       [[r["run"], *(readable_number(r.get(c), count=c in COUNT_COLUMNS) for c in costs)]
                        for r in rows if r["method"] != BASE_RUN]),
        scaling_markdown(scaling),
    ]
    return "\n\n".join(parts) + "\n"


DIRECTION_WORDS = {True: "higher", False: "lower", None: "-"}


def metrics_markdown(names: list[str]) -> str:
    """What each metric of the quality table measures, as the registry declares it."""
    lines = []
    for name in names:
        metric = METRICS.get(name)
        if metric is None:
            lines.append([name, "not registered in lib/evaluate/metrics.py", "", "", "", ""])
            continue
        lines.append([name, metric.english, DIRECTION_WORDS[metric.higher_is_better], metric.tokenised,
                      metric.interval, metric.computed_in])
    return "### The metrics\n\n" + markdown_table(
        ["metric", "measures", "better", "tokenised as", "interval", "computed in"], lines)


def zero_data_text(point: ZeroDataPoint | None) -> str:
    return f"{interval_text(point)} ({point['run']})" if point else ""


def scaling_markdown(scaling: Scaling) -> str:
    fits = [[method, fit["status"], *(interval_text(fit.get(name)) for name in LOSS_ESTIMATES),
             str(fit.get("residual_dof", "")), holdout_text(fit.get("holdout")),
             leave_one_out_text(fit.get("leave_one_out")), zero_data_text(fit.get("zero_data"))]
            for method, fit in scaling["loss_fits"].items()]
    trends = [[metric, method, item["status"], interval_text(item.get("slope_per_doubling")),
               zero_data_text(item.get("zero_data"))]
              for metric, by_method in scaling["trends"].items() for method, item in by_method.items()]
    comparisons = [[c["size"], interval_text(c["rougeL_diff"]), interval_text(c["loss_diff"]),
                    *(readable_number(c[key]) for key in ("time_ratio", "memory_ratio", "throughput_ratio"))]
                   for c in scaling["lora_vs_qlora"]]
    parts = [
        "## Scaling of the test loss: L(D) = E + A * D^(-alpha)",
        f"{grid_text(scaling.get('grid'))} Residual degrees of freedom: sizes - 3 parameters. Leave one size "
        "out: each size predicted by the fit of the others, mean and largest |predicted - observed| (nats); "
        "the holdout is the largest size's, beyond the sizes its fit saw. "
        f"Intervals resample the {scaling['resampled']}. Beside the power law, the 2-parameter log-linear "
        "slope: the change of the loss per doubling of the data (least squares on log2 D). The 0-example "
        "point of each method is the base model as it loads it: unquantised (base) for LoRA, NF4 (base-nf4) "
        "for QLoRA; it is not a point of the fits.",
        markdown_table(["method", "status", "E", "A", "alpha", "loss per doubling", "residual dof",
                        "holdout: largest size predicted vs observed", "leave one size out: mean / max error",
                        "0 examples"], fits),
        "## Trends (change per doubling of the data, least squares on log2 D)",
        markdown_table(["metric", "method", "status", "slope per doubling", "0 examples"], trends),
        f"## QLoRA vs LoRA (differences QLoRA - LoRA, paired bootstrap over the {scaling['resampled']}; "
        "ratios QLoRA / LoRA)",
        markdown_table(["size", "ROUGE-L diff", "loss diff", "time ratio", "memory ratio", "throughput ratio"],
                       comparisons),
        "## Change from each run's own base row (points of accuracy, paired bootstrap over items)",
        "Medical (mcq) and general (general) multiple choice, by letter and by cloze per character "
        "(acc_norm); a run's base row is base for LoRA, base-nf4 for QLoRA. On the general track a fall "
        "is forgetting.",
        markdown_table(["run", "base row", *(f"{track} {scoring}" for track, scoring in CHANGE_COLUMNS)],
                       [[c["run"], c["base_run"], *(interval_text(nested_value(c["changes"], f"{track}.{scoring}"))
                                                    for track, scoring in CHANGE_COLUMNS)]
                        for c in scaling.get("forgetting") or []]),
    ]
    if scaling["notes"]:
        parts.append("Notes:\n\n" + "\n".join(f"- {note}" for note in scaling["notes"]))
    return "\n\n".join(parts)


CHANGE_COLUMNS = [(track, scoring) for track in ("mcq", "general") for scoring in ("letter", "acc_norm")]


def holdout_text(holdout: Holdout | None) -> str:
    if not holdout or holdout["status"] != "ok":
        return holdout["status"] if holdout else ""
    return (f"D={holdout['size']:,}: {readable_number(holdout['predicted'])} vs {readable_number(holdout['observed'])} "
            f"({100 * holdout['rel_error']:.1f}% off)")


def leave_one_out_text(leave_one_out: LeaveOneOut | None) -> str:
    if not leave_one_out or leave_one_out["status"] != "ok":
        return leave_one_out["status"] if leave_one_out else ""
    return (f"{readable_number(leave_one_out['mean_abs_error'])} / {readable_number(leave_one_out['max_abs_error'])} "
            f"over {len(leave_one_out['sizes'])} sizes")


def grid_text(grid: FitGrid | None) -> str:
    """Which grid of experiments/grid.yaml the fits come from, and its sizes."""
    if not grid or not grid["sizes"]:
        return "No sizes to fit yet."
    sizes = ", ".join(f"{size:,}" for size in grid["sizes"])
    named = f"the {grid['name']} grid (experiments/grid.yaml)" if grid["name"] else "sizes of neither grid"
    return f"Fitted on {named}: {sizes} examples."
