"""Everything the report reads, loaded once: the Study record.

Absent inputs are None (or empty); each section decides from them whether it can be shown.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

from lib.config import BASE_RUN, METHOD_NAMES, Grid, requested_grid
from lib.evaluate.metrics import METRICS
from lib.io import read_json
from lib.report.columns import Column, metric_column
from lib.report.formatting import path_text
from lib.runs import readable_run_files
from lib.summarize.schema import Examples, Scaling, SummaryRow
from lib.summarize.table import read_summary_rows


@dataclass
class Study:
    """Everything the report reads; None (or empty) where an input is absent."""
    profile: str
    files: dict[str, Path]  # input name -> path, for the messages about missing inputs
    grid: Grid  # the grid asked for, and the methods summary.csv has beyond it
    default_seed: int  # runs of this seed are named without -s<seed>
    rows: list[SummaryRow] | None = None  # summary.csv, numbers parsed
    metrics: list[Column] = field(default_factory=list)  # metric columns of summary.csv
    scaling: Scaling | None = None
    examples: Examples | None = None
    preference: dict | None = None  # the blind review's analysis (lib.review.bradley_terry), where people voted
    cleaning: dict | None = None
    manifest: dict | None = None
    configs: dict[str, dict] = field(default_factory=dict)  # run -> config.json
    train_metrics: dict[str, dict] = field(default_factory=dict)  # run -> train_metrics.json
    evals: dict[str, dict] = field(default_factory=dict)  # run -> eval.json

    @property
    def methods(self) -> tuple[str, ...]:
        return self.grid.methods

    @property
    def quoted_methods(self) -> tuple[str, ...]:
        """The methods with macros: those paper/report.tex names in its text (lib.config.METHOD_NAMES)
        and the grid's others. A method without runs gets \\NA{} in each, so a report of a
        narrowed grid (METHODS=lora) still compiles."""
        return tuple(dict.fromkeys((*METHOD_NAMES, *self.methods)))

    @property
    def sizes(self) -> tuple[str, ...]:
        return self.grid.sizes

    @property
    def seeds(self) -> tuple[int, ...]:
        return self.grid.seeds

    def present(self, name: str) -> bool:
        return self.files[name].is_file()

    def absent_files_sentence(self, names: list[str], what: str) -> str:
        """One sentence: which of these input files are absent, so `what` cannot be shown."""
        absent = [path_text(self.files[name]) for name in names if not self.present(name)]
        return f"缺少 {'、'.join(absent)}，{what}尚无法给出。"

    def row(self, run: str | None) -> SummaryRow | None:
        return next((row for row in self.rows or [] if row["run"] == run), None)

    def done_rows(self) -> list[SummaryRow]:
        return [row for row in self.rows or [] if row["status"] == "done"]

    def trained_runs(self) -> list[str]:
        """Fine-tuned runs with a config.json, in summary order where there is one."""
        order = [row["run"] for row in self.rows or []]
        return sorted(self.configs, key=lambda run: (order.index(run) if run in order else len(order), run))


def load_study(results: Path, runs: Path, data: Path, profile: str,
               methods=None, sizes=None, seeds=None) -> Study:
    """The study's inputs; the grid is the profile's narrowed to `methods`, `sizes`, `seeds`."""
    grid, default_seed = requested_grid(profile, methods, sizes, seeds)
    files = {
        "summary": results / "summary.csv", "scaling": results / "scaling.json",
        "examples": results / "examples.json", "cleaning": data / "cleaning_report.json",
        "manifest": data / "manifest.json", "runs": runs,
        "preference": results / "review" / "preference.json",
    }
    study = Study(profile=profile, files=files, grid=grid, default_seed=default_seed)
    if study.present("summary"):
        study.rows, study.metrics = read_summary(files["summary"])
        found = dict.fromkeys(row["method"] for row in study.rows)
        extra = tuple(m for m in found if m and m != BASE_RUN and m not in grid.methods)
        study.grid = replace(grid, methods=grid.methods + extra)
    for name in ("scaling", "examples", "cleaning", "manifest", "preference"):
        if study.present(name):
            setattr(study, name, read_json(files[name]))
    if runs.is_dir():
        for run_dir in sorted(path for path in runs.iterdir() if path.is_dir()):
            files = readable_run_files(run_dir)  # a corrupt file is left out: the summary names it
            for filename, store in (("config.json", study.configs), ("train_metrics.json", study.train_metrics),
                                    ("eval.json", study.evals)):
                if filename in files:
                    store[run_dir.name] = files[filename]
    study.configs.pop(BASE_RUN, None)  # the base model is not trained: its config says nothing of training
    return study


def read_summary(path: Path) -> tuple[list[SummaryRow], list[Column]]:
    """summary.csv's rows (read_summary_rows) and its metrics: the columns with an interval, the
    registered ones in registry order, then the others in the file's order."""
    header, rows = read_summary_rows(path)
    names = [key for key in header if f"{key}_ci_low" in header]
    ordered = [name for name in METRICS if name in names] + [name for name in names if name not in METRICS]
    return rows, [metric_column(name) for name in ordered]
