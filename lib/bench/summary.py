"""`python -m lib bench-summary`: the headline of every benchmark in one table.

    python -m lib bench-summary --dir results/bench                        (the last step of make bench)

Each benchmark writes <name>.json with a `headline` list ({measure, value, unit}: a ratio of two
things measured side by side in one run, or a time) and <name>.md with its details. This
gathers the headlines into results/bench/README.md, with the machine they ran on.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from lib.io import atomic_write, read_json


def markdown(results: dict[str, dict]) -> str:
    """The table of headlines; files without one (gpu-<profile>.json, plan-<profile>.json) are
    details, and their machine does not count."""
    headlined = {name: result for name, result in results.items() if result.get("headline")}
    machines = {(m.get("platform"), m.get("cpu_count")) for m in (r.get("machine") or {} for r in headlined.values())}
    some = next(iter(headlined.values()), {}).get("machine") or {}
    lines = ["# Benchmarks", "",
             f"Machine: {some.get('platform', '?')}, {some.get('cpu_count', '?')} CPU cores"
             f"{'' if len(machines) <= 1 else ' (several machines: see each file)'}. Details in each <name>.md.", "",
             "| benchmark | measure | value |", "|---|---|---:|"]
    for name, result in sorted(headlined.items()):
        for headline in result["headline"]:
            lines.append(f"| [{name}]({name}.md) | {headline['measure']} | {headline['value']} {headline['unit']} |")
    return "\n".join(lines) + "\n"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dir", type=Path, default=Path("results/bench"))


def run(args: argparse.Namespace) -> None:
    results = {path.stem: read_json(path) for path in sorted(args.dir.glob("*.json"))}
    text = markdown(results)
    with atomic_write(args.dir / "README.md") as handle:
        handle.write(text)
    print(text, end="")
