"""`python -m lib submit`: the unfinished runs of the grid as a Slurm job array, and a job after it
for the summary, figures and report.

    make submit PROFILE=paper GRES=gpu:1 TIME=12:00:00 PARTITION=gpu     (the Makefile finds the
    unfinished runs with make -q and calls: python -m lib submit --runs lora-10k ... --out results/paper/slurm ...)

Each submission gets its own folder, results/<profile>/slurm/<UTC time>/, holding:

    runs.txt        one run name a line: array task i runs line i+1 (experiments/slurm/array.sbatch)
    variables.txt   the make variables given to make submit, NAME=value a line, for every job's make
    jobs.json       the ids of the array and the report job, and the runs
    task-<i>.log    the log of array task i; report.log, the report job's

A task runs `make exp-<run>` (train, then evaluate) and the report job `make paper` (`make report`
where TeX is missing): the same targets as on a workstation, so a task skips what is finished and
a second submission submits only what is left. The report job starts once every task has ended,
however it ended (--dependency=afterany): runs that failed are rows with their status.
"""

from __future__ import annotations

import argparse
import itertools
import os
import shlex
import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path

from lib.errors import UserError
from lib.io import REPO_ROOT, atomic_write, read_json, shown, write_json

ARRAY_SCRIPT = REPO_ROOT / "experiments" / "slurm" / "array.sbatch"
REPORT_SCRIPT = REPO_ROOT / "experiments" / "slurm" / "report.sbatch"
# make hands these to the commands of its recipes; a job started from one would take the
# submitting make's job-server and flags for its own
MAKE_ENVIRONMENT = ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")


def check_variables(variables: list[str]) -> None:
    for variable in variables:
        name, equals, _ = variable.partition("=")
        if not equals or not name.isidentifier() or "\n" in variable:
            raise UserError(f"submit: --variable {variable!r}: expected NAME=value on one line, e.g. PROFILE=demo")


def new_submission_folder(out: Path) -> Path:
    """<out>/<UTC time>, with a counter where two submissions share a second."""
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    for attempt in itertools.count(1):
        folder = out / (stamp if attempt == 1 else f"{stamp}-{attempt}")
        try:
            folder.mkdir(parents=True)
            return folder
        except FileExistsError:
            continue


def still_queued(out: Path) -> list[str]:
    """The jobs of earlier submissions under `out` that are pending or running: submitting the same
    runs again would queue a second task behind each of them."""
    ids = []
    for path in sorted(out.glob("*/jobs.json")):
        jobs = read_json(path)
        ids += [str(jobs[kind]) for kind in ("array", "report") if jobs.get(kind)]
    if not ids:
        return []
    finished = subprocess.run(["squeue", "--noheader", "--format=%i", f"--jobs={','.join(ids)}"],
                              capture_output=True, text=True)
    if finished.returncode != 0 and "Invalid job id" not in finished.stderr:  # long gone from the queue
        reason = (finished.stderr.strip().splitlines() or ["no message"])[-1]
        raise UserError(f"submit: squeue failed ({reason}): is this machine a Slurm client?")
    return finished.stdout.split()


def sbatch(options: list[str], script: Path, folder: Path, what: str) -> str:
    """Submit `script` on the submission folder; return the job id (sbatch --parsable prints
    <id> or <id>;<cluster>)."""
    command = ["sbatch", "--parsable", f"--chdir={REPO_ROOT}", *options, str(script), str(folder)]
    environment = {name: value for name, value in os.environ.items() if name not in MAKE_ENVIRONMENT}
    finished = subprocess.run(command, capture_output=True, text=True, env=environment)
    if finished.returncode != 0:
        reason = (finished.stderr.strip().splitlines() or ["no message"])[-1]
        raise UserError(f"submit: sbatch refused the {what} ({reason}); command: {shlex.join(command)}")
    return finished.stdout.strip().split(";")[0]


def job_options(args: argparse.Namespace, gres: bool) -> list[str]:
    """The user's sbatch options: PARTITION, TIME and SBATCH_ARGS for every job, GRES for the runs."""
    options = [f"--partition={args.partition}"] if args.partition else []
    options += [f"--time={args.time}"] if args.time else []
    options += [f"--gres={args.gres}"] if gres and args.gres else []
    return options + shlex.split(args.sbatch_args)


def submit(args: argparse.Namespace, folder: Path) -> dict:
    """Write the submission's files and submit its jobs; return what jobs.json records."""
    with atomic_write(folder / "runs.txt") as handle:
        handle.write("".join(f"{run}\n" for run in args.runs))
    with atomic_write(folder / "variables.txt") as handle:
        handle.write("".join(f"{variable}\n" for variable in args.variable))
    jobs = {"runs": args.runs, "array": None, "report": None}
    after = []
    if args.runs:
        jobs["array"] = sbatch([f"--array=0-{len(args.runs) - 1}", f"--job-name={args.job_name}-run",
                                f"--output={folder.resolve()}/task-%a.log", *job_options(args, gres=True)],
                               ARRAY_SCRIPT, folder, f"job array of {len(args.runs)} runs")
        after = [f"--dependency=afterany:{jobs['array']}"]
    try:
        jobs["report"] = sbatch([*after, f"--job-name={args.job_name}-report",
                                 f"--output={folder.resolve()}/report.log", *job_options(args, gres=False)],
                                REPORT_SCRIPT, folder, "report job")
    finally:
        write_json(folder / "jobs.json", jobs)  # the array's id too, should the report job be refused
    return jobs


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--runs", nargs="*", default=[],
                        help="the runs to submit (the unfinished ones), e.g. lora-10k base")
    parser.add_argument("--report-done", action="store_true",
                        help="the report is up to date: without runs to submit, nothing is submitted")
    parser.add_argument("--out", type=Path, required=True, help="results/<profile>/slurm: one folder per submission")
    parser.add_argument("--variable", action="append", default=[], metavar="NAME=VALUE",
                        help="a make variable every job's make gets (repeatable)")
    parser.add_argument("--job-name", default="medqa", help="job names: <name>-run, <name>-report")
    parser.add_argument("--partition", default="", help="sbatch --partition of every job")
    parser.add_argument("--time", default="", help="sbatch --time of every job, e.g. 12:00:00")
    parser.add_argument("--gres", default="", help="sbatch --gres of each run, e.g. gpu:1")
    parser.add_argument("--sbatch-args", default="", help="more sbatch options for every job, e.g. '--account=abc'")


def run(args: argparse.Namespace) -> None:
    if not args.runs and args.report_done:
        print("submit: nothing to submit: every run and the report are up to date")
        return
    check_variables(args.variable)
    if shutil.which("sbatch") is None:
        raise UserError("submit: sbatch not found: make submit needs a Slurm cluster's client commands "
                        '(on one machine: make -j4 all-experiments GPUS="0 1 2 3")')
    queued = still_queued(args.out)
    if queued:
        raise UserError(f"submit: jobs of an earlier submission are still queued or running ({' '.join(queued)}): "
                        f"wait for them (squeue -j {','.join(queued)}) or cancel them (scancel), then submit again")
    folder = new_submission_folder(args.out)
    jobs = submit(args, folder)
    ids = ",".join(job for job in (jobs["array"], jobs["report"]) if job)
    if jobs["array"]:
        print(f"submit: job array {jobs['array']}: {len(args.runs)} runs ({' '.join(args.runs)}); "
              f"task i runs line i+1 of {shown(folder / 'runs.txt')}")
    print(f"submit: report job {jobs['report']}"
          + (f", after the array ends (afterany:{jobs['array']})" if jobs["array"] else ""))
    print(f"watch:  squeue -j {ids}    logs: {shown(folder)}/    when done: sacct -j {ids} "
          f"(where accounting is on) or scontrol show job {jobs['report']}")
