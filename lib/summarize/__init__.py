"""From runs to results: one table of every run, the data-scaling fits, qualitative examples.

    python -m lib summarize --runs results/demo/runs --out results/demo --profile demo
    python -m lib summarize --runs results/paper/runs --out results/paper --profile paper \\
        --methods lora qlora --sizes 10k 20k --seeds 42

The expected grid is base (+ base-nf4 where qlora is a method) + methods x sizes x seeds
(default: experiments/grid.yaml for the profile; runs of its first seed are named without
-s<seed>, lib.config.run_name). base and base-nf4 are rows of method "base" with 0 examples,
told apart by their run name: each method's 0-data row is the base model as the method loads it
(lib.config.zero_data_run: base-nf4, the base in NF4, for QLoRA; base for LoRA); run
directories found beyond it are listed too. Missing and unfinished runs are rows
with a status, never an error. Files written to --out, summary.csv last (its presence means the
step finished; it is the Makefile's target):

examples.json   {"best_run": "lora-60k" | null, "examples": [{"id", "question", "reference",
                 "base": <base answer> | null, "best": <best run's answer>}, ...], "provenance"}
                best run = lowest test_loss among finished trained runs; examples = the test items
                first in sha256(id) order, preferring questions of at most 80 characters.
scaling.json    {"resampled": "test items" | "training seeds and test items" (one seed or several),
                 "loss_fits": {method: {"status": "ok" | "too_few_points" | "fit_failed",
                   "E", "A", "alpha", "slope_per_doubling": {"value", "ci_low", "ci_high"},
                   "points": [[D, loss], ...], "zero_data": {"run", "examples": 0, "value",
                   "ci_low", "ci_high"} | null,
                   "holdout": {"status", "size", "observed", "predicted", "abs_error", "rel_error"},
                   "bootstrap": {"resampled": "test items" | "training seeds and test items" | null,
                                 "seeds", "samples", "failed"}}},
                 "trends": {"rougeL" | "mcq_accuracy": {method: {"status", "points", "zero_data",
                   "slope_per_doubling": {"value", "ci_low", "ci_high"}}}},
                 "lora_vs_qlora": [{"size", "examples", "lora_run", "qlora_run",
                   "rougeL_diff" | "loss_diff": {"difference", "ci_low", "ci_high",
                     "p_value" (null with one seed), "n", "seeds", "resampled"},
                   "time_ratio", "memory_ratio", "throughput_ratio"}, ...],
                 "notes": [one line each: a fit whose loss does not fall or whose E or alpha sits
                   on a bound, a run whose predictions.jsonl does not reproduce its eval.json
                   test_loss or rougeL, a fit without per-item losses], "provenance"}
summary.md      the table in Markdown (every metric any run has, judge_* included, with 95%
                intervals), what each metric measures, the cost table, then the scaling analysis.
summary.csv     one row per run: run, method, size, examples, seed, status, then <metric>,
                <metric>_ci_low, <metric>_ci_high for every metric of eval.json (mcq_accuracy from
                its mcq.overall) in the order of the registry lib.evaluate.metrics.METRICS (the
                judge's only where a run has them; unregistered ones last, sorted), then the
                training cost columns (COST_COLUMNS). Empty = unknown.

Status (lib.runs): done, missing, training, incomplete (its adapter's files are gone),
not_evaluated, corrupt (a file of the run is not what its stage writes, predictions.jsonl
included); `note` names the file of an incomplete or corrupt run, which is otherwise left out,
and the command that redoes it. With --data, a finished run made from data (or weights) that have
changed since is kept, with a note that says it is stale (lib.runs.stale_inputs); each note is
also printed, one line per run.

The statistics, and why:
- Loss fit: L(D) = E + A * D^(-alpha), D = training examples, L = test loss in nats per
  reference token, fitted by scipy's curve_fit (E >= 0, A > 0, 0 < alpha <= 3). Points are
  averaged over seeds where a size has several. Its interval resamples the *test items*: each
  bootstrap sample draws the same items (with replacement) for every run, since all runs share
  one test set, recomputes each run's loss from predictions.jsonl and refits. Resampling
  residuals instead would have nothing to resample: 4 sizes and 3 parameters leave one degree
  of freedom. With one training seed the interval therefore covers test-set noise, not
  training-seed noise, nor the choice of the curve. With several seeds (those done at every
  size), each sample first draws the seeds with replacement, then the items, the same for every
  run (lib.stats.hierarchical_estimates), and averages the drawn seeds' losses before refitting:
  training randomness is then in the interval too.
  Beside it, the 2-parameter log-linear description: the least-squares slope of the loss against
  log2 D (loss per doubling of the data), refitted on the same resamples.
  A run's loss from its items is sum(loss_i * ref_tokens_i) / sum(ref_tokens_i) (each item's
  `scores.loss` is a mean over its own reference tokens, so loss_i * ref_tokens_i is its summed
  NLL: lib.stats.token_weighted_loss), which must equal eval.json's test_loss;
  ROUGE-L is the mean of the items' `scores.rougeL`, on eval.json's scale (F1 x 100).
- Extrapolation check: the fit without the largest size predicts it (needs 4 sizes).
- Trends of ROUGE-L and MCQ accuracy: the least-squares slope of metric vs log2(D), i.e. the
  change per doubling of data; descriptive, no power law claimed. Its interval redraws each
  point from a normal with the standard error implied by the run's 95% bootstrap interval
  (half-width / 1.96) and refits; this treats the runs' errors as independent, which is
  conservative since runs share the test items.
- LoRA vs QLoRA: differences are QLoRA minus LoRA (the cost or gain of quantising the base),
  averaged over the seeds where both are done, by paired bootstrap over the shared test items
  (and over the seeds first, where there are several); ratios are QLoRA / LoRA at the default
  seed (time_ratio 1.3 = QLoRA takes 30% longer). A p-value only with several seeds: with one,
  the difference is between two trained adapters, and an item-only p-value would claim more
  about the methods than the study measured.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import math
import warnings
from collections import defaultdict
from pathlib import Path

import numpy as np
from tqdm import tqdm

from lib.arguments import add_config_arguments, add_grid_arguments, config_from_args
from lib.config import (
    BASE_RUN,
    UNTUNED_RUNS,
    Grid,
    parse_count,
    parse_run_name,
    requested_grid,
    run_name,
    zero_data_run,
)
from lib.errors import UserError
from lib.evaluate.metrics import METRICS
from lib.io import atomic_write, nested_value, provenance, read_jsonl, shown, write_json
from lib.runs import STATUSES, DataDigests, readable_run_files, redo_hint, run_status, stale_inputs, stale_note
from lib.stats import (
    BOOTSTRAP_SEED,
    CONFIDENCE,
    hierarchical_estimates,
    is_missing,
    mean_statistic,
    percentile_interval,
    sign_change_p_value,
    token_weighted_loss,
)

COST_COLUMNS = (
    "wall_time_s", "tokens_per_s", "peak_memory_gb", "trainable_params", "total_params",
    "train_tokens", "steps", "examples_per_step", "tokens_per_step", "final_train_loss", "best_dev_loss",
)
ID_COLUMNS = ("run", "method", "size", "examples", "seed", "status", "note")
TEXT_COLUMNS = ("run", "method", "size", "status", "note")  # of summary.csv; the others are numbers
# whole numbers in summary.md
COUNT_COLUMNS = ("examples", "steps", "examples_per_step", "trainable_params", "total_params", "train_tokens")
TREND_METRICS = ("rougeL", "mcq_accuracy")
# Settings every run must share for its numbers to be compared (the file's name, then the keys):
# how answers were decoded (lib.evaluate.generate.Decoding.record) and the adapters' precision.
SHARED_SETTINGS = {"decoding": ("eval.json", "generation.decoding"),
                   "adapter_dtype": ("train_metrics.json", "adapter_dtype")}
COMPARED = ("lora", "qlora")  # the pair compared run by run; differences are qlora - lora
# What the intervals of fits and comparisons resample, by whether the grid has several training
# seeds: with one, the test items only.
RESAMPLED = {False: "test items", True: "training seeds and test items"}

FIT_PARAMETERS = ("E", "A", "alpha")
# Published data-scaling exponents of language models lie around 0.1-0.5 (Kaplan et al. 2020;
# Hoffmann et al. 2022): 3 only stops a runaway fit of a few points, it does not shape the fit.
ALPHA_MAX = 3.0
ALPHA_MIN = 1e-6  # alpha > 0: a loss that falls with data
ALPHA_START = 0.5
# Where a run's loss or ROUGE-L recomputed from predictions.jsonl differs from its eval.json value
# by more than this share, the items do not describe the reported number: say so.
ITEM_MISMATCH_TOLERANCE = 0.01
EXAMPLE_COUNT = 3
EXAMPLE_MAX_QUESTION_CHARS = 80  # a question that fits in a few lines of the examples figure


# --- the table of runs -------------------------------------------------------------------------


def untuned_identity(name: str) -> dict:
    """base or base-nf4: a row of method BASE_RUN with 0 examples, told apart by its name."""
    return {"run": name, "method": BASE_RUN, "size": "0", "examples": 0, "seed": None}


def expected_runs(grid: Grid, default_seed: int) -> list[dict]:
    """base (and base-nf4 where a method starts from it), then one identity per method x size x
    seed of the grid, in that order (runs of the study's default seed have no -s<seed> in their name)."""
    untuned = dict.fromkeys([BASE_RUN, *(zero_data_run(method) for method in grid.methods)])
    runs = [untuned_identity(name) for name in untuned]
    for method in grid.methods:
        for size in grid.sizes:
            for seed in grid.seeds:
                runs.append({"run": run_name(method, size, seed, default_seed), "method": method,
                             "size": size, "examples": parse_count(size), "seed": seed})
    return runs


def found_run_identity(run_dir: Path, default_seed: int) -> dict:
    """Identity of a run directory outside the grid: from its config.json, else from its name."""
    if run_dir.name in UNTUNED_RUNS:
        return untuned_identity(run_dir.name)
    config = readable_run_files(run_dir, ("config.json",)).get("config.json")
    if config is not None:
        run = config.get("run", {})
        size = run.get("size")
        return {"run": run_dir.name, "method": run.get("method"), "size": size,
                "examples": run.get("examples", parse_count(size) if size else None), "seed": run.get("seed")}
    try:
        method, size, seed = parse_run_name(run_dir.name, default_seed)
    except UserError:
        return {"run": run_dir.name, "method": None, "size": None, "examples": None, "seed": None}
    return {"run": run_dir.name, "method": method, "size": size, "examples": parse_count(size), "seed": seed}


def metric_columns(eval_result: dict) -> dict:
    """{name: value, name_ci_low: .., name_ci_high: ..} for every metric, mcq_accuracy included."""
    metrics = dict(eval_result.get("metrics", {}))
    overall = (eval_result.get("mcq") or {}).get("overall")
    if overall:
        metrics["mcq_accuracy"] = overall
    columns = {}
    for name, stat in metrics.items():
        columns[name] = stat.get("value")
        columns[f"{name}_ci_low"] = stat.get("ci_low")
        columns[f"{name}_ci_high"] = stat.get("ci_high")
    return columns


def read_run(run_dir: Path, identity: dict, digests: DataDigests | None = None) -> tuple[dict, dict]:
    """One row of the summary (identity, status and its note, metrics and cost of the run's files)
    and the run's settings that must agree across runs (SHARED_SETTINGS); `digests` of the data
    of today, where given, add a note to a run made from other data."""
    status, note = run_status(run_dir)
    if digests is not None and status in ("done", "not_evaluated") and (stale := stale_inputs(run_dir, digests)):
        note = stale_note(run_dir.name, stale)
    row, settings = {**identity, "status": status, "note": note}, {}
    if status != "corrupt":
        files = readable_run_files(run_dir, ("eval.json", "train_metrics.json"))
        if "eval.json" in files:
            row.update(metric_columns(files["eval.json"]))
        if "train_metrics.json" in files:
            row.update({name: files["train_metrics.json"].get(name) for name in COST_COLUMNS})
        settings = {name: nested_value(files.get(file), keys) for name, (file, keys) in SHARED_SETTINGS.items()}
    return row, {name: value for name, value in settings.items() if value is not None}


def note_differing_settings(rows: list[dict], settings: list[dict]) -> None:
    """Add to the note of every run whose decoding or adapter dtype is not the one most runs share:
    its numbers are not comparable with theirs (answers decoded otherwise, adapters trained at
    another precision)."""
    for name in SHARED_SETTINGS:
        values = [json.dumps(run_settings[name], sort_keys=True) for run_settings in settings if name in run_settings]
        if len(set(values)) < 2:
            continue
        common = max(set(values), key=lambda value: (values.count(value), -values.index(value)))
        for row, run_settings in zip(rows, settings):
            value = run_settings.get(name)
            if value is not None and json.dumps(value, sort_keys=True) != common:
                difference = f"{name} {json.dumps(value, sort_keys=True)} differs from the other runs' {common}"
                row["note"] = f"{row['note']}; {difference}" if row["note"] else difference


def collect_runs(runs_dir: Path, grid: Grid, default_seed: int, data_dir: Path | None = None) -> list[dict]:
    """Rows for base, every run of the grid, and any other run directory found; with `data_dir`,
    the runs made from other data than its files of today have a note saying so."""
    if not runs_dir.is_dir():
        raise UserError(f"{shown(runs_dir)}: no such folder of runs (train or evaluate a run first)")
    expected = expected_runs(grid, default_seed)
    names = {run["run"] for run in expected}
    extra = [found_run_identity(path, default_seed) for path in sorted(runs_dir.iterdir())
             if path.is_dir() and not path.name.startswith(".") and path.name not in names]
    digests = DataDigests(data_dir) if data_dir is not None else None
    rows, settings = zip(*(read_run(runs_dir / identity["run"], identity, digests) for identity in expected + extra))
    note_differing_settings(list(rows), list(settings))
    return list(rows)


def metric_names(rows: list[dict]) -> list[str]:
    """Every metric: the registered ones in registry order (lib.evaluate.metrics.METRICS; an
    optional one, the judge's, only where a run has it), then the others found, sorted."""
    found = {key for row in rows for key in row
             if key not in ID_COLUMNS and key not in COST_COLUMNS and not key.endswith(("_ci_low", "_ci_high"))}
    registered = [name for name, metric in METRICS.items() if not metric.optional or name in found]
    return [*registered, *sorted(found - set(METRICS))]


def summary_columns(rows: list[dict]) -> list[str]:
    """ID columns, every metric with its interval (metric_names), cost columns."""
    metric_fields = [f"{name}{suffix}" for name in metric_names(rows) for suffix in ("", "_ci_low", "_ci_high")]
    return [*ID_COLUMNS, *metric_fields, *COST_COLUMNS]


def write_summary_csv(path: Path, rows: list[dict]) -> None:
    columns = summary_columns(rows)
    with atomic_write(path) as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({column: "" if is_missing(row.get(column)) else row[column] for column in columns})


def read_summary_rows(path: Path) -> tuple[list[str], list[dict]]:
    """summary.csv, as write_summary_csv wrote it: its header and its rows, the identity columns as
    text and every other cell as a float (None where empty). A missing identity column, a row
    with more cells than the header, or a cell that is not a number is an error naming the line."""
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        header = reader.fieldnames or []
        for required in ID_COLUMNS:
            if required not in header:
                raise UserError(f"{shown(path)}:1: no column {required!r}")
        rows = []
        for record in reader:
            line = reader.line_num
            if None in record:  # DictReader keeps the cells beyond the header under the key None
                raise UserError(f"{shown(path)}:{line}: {len(header) + len(record[None])} cells, "
                                f"but the header names {len(header)} columns")
            row = {}
            for key, text in record.items():
                if key in TEXT_COLUMNS:
                    row[key] = text or None
                    continue
                try:
                    row[key] = float(text) if text not in ("", None) else None
                except ValueError:
                    raise UserError(f"{shown(path)}:{line}: column {key}: {text!r} is not a number") from None
            rows.append(row)
    return header, rows


# --- per-item scores from predictions.jsonl ----------------------------------------------------


def read_predictions(rows: list[dict], runs_dir: Path) -> dict[str, dict[str, dict]]:
    """{run: {item id: record}} of every finished run's predictions.jsonl ({} where it is
    absent), read once for both the scaling analysis and the examples. A file that does not read
    makes its run corrupt (the row's status and note say so)."""
    predictions = {}
    for row in rows:
        if row["status"] == "done":
            path = runs_dir / row["run"] / "predictions.jsonl"
            try:
                predictions[row["run"]] = ({item_id(record, path): record for record in read_jsonl(path)}
                                           if path.is_file() else {})
            except UserError as err:
                row |= {"status": "corrupt", "note": f"{err}; {redo_hint(path.name, row['run'])}"}
    return predictions


def item_id(record: dict, path: Path) -> str:
    if "id" not in record:
        raise UserError(f"{shown(path)}: a record without \"id\" ({str(record)[:60]}...)")
    return str(record["id"])


def item_values(scores: dict, metric: str):
    """One item's value for a statistic: for test_loss (summed NLL, reference tokens), the row
    lib.stats.token_weighted_loss takes (`loss` is the mean NLL over the item's own tokens, so
    loss x tokens is its sum); else the score."""
    if metric == "test_loss":
        loss, tokens = scores.get("loss"), scores.get("ref_tokens") or 1
        return None if loss is None else (loss * tokens, tokens)
    return scores.get(metric)


STATISTICS = {"test_loss": token_weighted_loss, "rougeL": mean_statistic}


def aligned_items(score_maps: list[dict], metric: str) -> list[np.ndarray]:
    """The metric's per-item values of several runs, restricted to the items all runs scored,
    in one order (so row i of every array is the same test item)."""
    common = set.intersection(*({item for item, scores in runs.items() if item_values(scores, metric) is not None}
                                for runs in score_maps))
    order = sorted(common)
    return [np.array([item_values(runs[item], metric) for item in order], dtype=float) for runs in score_maps]


# --- scaling of the test loss ------------------------------------------------------------------


def power_law(examples, E: float, A: float, alpha: float):
    return E + A * np.power(examples, -alpha)


def fit_power_law(examples, losses) -> dict:
    """Least-squares E, A, alpha of L(D) = E + A * D^(-alpha); RuntimeError if it does not converge.

    D is measured in units of the smallest size while fitting, so that the amplitude
    A_ref = A * D_min^(-alpha) (the excess loss at D_min) is of order one like E and alpha;
    A = A_ref * D_min^alpha converts it back. Starting values put alpha at ALPHA_START and the
    curve through the first and last points: A_ref = (L_first - L_last) / (1 - (D_last/D_min)^-alpha).
    """
    sizes, losses = np.asarray(examples, dtype=float), np.asarray(losses, dtype=float)
    d_min = sizes.min()
    relative = sizes / d_min
    drop = max(losses[0] - losses[-1], 1e-3 * losses.max())
    a_ref_start = drop / (1 - relative[-1] ** -ALPHA_START)
    e_start = min(max(losses[0] - a_ref_start, 0.0), 0.99 * losses.min())
    from scipy import optimize

    bounds = ([0.0, 1e-12, ALPHA_MIN], [losses.max(), np.inf, ALPHA_MAX])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optimize.OptimizeWarning)  # no covariance from 3 points: not used
        (e, a_ref, alpha), _ = optimize.curve_fit(
            power_law, relative, losses, p0=[e_start, max(losses[0] - e_start, 1e-6), ALPHA_START],
            bounds=bounds, method="trf", maxfev=10_000,
        )
    return {"E": float(e), "A": float(a_ref * d_min**alpha), "alpha": float(alpha)}


def points_by_size(rows: list[dict], method: str, metric: str) -> list[dict]:
    """{"examples", "value", "ci_low", "ci_high", "runs": {seed: run}} per size of a method's
    finished runs, averaged over seeds, smallest size first."""
    groups = defaultdict(list)
    for row in rows:
        if (row["method"] == method and row["status"] == "done" and not is_missing(row["examples"])
                and not is_missing(row.get(metric))):
            groups[int(row["examples"])].append(row)
    points = []
    for examples, group in sorted(groups.items()):
        points.append({"examples": examples, "runs": {row["seed"]: row["run"] for row in group}} | {
            key: mean_or_none([row.get(f"{metric}{suffix}") for row in group])
            for key, suffix in (("value", ""), ("ci_low", "_ci_low"), ("ci_high", "_ci_high"))
        })
    return points


def zero_data_point(rows: list[dict], method: str, metric: str) -> dict | None:
    """The method's point at 0 examples: the untuned model as the method loads it (base-nf4 for
    QLoRA, base otherwise: lib.config.zero_data_run), where that row is done. Not a point of the
    fits (D^(-alpha) and log2 D have no value at 0): the start every size's gain is measured from."""
    run = zero_data_run(method)
    row = next((row for row in rows if row["run"] == run and row["status"] == "done"), None)
    if row is None or is_missing(row.get(metric)):
        return None
    return {"run": run, "examples": 0, "value": row[metric],
            "ci_low": row.get(f"{metric}_ci_low"), "ci_high": row.get(f"{metric}_ci_high")}


def mean_or_none(values: list) -> float | None:
    return None if any(is_missing(v) for v in values) else float(np.mean(values))


def interval(value: float, estimates: list[float]) -> dict:
    """{"value", "ci_low", "ci_high"}: a point estimate and the 95% percentile interval of its
    bootstrap estimates (no interval from no estimates)."""
    if not estimates:
        return {"value": value, "ci_low": None, "ci_high": None}
    low, high = percentile_interval(estimates)
    return {"value": value, "ci_low": low, "ci_high": high}


LOSS_ESTIMATES = (*FIT_PARAMETERS, "slope_per_doubling")  # what each resample of the loss fit estimates


def loss_estimates(sizes: list[int], losses: np.ndarray) -> np.ndarray:
    """E, A, alpha of the power law (NaN where it does not converge) and the least-squares slope
    of the loss against log2 D, the 2-parameter log-linear description beside it."""
    try:
        fit = fit_power_law(sizes, losses)
        parameters = [fit[name] for name in FIT_PARAMETERS]
    except RuntimeError:
        parameters = [math.nan] * len(FIT_PARAMETERS)
    return np.array([*parameters, np.polyfit(np.log2(sizes), losses, 1)[0]])


def bootstrap_loss_fits(sizes: list[int], item_losses: np.ndarray, n_samples: int, label: str) -> np.ndarray:
    """(n_samples, LOSS_ESTIMATES) from refitting on two-stage resamples (lib.stats.
    hierarchical_estimates) of `item_losses`, shaped (training seeds, test items, sizes, 2) of
    [summed NLL, reference tokens]: each resample draws the seeds, then the same items for every
    run. With one seed it is the item bootstrap."""
    progress = tqdm(total=n_samples, desc=f"bootstrap {label}", leave=False)

    def estimates(sample: np.ndarray) -> np.ndarray:
        progress.update()
        totals = sample.sum(axis=1)  # (seeds, sizes, 2): each run's summed NLL and tokens
        losses = (totals[..., 0] / totals[..., 1]).mean(axis=0)  # token-weighted loss, averaged over seeds
        return loss_estimates(sizes, losses)

    with progress:
        return hierarchical_estimates(item_losses, estimates, n_samples, BOOTSTRAP_SEED)


def fit_warnings(method: str, points: list[dict], fit: dict) -> list[str]:
    """What a reader of the fit must know: the loss does not fall, or a parameter sits on a bound."""
    if points[-1]["value"] >= points[0]["value"]:
        return [f"loss fit {method}: the test loss does not fall from the smallest to the largest size; "
                "a falling power law does not describe it"]
    # E on its bound 0: the points show no curvature on log-log axes, so the floor is not identified;
    # alpha on its upper bound: the points drop and then flatten too sharply for any power law.
    at_bound = (["E"] if fit["E"] < 1e-9 else []) + (["alpha"] if fit["alpha"] > 0.99 * ALPHA_MAX else [])
    return [f"loss fit {method}: {' and '.join(at_bound)} at the bound of the fit (E = {fit['E']:.3g} >= 0, "
            f"alpha = {fit['alpha']:.3g} <= {ALPHA_MAX:g}); the points do not determine it"] if at_bound else []


def holdout_check(points: list[dict]) -> dict:
    """Fit without the largest size and predict it: how well the curve extrapolates."""
    held_out = points[-1]
    result = {"size": held_out["examples"], "observed": held_out["value"]}
    if len(points) - 1 < len(FIT_PARAMETERS):
        return {"status": "too_few_points"} | result
    try:
        fit = fit_power_law([p["examples"] for p in points[:-1]], [p["value"] for p in points[:-1]])
    except RuntimeError:
        return {"status": "fit_failed"} | result
    predicted = float(power_law(held_out["examples"], **fit))
    error = abs(predicted - held_out["value"])
    return {"status": "ok"} | result | {"predicted": predicted, "abs_error": error,
                                        "rel_error": error / held_out["value"]}


def loss_fit(rows: list[dict], method: str, item_scores: dict[str, dict], n_samples: int,
             notes: list[str]) -> dict:
    """The power-law fit of one method's test loss over data size, with bootstrap intervals."""
    points = points_by_size(rows, method, "test_loss")
    result = {"points": [[p["examples"], p["value"]] for p in points],
              "zero_data": zero_data_point(rows, method, "test_loss")}
    if len(points) < len(FIT_PARAMETERS):
        return {"status": "too_few_points"} | result
    try:
        fit = fit_power_law([p["examples"] for p in points], [p["value"] for p in points])
    except RuntimeError as err:
        return {"status": "fit_failed", "reason": str(err)} | result
    notes += fit_warnings(method, points, fit)
    sizes = [p["examples"] for p in points]
    observed = loss_estimates(sizes, np.array([p["value"] for p in points]))
    item_losses, seeds = seed_item_losses(points, item_scores)
    draws, resampled = np.empty((0, len(LOSS_ESTIMATES))), None
    if item_losses is not None:
        draws = bootstrap_loss_fits(sizes, item_losses, n_samples, method)
        resampled = RESAMPLED[len(seeds) > 1]
    else:
        runs = [run for point in points for run in point["runs"].values()]
        notes.append(f"loss fit {method}: no interval, no per-item losses shared by {', '.join(runs)}")
    failed = int(np.isnan(draws[:, 0]).sum())
    return {"status": "ok"} | {
        name: interval(float(observed[i]), [d for d in draws[:, i] if not math.isnan(d)])
        for i, name in enumerate(LOSS_ESTIMATES)
    } | result | {
        "holdout": holdout_check(points),
        "bootstrap": {"resampled": resampled, "seeds": seeds, "samples": n_samples if resampled else 0,
                      "failed": failed},
    }


def seed_item_losses(points: list[dict], item_scores: dict[str, dict]) -> tuple[np.ndarray | None, list]:
    """[summed NLL, tokens] per training seed, test item and size, shaped (seeds, items, sizes, 2),
    over the seeds done at every size and the items all their runs scored; (None, []) where a run
    has no per-item losses."""
    seeds = [seed for seed in points[0]["runs"] if all(seed in p["runs"] for p in points)]
    runs = [[p["runs"][seed] for p in points] for seed in seeds]
    if not seeds or not all(item_scores.get(run) for row in runs for run in row):
        return None, []
    aligned = aligned_items([item_scores[run] for row in runs for run in row], "test_loss")
    if not len(aligned[0]):
        return None, []
    per_seed = np.array(aligned).reshape(len(seeds), len(points), *aligned[0].shape)
    return per_seed.transpose(0, 2, 1, 3), seeds


def check_item_scores(rows: list[dict], item_scores: dict[str, dict], notes: list[str]) -> None:
    """Note every run whose per-item losses or ROUGE-L do not reproduce its eval.json value:
    intervals computed from those items would then not describe the reported number."""
    for row in rows:
        scores = item_scores.get(row["run"])
        for metric, statistic in STATISTICS.items():
            if not scores or is_missing(row.get(metric)):
                continue
            values = aligned_items([scores], metric)[0]
            recomputed = statistic(values) if len(values) else math.nan
            if not abs(recomputed - row[metric]) <= ITEM_MISMATCH_TOLERANCE * abs(row[metric]):
                notes.append(f"{row['run']}: {metric} from predictions.jsonl is {recomputed:.4g}, "
                             f"eval.json says {row[metric]:.4g}")


# --- descriptive trends ------------------------------------------------------------------------


def slope_per_doubling(points: list[dict], n_samples: int) -> dict:
    """Least-squares slope of the metric against log2(examples), with a 95% interval from
    redrawing each point within its own standard error (95% half-width / 1.96)."""
    doublings = np.log2([p["examples"] for p in points])
    values = np.array([p["value"] for p in points])
    slope = float(np.polyfit(doublings, values, 1)[0])
    if any(p["ci_low"] is None or p["ci_high"] is None for p in points):
        return {"value": slope, "ci_low": None, "ci_high": None}
    from scipy import stats

    z = stats.norm.ppf(0.5 + CONFIDENCE / 2)
    standard_errors = np.array([(p["ci_high"] - p["ci_low"]) / (2 * z) for p in points])
    rng = np.random.default_rng(BOOTSTRAP_SEED)
    draws = values + rng.standard_normal((n_samples, len(points))) * standard_errors
    slopes = np.polyfit(doublings, draws.T, 1)[0]
    return interval(slope, list(slopes))


def trend(rows: list[dict], method: str, metric: str, n_samples: int) -> dict:
    points = points_by_size(rows, method, metric)
    result = {"points": [[p["examples"], p["value"]] for p in points],
              "zero_data": zero_data_point(rows, method, metric)}
    if len(points) < 2:
        return {"status": "too_few_points"} | result
    return {"status": "ok", "slope_per_doubling": slope_per_doubling(points, n_samples)} | result


# --- LoRA vs QLoRA -----------------------------------------------------------------------------


def ratio(numerator, denominator) -> float | None:
    if is_missing(numerator) or is_missing(denominator) or denominator == 0:
        return None
    return float(numerator) / float(denominator)


def paired_difference(pairs: list[tuple[dict, dict]], metric: str, n_samples: int) -> dict | None:
    """mean over seeds of statistic(a) - statistic(b), over the items every run scored; `pairs` is
    one (a, b) of per-item scores per training seed. Its interval resamples the seeds, then the
    items, the same for both runs of a pair (lib.stats.hierarchical_estimates; with one seed the
    paired bootstrap over items). A p-value only where there are several
    seeds: with one, the interval says how sure we are about these two trained adapters, not
    about the methods, whose training randomness it leaves out."""
    if not all(scores for pair in pairs for scores in pair):
        return None
    aligned = aligned_items([scores for pair in pairs for scores in pair], metric)
    if not len(aligned[0]):
        return None
    values = np.stack([np.stack(aligned[i:i + 2], axis=1) for i in range(0, len(aligned), 2)])  # (seeds, items, 2, ..)
    statistic = STATISTICS[metric]

    def difference(sample: np.ndarray) -> float:
        return float(np.mean([statistic(seed[:, 0]) - statistic(seed[:, 1]) for seed in sample]))

    differences = hierarchical_estimates(values, difference, n_samples, BOOTSTRAP_SEED)
    low, high = percentile_interval(differences)
    return {"difference": difference(values), "ci_low": low, "ci_high": high,
            "p_value": sign_change_p_value(differences) if len(pairs) > 1 else None,
            "n": len(aligned[0]), "seeds": len(pairs), "resampled": RESAMPLED[len(pairs) > 1]}


def compare_methods(rows: list[dict], grid: Grid, default_seed: int, item_scores: dict[str, dict],
                    n_samples: int) -> list[dict]:
    """QLoRA against LoRA at every size where both default-seed runs are done: quality over the
    seeds where both are done, cost at the default seed."""
    by_run = {row["run"]: row for row in rows}

    def done_pair(size: str, seed: int) -> tuple[dict, dict] | None:
        pair = tuple(by_run.get(run_name(method, size, seed, default_seed)) for method in COMPARED)
        return pair if all(row and row["status"] == "done" for row in pair) else None

    comparisons = []
    for size in grid.sizes:
        default = done_pair(size, default_seed)
        if default is None:
            continue
        lora, qlora = default
        seeds = [pair for seed in grid.seeds if (pair := done_pair(size, seed))]
        scores = [(item_scores.get(q["run"]), item_scores.get(lo["run"])) for lo, q in seeds]  # qlora - lora
        comparisons.append({
            "size": size, "examples": parse_count(size), "lora_run": lora["run"], "qlora_run": qlora["run"],
            "rougeL_diff": paired_difference(scores, "rougeL", n_samples),
            "loss_diff": paired_difference(scores, "test_loss", n_samples),
            "time_ratio": ratio(qlora.get("wall_time_s"), lora.get("wall_time_s")),
            "memory_ratio": ratio(qlora.get("peak_memory_gb"), lora.get("peak_memory_gb")),
            "throughput_ratio": ratio(qlora.get("tokens_per_s"), lora.get("tokens_per_s")),
        })
    return comparisons


def scaling_analysis(rows: list[dict], grid: Grid, default_seed: int, predictions: dict[str, dict[str, dict]],
                     n_samples: int) -> dict:
    """The content of scaling.json (see the module docstring), without provenance; `predictions`
    as read_predictions returns them."""
    item_scores = {run: {item: record.get("scores") or {} for item, record in records.items()}
                   for run, records in predictions.items()}
    notes = [f"{row['run']}: {row['status']}: {row['note']}" for row in rows if row.get("note")]
    check_item_scores(rows, item_scores, notes)
    methods = [m for m in dict.fromkeys(row["method"] for row in rows) if m not in (None, BASE_RUN)]
    return {
        "resampled": RESAMPLED[len(grid.seeds) > 1],
        "loss_fits": {method: loss_fit(rows, method, item_scores, n_samples, notes) for method in methods},
        "trends": {metric: {method: trend(rows, method, metric, n_samples) for method in methods}
                   for metric in TREND_METRICS},
        "lora_vs_qlora": compare_methods(rows, grid, default_seed, item_scores, n_samples),
        "notes": notes,
    }


# --- qualitative examples ----------------------------------------------------------------------


def choose_examples(rows: list[dict], predictions: dict[str, dict[str, dict]], count: int = EXAMPLE_COUNT) -> dict:
    """A few test items with the base model's and the best run's answers (`predictions` as
    read_predictions returns them).

    The best run has the lowest test loss among finished trained runs. Items are taken in the
    order of sha256(id), which is fixed but unrelated to how well any run did on them,
    preferring questions short enough to read in the figure.
    """
    trained = [row for row in rows
               if row["method"] != BASE_RUN and row["status"] == "done" and not is_missing(row.get("test_loss"))]
    if not trained:
        return {"best_run": None, "examples": []}
    best_run = min(trained, key=lambda row: (row["test_loss"], row["run"]))["run"]
    best = predictions[best_run]
    base = predictions.get(BASE_RUN, {})
    candidates = [item for item in best if not base or item in base]
    candidates.sort(key=lambda item: (len(best[item].get("question") or "") > EXAMPLE_MAX_QUESTION_CHARS,
                                      hashlib.sha256(item.encode()).hexdigest()))
    examples = [{
        "id": item, "question": best[item].get("question"), "reference": best[item].get("reference"),
        "base": base[item].get("prediction") if base else None, "best": best[item].get("prediction"),
    } for item in candidates[:count]]
    return {"best_run": best_run, "examples": examples}


# --- Markdown ----------------------------------------------------------------------------------


def readable_number(value, count: bool = False) -> str:
    """A number for reading: counts and values from 100 up as integers with separators, values
    from 1 up with 2 decimal places, smaller ones with 3."""
    if is_missing(value):
        return ""
    value = float(value)
    if count or abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.2f}" if abs(value) >= 1 else f"{value:.3f}"


def with_interval(row: dict, name: str) -> str:
    value = readable_number(row.get(name))
    low, high = readable_number(row.get(f"{name}_ci_low")), readable_number(row.get(f"{name}_ci_high"))
    return f"{value} [{low}, {high}]" if value and low and high else value


def markdown_table(header: list[str], lines: list[list[str]]) -> str:
    if not lines:
        return "(none yet)"
    rows = [header, ["---"] * len(header), *lines]
    return "\n".join("| " + " | ".join(cells) + " |" for cells in rows)


def interval_text(stat: dict | None) -> str:
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
    "training seeds and test items": "The intervals of the fits and of QLoRA - LoRA resample the training "
                                     "seeds, then the test items (hierarchical bootstrap); a run's own interval "
                                     "covers its test items only.",
}


def summary_markdown(profile: str, rows: list[dict], scaling: dict) -> str:
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


def zero_data_text(point: dict | None) -> str:
    return f"{interval_text(point)} ({point['run']})" if point else ""


def scaling_markdown(scaling: dict) -> str:
    fits = [[method, fit["status"], *(interval_text(fit.get(name)) for name in LOSS_ESTIMATES),
             holdout_text(fit.get("holdout")), zero_data_text(fit.get("zero_data"))]
            for method, fit in scaling["loss_fits"].items()]
    trends = [[metric, method, item["status"], interval_text(item.get("slope_per_doubling")),
               zero_data_text(item.get("zero_data"))]
              for metric, by_method in scaling["trends"].items() for method, item in by_method.items()]
    comparisons = [[c["size"], interval_text(c["rougeL_diff"]), interval_text(c["loss_diff"]),
                    *(readable_number(c[key]) for key in ("time_ratio", "memory_ratio", "throughput_ratio"))]
                   for c in scaling["lora_vs_qlora"]]
    parts = [
        "## Scaling of the test loss: L(D) = E + A * D^(-alpha)",
        f"Intervals resample the {scaling['resampled']}. Beside the power law, the 2-parameter log-linear "
        "slope: the change of the loss per doubling of the data (least squares on log2 D). The 0-example "
        "point of each method is the base model as it loads it: unquantised (base) for LoRA, NF4 (base-nf4) "
        "for QLoRA; it is not a point of the fits.",
        markdown_table(["method", "status", "E", "A", "alpha", "loss per doubling",
                        "holdout: largest size predicted vs observed", "0 examples"], fits),
        "## Trends (change per doubling of the data, least squares on log2 D)",
        markdown_table(["metric", "method", "status", "slope per doubling", "0 examples"], trends),
        f"## QLoRA vs LoRA (differences QLoRA - LoRA, paired bootstrap over the {scaling['resampled']}; "
        "ratios QLoRA / LoRA)",
        markdown_table(["size", "ROUGE-L diff", "loss diff", "time ratio", "memory ratio", "throughput ratio"],
                       comparisons),
    ]
    if scaling["notes"]:
        parts.append("Notes:\n\n" + "\n".join(f"- {note}" for note in scaling["notes"]))
    return "\n\n".join(parts)


def holdout_text(holdout: dict | None) -> str:
    if not holdout or holdout["status"] != "ok":
        return holdout["status"] if holdout else ""
    return (f"D={holdout['size']:,}: {readable_number(holdout['predicted'])} vs {readable_number(holdout['observed'])} "
            f"({100 * holdout['rel_error']:.1f}% off)")


# --- the command -------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser, method=False)
    parser.add_argument("--runs", required=True, type=Path, help="folder of run directories, e.g. results/demo/runs")
    parser.add_argument("--out", required=True, type=Path, help="where summary.csv, summary.md, scaling.json go")
    parser.add_argument("--data", type=Path,
                        help="the processed data of today (data/processed/<profile>): runs of other data are stale")
    add_grid_arguments(parser)


def run(args: argparse.Namespace) -> None:
    config = config_from_args(args)
    grid, default_seed = requested_grid(args.profile, args.methods, args.sizes, args.seeds)
    rows = collect_runs(args.runs, grid, default_seed, args.data)
    predictions = read_predictions(rows, args.runs)
    scaling = scaling_analysis(rows, grid, default_seed, predictions, config.eval.bootstrap_samples)
    record = provenance(config.to_dict(), seed=BOOTSTRAP_SEED)
    write_json(args.out / "examples.json", choose_examples(rows, predictions) | {"provenance": record})
    write_json(args.out / "scaling.json", scaling | {"provenance": record})
    with atomic_write(args.out / "summary.md") as handle:
        handle.write(summary_markdown(args.profile, rows, scaling))
    write_summary_csv(args.out / "summary.csv", rows)
    done = sum(row["status"] == "done" for row in rows)
    for note in scaling["notes"]:
        print(f"note: {note}")
    print(f"summarize: {done} of {len(rows)} runs done -> {shown(args.out / 'summary.csv')}")
