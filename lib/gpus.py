"""`python -m lib on-free-gpu`: run a command on GPUs that no other job of this machine holds.

    python -m lib on-free-gpu --gpus 0 1 2 3 -- .venv/bin/python -m lib train ...
    (what the Makefile's train and evaluate recipes become with GPUS set: make -j4 all-experiments GPUS="0 1 2 3")

`make -jN` starts N jobs at once, and each would see every GPU. Here each job takes its own ids
from a pool: one lock file per id (<locks>/gpu-<id>.lock, held with flock), the first free ones
in the order given. The job then sets CUDA_VISIBLE_DEVICES to them and becomes the command
(exec), which inherits the locks: they are held until the command and every process it started
have ended, however they end, and then the kernel releases them. Where too few ids are free, the
job waits for them. A launcher of several processes (accelerate, torchrun) takes a group of ids
(--count), so that one run still spans several GPUs.

The CPU cores are shared out too: each process gets OMP_NUM_THREADS = cores / ids in the pool
(unless the user set it), as torchrun does for its own processes. Without it every job's torch
starts a thread per core, and N jobs whose threads spin-wait on each other's cores run many
times slower than one (measured on a 2-core machine, make -j2: 40x slower steps).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shlex
import sys
import time
from pathlib import Path

from lib.errors import UserError
from lib.io import lock_holder, lock_if_free, shown

DEFAULT_LOCKS = Path("/tmp/medqa-scaling-gpus")  # one pool per machine, whatever the results folder
WAIT_S = 1.0  # how often a waiting job tries again: a few flock calls a second cost nothing


def check_pool(gpus: list[str], count: int) -> None:
    if not gpus:
        raise UserError('on-free-gpu: no GPU ids given: list them, e.g. --gpus 0 1 (make: GPUS="0 1")')
    for gpu in gpus:
        if not gpu.replace("-", "").isalnum():  # an index, or a UUID such as GPU-5c6b...
            raise UserError(f'on-free-gpu: {gpu!r} is not one GPU id: separate ids by spaces, e.g. GPUS="0 1"')
    if len(set(gpus)) != len(gpus):
        raise UserError(f"on-free-gpu: a GPU id is listed twice in {' '.join(gpus)}")
    if not 1 <= count <= len(gpus):
        raise UserError(f"on-free-gpu: a job asks for {count} GPUs but the pool has {len(gpus)} ({' '.join(gpus)}); "
                        "list more ids or give each job fewer (NPROC)")


def thread_share(gpus: list[str]) -> str:
    """OMP_NUM_THREADS of one process: the cores this job may use, shared by the ids of the pool."""
    return os.environ.get("OMP_NUM_THREADS") or str(max(1, len(os.sched_getaffinity(0)) // len(gpus)))


def lock_file(locks: Path, gpu: str) -> Path:
    return locks / f"gpu-{gpu}.lock"


def try_to_take(locks: Path, gpus: list[str], count: int, held: contextlib.ExitStack) -> list[str] | None:
    """Lock the first `count` free ids of the pool into `held`; None (and nothing held) when fewer are free."""
    taken = []
    for gpu in gpus:
        handle = held.enter_context(lock_if_free(lock_file(locks, gpu)))
        if handle is not None:
            os.set_inheritable(handle.fileno(), True)  # the command, exec'd, keeps holding the lock
            taken.append(gpu)
            if len(taken) == count:
                return taken
    held.close()
    return None


def take(locks: Path, gpus: list[str], count: int, held: contextlib.ExitStack) -> list[str]:
    """Wait until `count` ids of the pool are free and lock them into `held`."""
    try:
        locks.mkdir(parents=True, exist_ok=True)
        taken = try_to_take(locks, gpus, count, held)
    except PermissionError as err:
        raise UserError(f"on-free-gpu: cannot lock {err.filename}: set GPU_LOCKS to a folder you may write") from None
    if taken is None:
        holders = "; ".join(f"{gpu}: {lock_holder(lock_file(locks, gpu))}" for gpu in gpus)
        print(f"on-free-gpu: waiting for {count} free GPU(s) of {' '.join(gpus)} ({holders})", file=sys.stderr)
    while taken is None:
        time.sleep(WAIT_S)
        taken = try_to_take(locks, gpus, count, held)
    return taken


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--gpus", nargs="+", default=[], help="the pool: GPU ids (indices or UUIDs) jobs may take")
    parser.add_argument("--count", type=int, default=1, help="ids per job: 1, or the process count of a launcher")
    parser.add_argument("--locks", type=Path, default=DEFAULT_LOCKS,
                        help=f"folder of the lock files, one per id (default: {DEFAULT_LOCKS}, shared by the machine)")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- then the command to run")


def run(args: argparse.Namespace) -> None:
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        raise UserError("on-free-gpu: no command given: python -m lib on-free-gpu --gpus 0 1 -- <command ...>")
    check_pool(args.gpus, args.count)
    held = contextlib.ExitStack()  # never closed here: exec hands the locks to the command
    taken = take(args.locks, args.gpus, args.count, held)
    environment = {**os.environ, "CUDA_VISIBLE_DEVICES": ",".join(taken), "OMP_NUM_THREADS": thread_share(args.gpus)}
    print(f"on-free-gpu: CUDA_VISIBLE_DEVICES={environment['CUDA_VISIBLE_DEVICES']} "
          f"OMP_NUM_THREADS={environment['OMP_NUM_THREADS']} ({shown(args.locks)}): {shlex.join(command)[:120]}",
          file=sys.stderr, flush=True)
    try:
        os.execvpe(command[0], command, environment)
    except OSError as err:
        raise UserError(f"on-free-gpu: cannot run {command[0]}: {err.strerror}") from None
