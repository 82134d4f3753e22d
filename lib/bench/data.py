"""`python -m lib bench-data`: time the data pipeline on generated records, stage by stage.

    python -m lib bench-data --out results/bench [--records 100000] [--sizes 10k 20k 40k]

Generates --records synthetic raw records and prepares them with the code of `python -m lib data`
(the paper profile's cleaning and test/dev sizes) in a temporary folder, then writes
results/bench/data.json and data.md: seconds and records/s of each stage (generate, read,
clean with MinHash near-duplicates, split and write), the total, and the machine. The target is
100k records in under a minute on 2 CPU cores. Generated data repeats itself far more than real
data (about half of it is duplicates), which makes the near-duplicate search busier than usual.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

from lib.bench import write_benchmark
from lib.config import load_config
from lib.data.prepare import prepare
from lib.hardware import machine, peak_rss_gb
from lib.io import provenance

TARGET_SECONDS = 60  # for 100k raw records on 2 cores
STAGES = {"source": "generate", "read": "read", "clean": "clean", "split": "split_write"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="results/bench", help="folder for data.json and data.md")
    parser.add_argument("--records", type=int, default=100_000, help="raw records to generate (default 100000)")
    parser.add_argument("--sizes", nargs="+", default=["10k", "20k", "40k"],
                        help="train sizes to write (default: the paper sizes that 100k generated records hold)")


def run(args: argparse.Namespace) -> None:
    config = load_config("paper", overrides=["data.source=synthetic", f"data.synthetic_size={args.records}"])
    cpu_start, wall_start = time.process_time(), time.perf_counter()
    with tempfile.TemporaryDirectory() as scratch:
        prepared = prepare(config, Path(scratch) / "raw", Path(scratch) / "processed", args.sizes)
    wall, cpu = time.perf_counter() - wall_start, time.process_time() - cpu_start

    def rate(seconds: float) -> dict:
        return {"seconds": round(seconds, 2), "records_per_s": round(args.records / seconds)}

    target = TARGET_SECONDS * args.records / 100_000  # the target scales with the records

    result = {
        "records": args.records,
        "clean_records": prepared.report["kept"],
        "sizes": args.sizes,
        "stages": {STAGES[stage]: rate(seconds) for stage, seconds in prepared.timings.items()},
        "total": {**rate(wall), "cpu_seconds": round(cpu, 2)},
        "target_seconds": target,
        "within_target": wall < target,
        "peak_rss_gb": round(peak_rss_gb(), 2),
        "headline": [{"measure": f"data preparation of {args.records:,} generated records (target {target:g} s)",
                      "value": round(wall, 1), "unit": "s"}],
        "machine": machine(),
        "provenance": provenance({"data": asdict(config.data), "cleaning": asdict(config.cleaning)}),
    }
    write_benchmark(Path(args.out), "data", result, markdown(result))


def markdown(result: dict) -> str:
    machine = result["machine"]
    lines = [
        f"# Data pipeline benchmark: {result['records']} generated records",
        "",
        f"{result['clean_records']} records kept; train sizes {' '.join(result['sizes'])}. "
        f"Machine: {machine['platform']}, {machine['cpu_count']} CPUs.",
        "",
        "| stage | seconds | records/s |",
        "|---|---:|---:|",
    ]
    lines += [f"| {name} | {s['seconds']} | {s['records_per_s']} |" for name, s in result["stages"].items()]
    total = result["total"]
    lines += [
        f"| **total** | **{total['seconds']}** | **{total['records_per_s']}** |",
        "",
        f"CPU time {total['cpu_seconds']} s; peak memory {result['peak_rss_gb']} GB; "
        f"target under {result['target_seconds']:g} s: {'met' if result['within_target'] else 'missed'}.",
        "",
    ]
    return "\n".join(lines)
