"""A run folder, results/<profile>/runs/<run>/, and what it holds, read one way by every stage after
evaluation (summary, figures, report):

    config.json          the resolved configuration and provenance      (lib.train)
    adapter/             the LoRA adapter: adapter_config.json, adapter_model.safetensors
    train_metrics.json   cost, throughput, loss history                 (lib.train)
    train.done           written last by training
    eval.json            every metric with its interval                 (lib.evaluate.run)
    predictions.jsonl    one answer per test item                       (lib.evaluate.run)

A run's status: missing (no folder), training (no train.done), incomplete (train.done, but the
adapter's files are gone), not_evaluated (trained, no eval.json), done, or corrupt (a file that
is not what its stage writes: not JSON, or JSON of another shape). `base` and `base-nf4`, the
untuned model unquantised and in NF4, have no training: they are done, not_evaluated or corrupt.
An incomplete or corrupt run is a row with its status and a note naming the file, never a crash
of the stage that reads it; `make exp-<run>` trains an incomplete run again (the Makefile's
adapter target).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from lib.config import NF4_BASE_RUN, UNTUNED_RUNS
from lib.errors import UserError
from lib.io import read_json, shown

ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")  # what PEFT saves and loads
DONE_MARKER = "train.done"
RUN_LOCK = ".lock"  # held while a process trains or evaluates the run (lib.io.exclusive)
STATUSES = ("done", "training", "incomplete", "not_evaluated", "corrupt", "missing")


class CorruptFile(Exception):
    """A run file that cannot be what its stage wrote; the message names it."""


# --- what each file must look like ----------------------------------------------------------------


def number_or_none(value) -> bool:
    return value is None or (isinstance(value, int | float) and not isinstance(value, bool))


def statistic_problem(stat) -> str | None:
    """What is wrong with a {"value", "ci_low", "ci_high", ...} statistic, or None."""
    if not isinstance(stat, dict):
        return f"a {type(stat).__name__} where a statistic belongs"
    wrong = [key for key in ("value", "ci_low", "ci_high") if not number_or_none(stat.get(key))]
    return f"{', '.join(wrong)} not a number" if wrong else None


def eval_problem(result) -> str | None:
    if not isinstance(result, dict) or not isinstance(result.get("metrics"), dict):
        return "no `metrics` mapping"
    mcq = result.get("mcq") or {}
    statistics = {**result["metrics"], **({"mcq.overall": mcq["overall"]} if mcq.get("overall") else {}),
                  **{f"mcq.per_source.{k}": v for k, v in (mcq.get("per_source") or {}).items()}}
    for name, stat in statistics.items():
        problem = statistic_problem(stat)
        if problem:
            return f"{name}: {problem}"
    return None


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
            return "corrupt", f"{err}; delete it and run `make exp-{run_dir.name}` again"
    return ("done" if (run_dir / "eval.json").is_file() else "not_evaluated"), None
