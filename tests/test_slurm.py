"""make submit on a real Slurm: a controller and a compute node on this machine, started for the test.

The daemons are Debian's slurm-wlm and munge (make setup-slurm; .ci/run installs them), with a
configuration of their own in a temporary folder (free ports, their own munge socket and key),
so that nothing of the machine's own set-up is used or changed. They run as root, as a compute
node must to start jobs. Where Slurm is missing or the test is not root, it skips and says why.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from builders import REPO_ROOT, small_grid_overrides

DAEMONS = ("munged", "slurmctld", "slurmd")
CLIENTS = ("sbatch", "squeue", "scontrol", "scancel", "sinfo")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def slurm_conf(folder: Path, node_line: str) -> str:
    """One controller and one node (this machine, as `slurmd -C` describes it), no accounting
    database: finished jobs are lines of the jobcomp/filetxt log."""
    host = socket.gethostname().split(".")[0]
    return "\n".join([
        "ClusterName=medqa-test", f"SlurmctldHost={host}", "SlurmUser=root", "SlurmdUser=root",
        f"SlurmctldPort={free_port()}", f"SlurmdPort={free_port()}",
        "AuthType=auth/munge", "CredType=cred/munge", f"AuthInfo=socket={folder}/munge/munge.socket",
        f"StateSaveLocation={folder}/state", f"SlurmdSpoolDir={folder}/spool",
        f"SlurmctldPidFile={folder}/slurmctld.pid", f"SlurmdPidFile={folder}/slurmd.pid",
        f"SlurmctldLogFile={folder}/slurmctld.log", f"SlurmdLogFile={folder}/slurmd.log",
        "ProctrackType=proctrack/linuxproc", "TaskPlugin=task/none", "JobAcctGatherType=jobacct_gather/none",
        "SelectType=select/cons_tres", "SelectTypeParameters=CR_Core", "MpiDefault=none",
        "AccountingStorageType=accounting_storage/none",
        "JobCompType=jobcomp/filetxt", f"JobCompLoc={folder}/jobcomp.txt",
        "ReturnToService=2", "MinJobAge=600", "SchedulerType=sched/builtin",
        f"{node_line} State=UNKNOWN",
        "PartitionName=test Nodes=ALL Default=YES MaxTime=INFINITE State=UP", ""])


def start_munge(folder: Path) -> subprocess.Popen:
    """munged as user munge, on its own socket and a fresh key of the test's."""
    munge = folder / "munge"
    munge.mkdir(mode=0o700)
    key = munge / "munge.key"
    key.write_bytes(os.urandom(128))
    key.chmod(0o600)
    user = pwd.getpwnam("munge")
    for path in (munge, key):
        os.chown(path, user.pw_uid, user.pw_gid)
    return subprocess.Popen(
        ["munged", "--foreground", "--force", f"--socket={munge}/munge.socket", f"--key-file={key}",
         f"--pid-file={munge}/munged.pid", f"--log-file={munge}/munged.log", f"--seed-file={munge}/munged.seed"],
        user=user.pw_uid, group=user.pw_gid, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)


def wait_for(condition, timeout: float, what: str, interval: float = 0.5):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def stop(process: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):
        process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@pytest.fixture(scope="module")
def local_slurm():
    """A running one-node cluster: yields the environment its clients need (SLURM_CONF) and its folder."""
    missing = [tool for tool in DAEMONS + CLIENTS if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"Slurm is not installed ({', '.join(missing)} missing): make setup-slurm installs it")
    if os.geteuid() != 0:
        pytest.skip("the Slurm daemons must run as root to start jobs; this test is not root")
    # a folder of its own under /tmp: user munge must reach its socket (pytest's tmp_path is root's only)
    folder = Path(tempfile.mkdtemp(prefix="medqa-slurm-"))
    folder.chmod(0o755)
    node_line = subprocess.run(["slurmd", "-C"], capture_output=True, text=True, check=True).stdout.splitlines()[0]
    (folder / "slurm.conf").write_text(slurm_conf(folder, node_line))
    environment = {**os.environ, "SLURM_CONF": str(folder / "slurm.conf")}
    started = []
    try:
        started.append(start_munge(folder))
        wait_for(lambda: (folder / "munge" / "munge.socket").exists(), 20, "munged's socket")
        for daemon in (["slurmctld", "-D"], ["slurmd", "-D", "-N", node_line.split()[0].split("=")[1]]):
            started.append(subprocess.Popen([*daemon, "-f", str(folder / "slurm.conf")], env=environment,
                                            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT))
        wait_for(lambda: subprocess.run(["sinfo", "-h", "-o", "%T"], env=environment, capture_output=True,
                                        text=True).stdout.strip() == "idle", 60, "the node to be idle")
        yield environment, folder
    finally:
        subprocess.run(["scancel", "--full", "--partition=test"], env=environment, capture_output=True)
        for process in reversed(started):
            stop(process)
        shutil.rmtree(folder, ignore_errors=True)


def finished_jobs(folder: Path) -> dict[str, dict]:
    """jobcomp/filetxt's record of each finished job (JobId=... JobState=... one job a line), by id."""
    path = folder / "jobcomp.txt"
    lines = path.read_text().splitlines() if path.is_file() else []
    jobs = [dict(re.findall(r"(\w+)=(\S*)", line)) for line in lines]
    return {job["JobId"]: job for job in jobs}


def job_ids(text: str) -> tuple[str, str]:
    array = re.search(r"^submit: job array (\d+):", text, re.M)
    report = re.search(r"^submit: report job (\d+)", text, re.M)
    assert array and report, text
    return array.group(1), report.group(1)


@pytest.mark.slow
def test_make_submit_runs_the_unfinished_runs_as_a_job_array_and_the_report_after_it(local_slurm, tiny_model, tmp_path):
    environment, folder = local_slurm
    settings = small_grid_overrides(tiny_model)
    variables = ["PROFILE=demo", f"DATA_DIR={tmp_path}/data", f"RESULTS_DIR={tmp_path}/results",
                 f"GENERATED_DIR={tmp_path}/generated", f"BUILD_DIR={tmp_path}/build", f"MODEL={tiny_model}",
                 "METHODS=qlora", "SIZES=32", f"SET={' '.join(settings)}"]

    def submit() -> subprocess.CompletedProcess:
        finished = subprocess.run(["make", *variables, "submit"], cwd=REPO_ROOT, env=environment,
                                  capture_output=True, text=True, timeout=300)
        assert finished.returncode == 0, finished.stdout[-2000:] + finished.stderr[-3000:]
        return finished

    first = submit()
    array, report = job_ids(first.stdout)
    again = subprocess.run(["make", *variables, "submit"], cwd=REPO_ROOT, env=environment,
                           capture_output=True, text=True)
    assert again.returncode != 0 and "still queued or running" in again.stderr  # no second task behind each run

    def report_ended() -> dict | None:
        jobs = finished_jobs(folder)
        return jobs if report in jobs else None

    jobs = wait_for(report_ended, 540, "the report job", interval=1)

    submission = next((tmp_path / "results" / "demo" / "slurm").iterdir())
    runs = (submission / "runs.txt").read_text().split()
    assert sorted(runs) == ["base", "base-nf4", "qlora-32"]  # qlora's untuned row is a run of its own
    tasks = {job["JobId"]: job for job in jobs.values() if job.get("ArrayJobId") == array}
    assert len(tasks) == len(runs)
    for job in [*tasks.values(), jobs[report]]:
        assert job["JobState"] == "COMPLETED", (job, (submission / "report.log").read_text()[-2000:])
    # each run's results were written while a task of the array was running, the summary while the report job was
    for index, run in enumerate(runs):
        log = (submission / f"task-{index}.log").read_text()
        assert f"task {index} of job array {array}: {run}" in log, log[-2000:]
    results = tmp_path / "results" / "demo"
    started = min(job_time(job["StartTime"]) for job in tasks.values())
    ended = max(job_time(job["EndTime"]) for job in tasks.values())
    for run in runs:
        assert started - 1 <= (results / "runs" / run / "eval.json").stat().st_mtime <= ended + 1, run
    summary = (results / "summary.csv").stat().st_mtime
    assert job_time(jobs[report]["StartTime"]) - 1 <= summary <= job_time(jobs[report]["EndTime"]) + 1
    assert (tmp_path / "generated" / "demo" / "report.done").is_file()

    second = submit()
    assert "nothing to submit" in second.stdout
    assert len(list(submission.parent.iterdir())) == 1
    time.sleep(1)
    assert finished_jobs(folder).keys() == jobs.keys()
    queued = subprocess.run(["squeue", "-h"], env=environment, capture_output=True, text=True).stdout
    assert queued.strip() == ""


def job_time(text: str) -> float:
    """A jobcomp time (2026-12-03T04:05:06, local time) as seconds since the epoch."""
    return time.mktime(time.strptime(text, "%Y-%m-%dT%H:%M:%S"))


def test_nothing_is_submitted_when_every_run_and_the_report_are_done(run_cli, tmp_path):
    finished = run_cli("submit", "--runs", "--report-done", "--out", tmp_path / "slurm")
    assert finished.returncode == 0 and "nothing to submit" in finished.stdout
    assert not (tmp_path / "slurm").exists()


@pytest.mark.parametrize(("arguments", "message"), [
    (["--variable", "SET"], "submit: --variable 'SET': expected NAME=value on one line"),
    ([], "submit: sbatch not found: make submit needs a Slurm cluster's client commands"),
])
def test_bad_input_is_one_line_saying_what_to_do(run_cli, tmp_path, arguments, message):
    finished = run_cli("submit", "--runs", "lora-10k", "--out", tmp_path, *arguments, env={"PATH": str(tmp_path)})
    assert finished.returncode == 2
    lines = finished.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {message}"), finished.stderr
