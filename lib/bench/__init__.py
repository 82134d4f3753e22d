"""Benchmarks of the pipeline's stages; each writes <name>.json and <name>.md under --out.

    python -m lib bench-data --out results/bench      # the data pipeline on 100k generated records
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
