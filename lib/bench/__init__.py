"""Benchmarks of the pipeline's stages and what training costs; each writes <name>.json and
<name>.md under --out (results/bench) through write_benchmark.

    lib.bench.data        python -m lib bench-data         the data pipeline on 100k generated records
    lib.bench.collation   python -m lib bench-collation    training tokens/s: this collation vs padding to 512
    lib.bench.generation  python -m lib bench-generation   batched vs one-by-one greedy generation
    lib.bench.demo        python -m lib bench-demo         every stage of make demo, from scratch
    lib.bench.gpu         python -m lib bench-gpu          LoRA/QLoRA training on a GPU: tokens/s, peak memory, MFU
    lib.bench.gpu_check   python -m lib gpu-check          is a GPU machine ready: correctness and speed checks
    lib.bench.summary     python -m lib bench-summary      the headlines of all of them in results/bench/README.md

The model shapes that bench-gpu builds are lib.architecture's; MFU and the measured peak memory are
lib.hardware's. `python -m lib plan` (lib.plan) estimates the memory of the same training without a
GPU (lib.memory) and puts bench-gpu's measured peaks beside its estimate.
"""

from __future__ import annotations

from pathlib import Path

from lib.io import atomic_write, write_json


def write_benchmark(out: Path, name: str, result: dict, text: str) -> None:
    """<name>.json (the numbers) and <name>.md (`text`, for people) under `out`; `text` is printed too."""
    write_json(Path(out) / f"{name}.json", result)
    with atomic_write(Path(out) / f"{name}.md") as handle:
        handle.write(text)
    print(text, end="")
