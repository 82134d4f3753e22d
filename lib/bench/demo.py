"""`python -m lib bench-demo`: the time of every stage of `make demo`, from scratch.

    python -m lib bench-demo --out results/bench                           (make bench-demo)

Runs the demo's make targets one stage after another in a scratch folder (its own data, tiny
model, runs and report; nothing of the working tree is reused or touched) and times each:
data, tiny model, training of the 8 runs, evaluation of the 8 runs and the base model, summary
and figures, report and PDF. Writes demo.json and demo.md under --out. Target: the demo in under
10 minutes on 2 CPU cores once the tiny model is built (that stage is paid once per machine).
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
import time
from pathlib import Path

from lib.bench import write_benchmark
from lib.config import load_grid, run_name
from lib.hardware import machine
from lib.io import REPO_ROOT, provenance
from lib.paper import tex_tools_missing

TARGET_SECONDS = 600
ONCE_PER_MACHINE = "tiny model"  # make tiny-model: later demos reuse models/tiny-qwen2


def stages() -> list[tuple[str, list[str]]]:
    grid = load_grid("demo")
    runs = [run_name(m, size, seed, grid.default_seed)
            for m in grid.methods for size in grid.sizes for seed in grid.seeds]
    return [
        ("data", ["data"]),
        (ONCE_PER_MACHINE, ["model"]),
        (f"train {len(runs)} runs", [f"train-{run}" for run in runs]),
        (f"evaluate {len(runs)} runs + base", ["all-experiments"]),
        ("summary + figures", ["figures"]),
        ("report + PDF", ["paper"]),
    ]


def time_stages(scratch: Path) -> list[dict]:
    places = [f"DATA_DIR={scratch}/data", f"RESULTS_DIR={scratch}/results", f"MODEL={scratch}/tiny-qwen2",
              f"GENERATED_DIR={scratch}/generated", f"BUILD_DIR={scratch}/build"]
    have_tex = not tex_tools_missing()
    timings = []
    for name, targets in stages():
        if name.startswith("report") and not have_tex:
            timings.append({"stage": name, "seconds": None, "note": "skipped: no TeX (make setup-tex)"})
            continue
        started = time.perf_counter()
        subprocess.run(["make", "PROFILE=demo", *places, *targets], cwd=REPO_ROOT, check=True,
                       stdout=subprocess.DEVNULL)
        timings.append({"stage": name, "seconds": time.perf_counter() - started})
    return timings


def markdown(result: dict) -> str:
    lines = ["# `make demo`, stage by stage, from scratch", "",
             "| stage | seconds | share |", "|---|---:|---:|"]
    for stage in result["stages"]:
        seconds = stage["seconds"]
        lines.append(f"| {stage['stage']} | {seconds:.0f} | {100 * seconds / result['total_seconds']:.0f}% |"
                     if seconds is not None else f"| {stage['stage']} | {stage['note']} | |")
    lines += [f"| **total** | **{result['total_seconds']:.0f}** | |",
              f"| **total, {ONCE_PER_MACHINE} already built** | **{result['model_built_seconds']:.0f}** | |", "",
              f"Target: under {TARGET_SECONDS // 60} minutes once the {ONCE_PER_MACHINE} is built: "
              f"{'met' if result['within_target'] else 'missed'}.", ""]
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, default=Path("results/bench"))


def summary(timings: list[dict]) -> dict:
    """The stages' total, and the total of a demo that finds the tiny model already built."""
    total = sum(stage["seconds"] or 0 for stage in timings)
    model_built = total - sum(stage["seconds"] for stage in timings if stage["stage"] == ONCE_PER_MACHINE)
    return {
        "stages": timings, "total_seconds": total, "model_built_seconds": model_built,
        "target_seconds": TARGET_SECONDS, "within_target": model_built < TARGET_SECONDS,
        "headline": [{"measure": "make demo from scratch (all stages)", "value": round(total), "unit": "s"},
                     {"measure": f"make demo, {ONCE_PER_MACHINE} already built", "value": round(model_built),
                      "unit": "s"}],
    }


def run(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        timings = time_stages(Path(scratch))
    result = summary(timings) | {"machine": machine(), "provenance": provenance()}
    write_benchmark(args.out, "demo", result, markdown(result))
