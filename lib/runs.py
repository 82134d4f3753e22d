"""A run folder, results/<profile>/runs/<run>/, and what it holds, read one way by every stage after
evaluation (summary, figures, report):

    config.json          the resolved configuration and provenance      (lib.train)
    adapter/             the LoRA adapter: adapter_config.json, adapter_model.safetensors
    train_metrics.json   cost, throughput, loss history                 (lib.train)
    train.done           written last by training
    eval.json            every metric with its interval                 (lib.evaluate.run)
    predictions.jsonl    one answer per test item                       (lib.evaluate.run)
    mcq_predictions.jsonl  one answer per knowledge-track item          (lib.evaluate.run)

A run's status: missing (no folder), training (no train.done), incomplete (train.done, but the
adapter's files are gone), not_evaluated (trained, no eval.json), done, or corrupt (a file that
is not what its stage writes: not JSON, JSON of another shape, an eval.json without a metric of
the registry lib.evaluate.metrics.METRICS that every evaluation has, or with a value that is not
a finite number). `base` and `base-nf4`, the untuned model unquantised and in NF4, have no
training: they are done, not_evaluated or corrupt. An incomplete or corrupt run is a row with its
status and a note naming the file and the command that redoes it, never a crash of the stage that
reads it; `make exp-<run>` trains an incomplete run again.

What a run was made from is in its files: config.json's `inputs` (the settings the weights depend
on and the sha256 of the train and dev splits, lib.train.training_inputs) and `adapter_sha256`,
and eval.json's `inputs` (the settings the scores depend on, the sha256 of the test set, of the
multiple-choice items and of the adapter, lib.evaluate.run.evaluation_inputs). `stale_inputs`
compares them with the data of today: the Makefile keeps a finished run whatever changed, and the
summary names what is stale.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

from lib.config import NF4_BASE_RUN, UNTUNED_RUNS
from lib.errors import UserError
from lib.io import read_json, sha256_file, shown

ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")  # what PEFT saves and loads
DONE_MARKER = "train.done"
MCQ_PREDICTIONS = "mcq_predictions.jsonl"  # the knowledge track's per-item answers: the MCQ trend resamples them
RUN_LOCK = ".lock"  # held while a process trains or evaluates the run (lib.io.exclusive)
STATUSES = ("done", "training", "incomplete", "not_evaluated", "corrupt", "missing")


class CorruptFile(Exception):
    """A run file that cannot be what its stage wrote; the message names it."""


# --- what each file must look like ----------------------------------------------------------------


def number_or_none(value) -> bool:
    """A finite number, or None (unknown); NaN and infinity are neither."""
    return value is None or (isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value))


def statistic_problem(stat, required: bool = False) -> str | None:
    """What is wrong with a {"value", "ci_low", "ci_high", ...} statistic, or None; a required one
    has a value."""
    if not isinstance(stat, dict):
        return f"a {type(stat).__name__} where a statistic belongs"
    wrong = [f"{key} {stat.get(key)!r}" for key in ("value", "ci_low", "ci_high") if not number_or_none(stat.get(key))]
    if wrong:
        return f"{', '.join(wrong)}: not a finite number"
    return "no value" if required and stat.get("value") is None else None


def always_measured() -> list[str]:
    """The metrics every finished evaluation has (lib.evaluate.metrics.METRICS, `always`)."""
    from lib.evaluate.metrics import METRICS

    return [name for name, metric in METRICS.items() if metric.always]


def eval_problem(result) -> str | None:
    if not isinstance(result, dict) or not isinstance(result.get("metrics"), dict):
        return "no `metrics` mapping"
    missing = [name for name in always_measured() if name not in result["metrics"]]
    if missing:
        return f"no {', '.join(missing)} in `metrics`" if result["metrics"] else "an empty `metrics` mapping"
    for name in always_measured():
        problem = statistic_problem(result["metrics"][name], required=True)
        if problem:
            return f"metrics.{name}: {problem}"
    statistics = {f"metrics.{name}": stat for name, stat in result["metrics"].items()}
    for track in multiple_choice_tracks():
        kept = result.get(track) or {}
        statistics |= {f"{track}.{key}": kept[key] for key in ("overall", "acc", "acc_norm") if kept.get(key)}
        statistics |= {f"{track}.per_source.{k}": v for k, v in (kept.get("per_source") or {}).items()}
    for name, stat in statistics.items():
        problem = statistic_problem(stat)
        if problem:
            return f"{name}: {problem}"
    return None


def multiple_choice_tracks() -> list[str]:
    """The keys of eval.json that hold a multiple-choice track (mcq, general)."""
    from lib.evaluate.metrics import METRICS

    return list(dict.fromkeys(metric.from_eval.split(".")[0] for metric in METRICS.values() if metric.from_eval))


def train_metrics_problem(metrics) -> str | None:
    if not isinstance(metrics, dict):
        return "not a mapping"
    wrong = [key for key, value in metrics.items()
             if key not in ("run", "device", "dtype", "adapter_dtype", "peak_memory_kind", "mfu_formula",
                            "attention", "gradient_checkpointing", "log_history", "provenance")
             and not number_or_none(value)]
    if wrong:
        return f"{', '.join(wrong)} not a number"
    history = metrics.get("log_history", [])
    return None if isinstance(history, list) and all(isinstance(e, dict) for e in history) else "log_history not a list"


def config_problem(config) -> str | None:
    return None if isinstance(config, dict) and isinstance(config.get("run", {}), dict) else "not a run's configuration"


CHECKS: dict[str, Callable] = {"eval.json": eval_problem, "train_metrics.json": train_metrics_problem,
                               "config.json": config_problem}


def redo_hint(name: str, run: str) -> str:
    """How to make a damaged file of a run again (the Makefile keeps a finished run unless REDO=1
    names it)."""
    if name in ("eval.json", "predictions.jsonl", MCQ_PREDICTIONS):
        return f"`make eval-{run} REDO=1` evaluates it again"
    return f"`make exp-{run} REDO=1` trains and evaluates it again"


def read_run_file(run_dir: Path, name: str) -> dict | None:
    """config.json, train_metrics.json or eval.json of a run, None where absent; CorruptFile where
    it is not what its stage writes."""
    path = run_dir / name
    if not path.is_file():
        return None
    try:
        content = read_json(path)
    except UserError as err:
        raise CorruptFile(str(err)) from None
    problem = CHECKS[name](content)
    if problem:
        raise CorruptFile(f"{shown(path)}: {problem}")
    return content


def readable_run_files(run_dir: Path, names=tuple(CHECKS)) -> dict[str, dict]:
    """{file name: content} of the run's files that exist and read; a corrupt one is left out (the
    summary names it)."""
    files = {}
    for name in names:
        try:
            content = read_run_file(run_dir, name)
        except CorruptFile:
            continue
        if content is not None:
            files[name] = content
    return files


def adapter_to_load(run_dir: Path, load_in_4bit: bool) -> Path | None:
    """The adapter a run answers with (evaluation, chat): none for the untuned rows. base-nf4 is
    the base model in NF4, so it is loaded with a 4-bit method's configuration, never in 16 bits."""
    if run_dir.name == NF4_BASE_RUN and not load_in_4bit:
        raise UserError(f"{shown(run_dir)}: {NF4_BASE_RUN} is the base model quantised to NF4; load it with "
                        f"--method qlora (make eval-{NF4_BASE_RUN})")
    return None if run_dir.name in UNTUNED_RUNS else run_dir / "adapter"


# --- the status ------------------------------------------------------------------------------------


def run_status(run_dir: Path) -> tuple[str, str | None]:
    """(status, note): the note names the file that makes a run incomplete or corrupt."""
    if not run_dir.is_dir():
        return "missing", None
    if run_dir.name not in UNTUNED_RUNS:
        if not (run_dir / DONE_MARKER).is_file():
            return "training", None
        gone = [name for name in ADAPTER_FILES if not (run_dir / "adapter" / name).is_file()]
        if gone:
            return "incomplete", (f"{shown(run_dir / 'adapter')}: {', '.join(gone)} missing; "
                                  f"`make exp-{run_dir.name}` trains it again")
    for name in CHECKS:
        try:
            read_run_file(run_dir, name)
        except CorruptFile as err:
            return "corrupt", f"{err}; {redo_hint(name, run_dir.name)}"
    return ("done" if (run_dir / "eval.json").is_file() else "not_evaluated"), None


# --- what a run was made from, and what has changed since ---------------------------------------------


def adapter_digest(run_dir: Path) -> str | None:
    """sha256 of the adapter's weights, None for the untuned rows (and where they are gone)."""
    weights = run_dir / "adapter" / "adapter_model.safetensors"
    return sha256_file(weights) if run_dir.name not in UNTUNED_RUNS and weights.is_file() else None


class DataDigests:
    """sha256 of the files of a processed data folder, each hashed once; None for a missing file."""

    def __init__(self, data_dir: Path):
        self.data_dir, self.known = data_dir, {}

    def __call__(self, name: str) -> str | None:
        if name not in self.known:
            path = self.data_dir / name
            self.known[name] = sha256_file(path) if path.is_file() else None
        return self.known[name]


def stale_inputs(run_dir: Path, digests: DataDigests) -> list[str]:
    """What a finished run was made from that is no longer so: "train-10k.jsonl" (trained on other
    data), "test.jsonl" (evaluated on another test set), "adapter" (evaluated with other weights
    than the run's adapter now). A file that is gone today, or a run that recorded nothing, is not
    counted: there is nothing to compare."""
    files = readable_run_files(run_dir, ("config.json", "eval.json"))
    training = files.get("config.json", {}).get("inputs") or {}
    evaluation = files.get("eval.json", {}).get("inputs") or {}
    recorded = {**(training.get("data") or {}), **(evaluation.get("data") or {})}
    stale = [name for name, digest in recorded.items() if digest and digests(name) not in (None, digest)]
    evaluated_with = evaluation.get("adapter")
    trained = files.get("config.json", {}).get("adapter_sha256")
    if evaluated_with and trained and evaluated_with != trained:
        stale.append("adapter")
    return stale


def stale_note(run: str, stale: list[str]) -> str:
    """One line: what is stale in a run and the command that brings it up to date."""
    files = [name for name in stale if name != "adapter"]
    what = [f"{', '.join(files)} changed since it was made from {'them' if len(files) > 1 else 'it'}"] if files else []
    what += ["evaluated with an earlier adapter"] if "adapter" in stale else []
    return f"stale: {'; '.join(what)}; `make exp-{run} REDO=1` redoes what changed"
