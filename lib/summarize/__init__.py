"""`python -m lib summarize`: from runs to results: one table of every run, the data-scaling fits,
LoRA vs QLoRA, qualitative examples.

    python -m lib summarize --runs results/demo/runs --out results/demo --profile demo
    python -m lib summarize --runs results/paper/runs --out results/paper --profile paper \\
        --methods lora qlora --sizes 10k 20k --seeds 42

One module per job; what each file holds is typed in schema.py, which the figures and the report read:

    table.py            runs -> rows (status, metrics, cost): summary.csv, written and read back
    item_scores.py      each finished run's per-item scores (predictions.jsonl, mcq_predictions.jsonl),
                        checked against eval.json
    fits.py             the power law of the test loss, its residual degrees of freedom and leave-one-size-out
                        check, and the trends of other metrics, with seed-then-item bootstrap intervals
    lora_vs_qlora.py    QLoRA against LoRA at each size: paired differences, cost ratios
    forgetting.py       each run against its own base row on the multiple-choice tracks (general: forgetting)
    example_answers.py  a few test items with the base model's and the best run's answers
    markdown.py         summary.md
    schema.py           the files' shapes: SummaryRow, Scaling, Examples and their parts

Files written to --out, summary.csv last (its presence means the step finished; it is the
Makefile's target): examples.json, scaling.json, summary.md, summary.csv. With --data, a finished
run made from data (or weights) that have changed since is kept, with a note that says it is
stale; each note is also printed, one line per run.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from lib.arguments import add_config_arguments, add_grid_arguments, config_from_args
from lib.config import BASE_RUN, Grid, grid_of_sizes, requested_grid
from lib.io import atomic_write, provenance, shown, write_json
from lib.stats import BOOTSTRAP_SEED
from lib.summarize.example_answers import choose_examples
from lib.summarize.fits import loss_fit, trend
from lib.summarize.forgetting import changes_from_base, read_track_items
from lib.summarize.item_scores import check_item_scores, read_item_scores, read_predictions
from lib.summarize.lora_vs_qlora import compare_methods
from lib.summarize.markdown import summary_markdown
from lib.summarize.schema import RESAMPLED, TREND_METRICS, Scaling, SummaryRow
from lib.summarize.table import collect_runs, write_summary_csv


def scaling_analysis(rows: list[SummaryRow], grid: Grid, default_seed: int, item_scores: dict[str, dict],
                     n_samples: int, profile: str, track_items: dict[str, dict[str, dict]]) -> Scaling:
    """The content of scaling.json (lib.summarize.schema.Scaling), without provenance; `item_scores`
    as read_item_scores returns them, `track_items` as read_track_items does."""
    notes = [f"{row['run']}: {row['status']}: {row['note']}" for row in rows if row.get("note")]
    check_item_scores(rows, item_scores, notes)
    methods = [m for m in dict.fromkeys(row["method"] for row in rows) if m not in (None, BASE_RUN)]
    loss_fits = {method: loss_fit(rows, method, item_scores, n_samples, notes) for method in methods}
    fitted_sizes = sorted({int(point[0]) for fit in loss_fits.values() for point in fit["points"]})
    return {
        "resampled": RESAMPLED[len(grid.seeds) > 1],
        "grid": {"name": grid_of_sizes(profile, fitted_sizes), "sizes": fitted_sizes},
        "loss_fits": loss_fits,
        "trends": {metric: {method: trend(rows, method, metric, item_scores, n_samples, notes) for method in methods}
                   for metric in TREND_METRICS},
        "lora_vs_qlora": compare_methods(rows, grid, default_seed, item_scores, n_samples),
        "forgetting": changes_from_base(rows, track_items, n_samples),
        "notes": notes,
    }


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
    item_scores = read_item_scores(rows, args.runs, predictions)
    scaling = scaling_analysis(rows, grid, default_seed, item_scores, config.eval.bootstrap_samples, args.profile,
                               read_track_items(rows, args.runs))
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
