"""One run per GPU: `python -m lib on-free-gpu` hands each concurrent job its own ids, and make -jN
GPUS=... runs the grid that way. On a CPU the ids are pretend ones: CUDA_VISIBLE_DEVICES is then
harmless, and what is checked is which id each wrapped command held, and when, as the commands
themselves record it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from builders import REPO_ROOT, small_grid_overrides

# A wrapped command: records the ids it was given, its thread share and the time it held them.
RECORD = ("import json, os, sys, time\n"
          "start = time.time(); time.sleep(float(sys.argv[2]))\n"
          "record = {'gpus': os.environ['CUDA_VISIBLE_DEVICES'].split(','), 'threads': os.environ['OMP_NUM_THREADS'],\n"
          "          'start': start, 'end': time.time()}\n"
          "open(sys.argv[1], 'w').write(json.dumps(record))\n")


def on_free_gpu(locks: Path, gpus: list[str], count: int, *command: str, **popen) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "lib", "on-free-gpu", "--gpus", *gpus, "--count", str(count),
                             "--locks", str(locks), "--", *command], cwd=REPO_ROOT, **popen)


def assert_never_shared(records: list[dict]) -> None:
    """No two records that overlap in time hold the same id."""
    for i, first in enumerate(records):
        for second in records[i + 1:]:
            if first["start"] < second["end"] and second["start"] < first["end"]:
                assert not set(first["gpus"]) & set(second["gpus"]), (first, second)


@pytest.mark.parametrize(("pool", "count", "jobs"), [(["0", "1"], 1, 5), (["0", "1", "2", "3"], 2, 4)])
def test_concurrent_jobs_never_hold_the_same_id_and_all_finish(tmp_path, pool, count, jobs):
    records = [tmp_path / f"job-{i}.json" for i in range(jobs)]
    started = [on_free_gpu(tmp_path / "locks", pool, count, sys.executable, "-c", RECORD, str(record), "0.5",
                           stderr=subprocess.PIPE, text=True) for record in records]
    outputs = [process.communicate(timeout=60)[1] for process in started]
    assert [process.returncode for process in started] == [0] * jobs, outputs
    held = [json.loads(record.read_text()) for record in records]
    assert all(len(set(record["gpus"])) == count and set(record["gpus"]) <= set(pool) for record in held)
    assert_never_shared(held)
    assert {gpu for record in held for gpu in record["gpus"]} == set(pool)  # jobs waited for free ids, not for one
    # the cores are shared out like the ids, unless the user says otherwise
    assert {record["threads"] for record in held} == {str(max(1, len(os.sched_getaffinity(0)) // len(pool)))}


def test_a_killed_job_frees_its_id_and_a_waiting_job_takes_it(tmp_path):
    locks = tmp_path / "locks"
    holder = on_free_gpu(locks, ["0"], 1, sys.executable, "-c", "import time; time.sleep(120)")
    deadline = time.monotonic() + 30
    while "pid" not in ((locks / "gpu-0.lock").read_text() if (locks / "gpu-0.lock").exists() else ""):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    waiting = on_free_gpu(locks, ["0"], 1, sys.executable, "-c", RECORD, str(tmp_path / "waited.json"), "0",
                          stderr=subprocess.PIPE, text=True, env={**os.environ, "OMP_NUM_THREADS": "3"})
    time.sleep(1.5)
    assert waiting.poll() is None  # still waiting for the only id
    os.kill(holder.pid, signal.SIGKILL)  # the wrapper became the command: killing it is killing the job
    holder.wait()
    stderr = waiting.communicate(timeout=30)[1]
    assert waiting.returncode == 0, stderr
    assert f"waiting for 1 free GPU(s) of 0 (0: pid {holder.pid} on " in stderr
    record = json.loads((tmp_path / "waited.json").read_text())
    assert record["gpus"] == ["0"] and record["threads"] == "3"


def test_the_command_exit_status_is_the_jobs(tmp_path):
    failing = on_free_gpu(tmp_path, ["0"], 1, sys.executable, "-c", "raise SystemExit(3)")
    assert failing.wait(timeout=60) == 3


@pytest.mark.parametrize(("arguments", "message"), [
    (["--gpus", "0,1", "--", "true"], "'0,1' is not one GPU id: separate ids by spaces"),
    (["--gpus", "0", "0", "--", "true"], "a GPU id is listed twice"),
    (["--gpus", "0", "1", "--count", "3", "--", "true"], "a job asks for 3 GPUs but the pool has 2"),
    (["--", "true"], "no GPU ids given"),
    (["--gpus", "0"], "no command given"),
    (["--gpus", "0", "--", "no-such-command-here"], "cannot run no-such-command-here"),
])
def test_bad_input_is_one_line_saying_what_to_do(run_cli, tmp_path, arguments, message):
    finished = run_cli("on-free-gpu", "--locks", tmp_path, *arguments)
    assert finished.returncode == 2
    assert finished.stderr.strip().splitlines()[-1].startswith(f"error: on-free-gpu: {message}"), finished.stderr


# --- the grid through make ------------------------------------------------------------------------

# python as the Makefile runs it: records the id each command held (its pid pairs start and end
# lines), around the real one
RECORDING_PYTHON = ("""#!/bin/bash
line() {{ echo "{{\\"pid\\": $$, \\"command\\": \\"$1\\", \\"gpus\\": \\"${{CUDA_VISIBLE_DEVICES:-}}\\", """
                    """\\"$2\\": $(date +%s.%N)}}" >> {log}; }}
line "$3" start
{python} "$@"; status=$?
line "$3" end
exit $status
""")


@pytest.mark.slow
def test_make_runs_the_grid_one_job_per_id_with_the_results_of_a_sequential_run(tiny_model, tmp_path):
    log = tmp_path / "commands.jsonl"
    python = tmp_path / "python"
    python.write_text(RECORDING_PYTHON.format(log=log, python=REPO_ROOT / ".venv" / "bin" / "python"))
    python.chmod(0o755)
    settings = small_grid_overrides(tiny_model)
    common = ["PROFILE=demo", f"DATA_DIR={tmp_path}/data", f"GENERATED_DIR={tmp_path}/generated",
              f"MODEL={tiny_model}", "METHODS=lora", "SIZES=32", f"SET={' '.join(settings)}"]
    # one thread per process in both runs, so that they compute the same sums in the same order
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}

    def make(*arguments: str) -> None:
        finished = subprocess.run(["make", *common, *arguments], cwd=REPO_ROOT, capture_output=True, text=True,
                                  timeout=600, env=environment)
        assert finished.returncode == 0, finished.stderr[-3000:]

    make("-j2", "all-experiments", "GPUS=0 1", f"GPU_LOCKS={tmp_path}/locks", f"PY={python}",
         f"RESULTS_DIR={tmp_path}/parallel")
    commands: dict[str, dict] = {}
    for line in log.read_text().splitlines():
        record = json.loads(line)
        commands.setdefault(record.pop("pid"), {}).update(record)
    jobs = [job for job in commands.values() if job["command"] in ("train", "evaluate")]
    # the smallest grid with two jobs at once: base's evaluation runs while lora-32 trains
    assert sorted(job["command"] for job in jobs) == ["evaluate"] * 2 + ["train"]
    assert all(job["gpus"] in ("0", "1") for job in jobs)
    held = [{"gpus": [job["gpus"]], "start": job["start"], "end": job["end"]} for job in jobs]
    assert any(a["start"] < b["end"] and b["start"] < a["end"] for i, a in enumerate(held) for b in held[i + 1:])
    assert_never_shared(held)

    make("exp-lora-32", "GPUS=", f"RESULTS_DIR={tmp_path}/sequential")
    parallel = json.loads((tmp_path / "parallel" / "demo" / "runs" / "lora-32" / "eval.json").read_text())
    sequential = json.loads((tmp_path / "sequential" / "demo" / "runs" / "lora-32" / "eval.json").read_text())
    assert parallel["metrics"] == sequential["metrics"] and parallel["mcq"] == sequential["mcq"]
