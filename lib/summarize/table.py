"""The table of runs: one row per run of the expected grid (and any other run folder found), with
its status, metrics and training cost; summary.csv written and read back.

The expected grid is base (+ base-nf4 where a method loads the base in 4-bit) + methods x sizes x
seeds (default: experiments/grid.yaml for the profile; runs of its first seed are named without
-s<seed>, lib.config.run_name). base and base-nf4 are rows of method "base" with 0 examples,
told apart by their run name: each method's 0-data row is the base model as the method loads it
(lib.config.zero_data_run: base-nf4, the base in NF4, for a 4-bit method such as QLoRA; base
otherwise); run directories found beyond the grid are listed too. Missing and unfinished runs are
rows with a status, never an error.

Status (lib.runs): done, missing, training, incomplete (its adapter's files are gone),
not_evaluated, corrupt (a file of the run is not what its stage writes, predictions.jsonl
included); `note` names the file of an incomplete or corrupt run, which is otherwise left out,
and the command that redoes it. With the data of today, a finished run made from data (or
weights) that have changed since is kept, with a note that says it is stale
(lib.runs.stale_inputs). A run decoded or trained otherwise than most (SHARED_SETTINGS) is noted
too: its numbers are not comparable with theirs.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

from lib.config import BASE_RUN, UNTUNED_RUNS, Grid, parse_count, parse_run_name, run_name, zero_data_run
from lib.errors import UserError
from lib.evaluate.metrics import METRICS
from lib.io import atomic_write, nested_value, shown
from lib.runs import DataDigests, readable_run_files, run_status, stale_inputs, stale_note
from lib.stats import is_missing
from lib.summarize.schema import COST_COLUMNS, ID_COLUMNS, TEXT_COLUMNS, SummaryRow

# Settings every run must share for its numbers to be compared (the file's name, then the keys):
# how answers were decoded (lib.evaluate.generate.Decoding.record) and the adapters' precision.
SHARED_SETTINGS = {"decoding": ("eval.json", "generation.decoding"),
                   "adapter_dtype": ("train_metrics.json", "adapter_dtype")}


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
    """{name: value, name_ci_low: .., name_ci_high: ..} for every metric, those eval.json keeps
    outside `metrics` (the multiple-choice tracks, Metric.from_eval) included."""
    metrics = dict(eval_result.get("metrics", {}))
    for name, metric in METRICS.items():
        if metric.from_eval and (stat := nested_value(eval_result, metric.from_eval)):
            metrics[name] = stat
    columns = {}
    for name, stat in metrics.items():
        columns[name] = stat.get("value")
        columns[f"{name}_ci_low"] = stat.get("ci_low")
        columns[f"{name}_ci_high"] = stat.get("ci_high")
    return columns


def read_run(run_dir: Path, identity: dict, digests: DataDigests | None = None) -> tuple[SummaryRow, dict]:
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


def note_differing_settings(rows: list[SummaryRow], settings: list[dict]) -> None:
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


def collect_runs(runs_dir: Path, grid: Grid, default_seed: int, data_dir: Path | None = None) -> list[SummaryRow]:
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


def metric_names(rows: list[SummaryRow]) -> list[str]:
    """Every metric: the registered ones in registry order (lib.evaluate.metrics.METRICS; an
    optional one, the judge's, only where a run has it), then the others found, sorted."""
    found = {key for row in rows for key in row
             if key not in ID_COLUMNS and key not in COST_COLUMNS and not key.endswith(("_ci_low", "_ci_high"))}
    registered = [name for name, metric in METRICS.items() if not metric.optional or name in found]
    return [*registered, *sorted(found - set(METRICS))]


def summary_columns(rows: list[SummaryRow]) -> list[str]:
    """ID columns, every metric with its interval (metric_names), cost columns."""
    metric_fields = [f"{name}{suffix}" for name in metric_names(rows) for suffix in ("", "_ci_low", "_ci_high")]
    return [*ID_COLUMNS, *metric_fields, *COST_COLUMNS]


def write_summary_csv(path: Path, rows: list[SummaryRow]) -> None:
    columns = summary_columns(rows)
    with atomic_write(path) as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({column: "" if is_missing(row.get(column)) else row[column] for column in columns})


def read_summary_rows(path: Path) -> tuple[list[str], list[SummaryRow]]:
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
