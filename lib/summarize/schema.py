"""What `python -m lib summarize` writes, as types: the figures (lib.figures), the report
(lib.report) and the model card (lib.model_card) read these files.

    summary.csv    one SummaryRow per run: ID_COLUMNS; then, for every metric of eval.json,
                   <metric>, <metric>_ci_low, <metric>_ci_high (mcq_accuracy from its mcq.overall), in
                   the order of the registry lib.evaluate.metrics.METRICS (the judge's only where a
                   run has them; unregistered ones last, sorted); then COST_COLUMNS. Empty = unknown.
    scaling.json   Scaling: the power-law fits of the test loss, the trends, LoRA vs QLoRA, each run's
                   change from its own base row on the multiple-choice tracks, notes
    examples.json  Examples: a few test items with the base model's and the best run's answers
    summary.md     the table and the scaling analysis in Markdown, for people (lib.summarize.markdown)

Each JSON file also holds "provenance" (lib.io.provenance). A number that could not be computed
is null; a statistic's interval is null where nothing was resampled.
"""

from __future__ import annotations

from typing import Literal, TypedDict

# --- summary.csv -----------------------------------------------------------------------------------

ID_COLUMNS = ("run", "method", "size", "examples", "seed", "status", "note")
TEXT_COLUMNS = ("run", "method", "size", "status", "note")  # of summary.csv; the others are numbers
# what training cost, from train_metrics.json (lib.train)
COST_COLUMNS = (
    "wall_time_s", "tokens_per_s", "peak_memory_gb", "trainable_params", "total_params",
    "train_tokens", "steps", "examples_per_step", "tokens_per_step", "final_train_loss", "best_dev_loss",
)


class SummaryRow(TypedDict):
    """The identity columns of a row of summary.csv; its metric and cost columns follow by name.
    read_summary_rows (lib.summarize.table) reads every column but TEXT_COLUMNS as a float."""
    run: str  # the run's folder: lora-10k, qlora-60k-s7, base, base-nf4
    method: str | None  # lora, qlora, ... or "base" for the untuned rows (lib.config.BASE_RUN)
    size: str | None  # the train subset's label, "0" for the untuned rows
    examples: int | None  # training examples
    seed: int | None  # the training seed (None for the untuned rows)
    status: str  # lib.runs.STATUSES
    note: str | None  # why a run is incomplete, corrupt, stale or not comparable, and what redoes it


# --- scaling.json ----------------------------------------------------------------------------------

# What the intervals of fits and comparisons resample, by whether the grid has several training
# seeds: with one, the test items only.
RESAMPLED = {False: "test items", True: "training seeds and test items"}
Resampled = Literal["test items", "training seeds and test items"]
FIT_PARAMETERS = ("E", "A", "alpha")  # of L(D) = E + A * D^(-alpha)
LOSS_ESTIMATES = (*FIT_PARAMETERS, "slope_per_doubling")  # what each resample of the loss fit estimates
TREND_METRICS = ("rougeL", "mcq_accuracy")  # the metrics with a trend over data size


class Statistic(TypedDict):
    value: float | None
    ci_low: float | None  # the 95% interval
    ci_high: float | None


class ZeroDataPoint(Statistic):
    """A method's point at 0 examples: the untuned model as the method loads it (not a point of the fits)."""
    run: str  # base, or base-nf4 for a 4-bit method (lib.config.zero_data_run)
    examples: int  # 0


class Holdout(TypedDict, total=False):
    """The fit without one size, predicting it (needs 4 sizes); the numbers but status only where
    status is "ok"."""
    status: Literal["ok", "too_few_points", "fit_failed"]
    size: int  # the size left out, in examples
    observed: float
    predicted: float
    abs_error: float  # |predicted - observed|, nats per token
    rel_error: float  # abs_error / observed


class LeaveOneOut(TypedDict, total=False):
    """Each size predicted by the fit of the others; the errors only where status is "ok" (at
    least one of those fits converged)."""
    status: Literal["ok", "too_few_points", "fit_failed"]
    sizes: list[Holdout]  # smallest size first
    mean_abs_error: float  # over the sizes whose fit converged
    max_abs_error: float


class Bootstrap(TypedDict):
    resampled: Resampled | None  # None: no per-item scores, no interval
    seeds: list[int]  # the training seeds done at every size
    samples: int
    failed: int  # resamples whose fit did not converge


class LossFit(TypedDict, total=False):
    """One method's fit of the test loss (nats per reference token) over training examples.
    E, A, alpha and slope_per_doubling only where status is "ok"; reason only where it is "fit_failed"."""
    status: Literal["ok", "too_few_points", "fit_failed"]
    reason: str
    E: Statistic
    A: Statistic
    alpha: Statistic
    slope_per_doubling: Statistic  # the loss's change per doubling of the data (least squares on log2 D)
    points: list[list[float]]  # [[D, loss], ...], averaged over seeds
    zero_data: ZeroDataPoint | None
    residual_dof: int  # points - parameters: what is left to check the curve's form
    holdout: Holdout  # the largest size predicted by the fit of the others
    leave_one_out: LeaveOneOut
    bootstrap: Bootstrap


class Trend(TypedDict, total=False):
    """A metric's change per doubling of the data; slope_per_doubling only where status is "ok"."""
    status: Literal["ok", "too_few_points"]
    slope_per_doubling: Statistic
    points: list[list[float]]
    zero_data: ZeroDataPoint | None
    bootstrap: Bootstrap  # resampled as the loss fit's: training seeds, then test items


class PairedDifference(TypedDict):
    """QLoRA minus LoRA, averaged over the seeds where both are done."""
    difference: float
    ci_low: float
    ci_high: float
    p_value: float | None  # only with several seeds
    n: int  # test items both runs scored
    seeds: int
    resampled: Resampled


class Comparison(TypedDict):
    """QLoRA against LoRA at one size; ratios are QLoRA / LoRA at the default seed."""
    size: str
    examples: int
    lora_run: str
    qlora_run: str
    rougeL_diff: PairedDifference | None
    loss_diff: PairedDifference | None
    time_ratio: float | None  # 1.3: QLoRA takes 30% longer
    memory_ratio: float | None
    throughput_ratio: float | None


class FitGrid(TypedDict):
    """The sizes the fits use: the finished runs' (those of the grid asked for, and any found beyond it)."""
    name: str | None  # the grid of experiments/grid.yaml with exactly these sizes, default or extended; None: neither
    sizes: list[int]  # in examples, smallest first


class RunChange(TypedDict):
    """A trained run's accuracy minus its own base row's (base for LoRA, base-nf4 for QLoRA) on the
    multiple-choice tracks, in points, paired over items (lib.summarize.forgetting)."""
    run: str
    method: str
    examples: int
    seed: int | None
    base_run: str
    changes: dict[str, dict[str, Statistic | None]]  # track (mcq, general) -> scoring (letter, acc, acc_norm)


class Scaling(TypedDict):
    resampled: Resampled
    grid: FitGrid
    loss_fits: dict[str, LossFit]  # by method
    trends: dict[str, dict[str, Trend]]  # by metric of TREND_METRICS, then by method
    lora_vs_qlora: list[Comparison]  # one per size where both default-seed runs are done
    forgetting: list[RunChange]  # each finished trained run against its own base row
    # one line each: a fit whose loss does not fall or whose E or alpha sits on a bound, a run whose
    # predictions.jsonl does not reproduce its eval.json test_loss or rougeL, a fit without per-item
    # losses, and every run's note
    notes: list[str]


# --- examples.json ---------------------------------------------------------------------------------


class Example(TypedDict):
    id: str
    question: str | None
    reference: str | None
    base: str | None  # the base model's answer, where it was evaluated
    best: str | None  # the best run's answer


class Examples(TypedDict):
    best_run: str | None  # the lowest test_loss among finished trained runs
    examples: list[Example]
