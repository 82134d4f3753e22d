"""`python -m lib check-variables`: the Makefile's check of the variables a user types.

    python -m lib check-variables --goals exp-lora-10k -- PORT=80800 'SET=train.epochs=1'
    -> PORT='80800': a port is a whole number from 1 to 65535

The Makefile runs it while it reads itself, with every variable given on make's command line or
in the environment and the goals, so that every target (make -n too) passes through it before
any work starts. It prints one line naming the first variable that is wrong and what it takes,
and nothing when all are right; the Makefile stops with that line ($(error)). Values reach make's
rules as file names and shell words: a path with a space or a quote cannot pass through them, so
it is refused here, by name, instead of failing later in a way that names nothing.

It runs on the interpreter that creates the venv (before `make setup` too): it imports the
standard library and the parts of lib that need nothing else.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable

from lib.config import (
    BASE_RUN,
    COLUMN_ROLES,
    EXPERIMENTS_DIR,
    GRIDS,
    MCQ_COLUMN_ROLES,
    NF4_BASE_RUN,
    parse_count,
    parse_run_name,
)
from lib.errors import UserError

LAUNCHERS = ("python", "accelerate", "torchrun")
MODEL_SOURCES = ("huggingface", "modelscope")
RUN_GOALS = ("exp-", "train-", "eval-")  # goals that name one run: make exp-lora-10k
# Characters the shell gives a meaning to: a value holding one cannot be one word of a recipe.
SHELL_SPECIAL = re.compile(r"""[\s'"`$;&|<>()\\]""")
HOST = re.compile(r"[A-Za-z0-9._:-]+|\[[0-9A-Fa-f:.]+\]")
GPU_ID = re.compile(r"\d+|(?:GPU|MIG)-[A-Za-z0-9/-]+")  # an index, or a UUID as CUDA_VISIBLE_DEVICES takes it
HUB_REPO = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")
OVERRIDE = re.compile(r"[a-z_]+\.[a-z0-9_]+=.*")


class Problem(Exception):
    """What is wrong with one variable's value."""


def known(folder: str) -> list[str]:
    """The recipe names of experiments/<folder> (the methods for folder "")."""
    names = sorted(path.stem for path in (EXPERIMENTS_DIR / folder).glob("*.yaml"))
    return [name for name in names if name not in ("base", "grid")] if not folder else names


def recipe(folder: str, what: str) -> Callable[[str], None]:
    """A check that a value names a file experiments/<folder>/<value>.yaml."""
    def check(value: str) -> None:
        names = known(folder)
        if value not in names:
            raise Problem(f"no {what} {value!r} (experiments/{folder + '/' if folder else ''}: {', '.join(names)})")
    return check


def one_of(choices: tuple[str, ...]) -> Callable[[str], None]:
    def check(value: str) -> None:
        if value not in choices:
            raise Problem(f"expected {' or '.join(choices)}")
    return check


def whole_number(least: int, most: int | None = None, what: str = "a whole number") -> Callable[[str], None]:
    def check(value: str) -> None:
        if not re.fullmatch(r"\d+", value) or int(value) < least or (most is not None and int(value) > most):
            raise Problem(f"{what} is a whole number from {least}" + (f" to {most}" if most is not None else " up"))
    return check


def count(value: str) -> None:
    try:
        parse_count(value)
    except UserError as err:
        raise Problem(str(err)) from None


def one_word(value: str, advice: str = "") -> None:
    """A value that reaches a recipe as one shell word and make file names: no spaces, no quotes."""
    special = SHELL_SPECIAL.search(value)
    if special:
        what = "a space" if special.group(0).isspace() else f"the character {special.group(0)}"
        raise Problem(f"{what} cannot pass through make's file names and commands{advice}")


def a_path(value: str) -> None:
    one_word(value, "; use a path without it (a link, ln -s, gives a file or folder a second name)")


def a_file(value: str) -> None:
    """A local file or the words hub and synthetic (data.source, eval.mcq_source, eval.general_source)."""
    a_path(value)
    from pathlib import Path

    if value not in ("hub", "synthetic") and not Path(value).is_file():
        raise Problem("no such file (or hub, synthetic)")


def run_name(value: str) -> None:
    """base, base-nf4 or <method>-<size>[-s<seed>] of a known method."""
    if value in (BASE_RUN, NF4_BASE_RUN):
        return
    try:
        method, size, _ = parse_run_name(value, default_seed=0)
        parse_count(size)
    except UserError:
        raise Problem("expected a run: <method>-<size>[-s<seed>] such as lora-10k or qlora-60k-s7, or base, "
                      "base-nf4") from None
    recipe("", "method")(method)


def each(check: Callable[[str], None], what: str = "") -> Callable[[str], None]:
    """A check of every word of a list (METHODS="lora qlora"); the word at fault is named."""
    def check_words(value: str) -> None:
        words = value.split()
        if not words:
            raise Problem(f"empty; give at least one{what}")
        for word in words:
            try:
                check(word)
            except Problem as err:
                raise Problem(f"{word!r}: {err}") from None
        repeated = sorted({word for word in words if words.count(word) > 1})
        if repeated:
            raise Problem(f"{repeated[0]!r} is listed twice")
    return check_words


def host(value: str) -> None:
    if not HOST.fullmatch(value):
        raise Problem("expected a host name or address, e.g. 127.0.0.1 (this machine) or 0.0.0.0 (every interface)")


def gpu_id(value: str) -> None:
    if not GPU_ID.fullmatch(value):
        raise Problem('expected GPU ids separated by spaces, e.g. GPUS="0 1" (or GPU-<uuid>)')


def printable(value: str) -> None:
    if not value.strip() or not value.isprintable():
        raise Problem("expected a name of printable characters on one line")


def hub_repo(value: str) -> None:
    if not HUB_REPO.fullmatch(value):
        raise Problem("expected a Hugging Face repository, <user or organisation>/<name>")


def override(value: str) -> None:
    one_word(value)
    if not OVERRIDE.fullmatch(value):
        raise Problem("expected section.key=value, e.g. SET=\"train.epochs=1 lora.r=8\"")


def column(roles: tuple[str, ...]) -> Callable[[str], None]:
    """A check of one role=key of a column mapping (COLUMNS, MCQ_COLUMNS)."""
    def check(value: str) -> None:
        role, sep, key = value.partition("=")
        if not sep or not key:
            raise Problem(f"expected role=key, e.g. {roles[0]}=<the file's key>")
        if role not in roles:
            raise Problem(f"{role!r} is not a role: {', '.join(roles)}")
        one_word(key)
    return check


def quotable(value: str) -> None:
    """A value a recipe passes in single quotes (make submit's sbatch options)."""
    if "'" in value:
        raise Problem("the character ' cannot pass through make's commands")


def flag(value: str) -> None:
    if value != "1":
        raise Problem("expected 1 (or leave it out)")


CHECKS: dict[str, Callable[[str], None]] = {
    "PROFILE": recipe("profiles", "profile"),
    "GRID": one_of(GRIDS),
    "METHODS": each(recipe("", "method"), " method"),
    "SIZES": each(count, " size"),
    "SEEDS": each(whole_number(0, what="a seed"), " seed"),
    "SEED": whole_number(0, what="a seed"),
    "TEST_SIZE": count,
    "DEV_SIZE": count,
    "VARIANT": each(recipe("variants", "variant"), " variant"),
    "SET": each(override, " section.key=value"),
    "COLUMNS": each(column(COLUMN_ROLES), " role=key"),
    "MCQ_COLUMNS": each(column(MCQ_COLUMN_ROLES), " role=key"),
    "MODEL": a_path,
    "SOURCE": a_file,
    "MCQ_SOURCE": a_file,
    "GENERAL_SOURCE": a_file,
    "MODEL_SOURCE": one_of(MODEL_SOURCES),
    "EXP": run_name,
    "LAUNCH": one_of(LAUNCHERS),
    "ACCELERATE_CONFIG": recipe("accelerate", "accelerate configuration"),
    "NPROC": whole_number(1, what="a process count"),
    "GPUS": each(gpu_id, " GPU id"),
    "HOST": host,
    "PORT": whole_number(1, 65535, what="a port"),
    "NAME": printable,
    "REPO": hub_repo,
    "MERGED": flag,
    "REDO": flag,
    **dict.fromkeys(("DATA_DIR", "RESULTS_DIR", "GENERATED_DIR", "BUILD_DIR", "GPU_LOCKS", "VENV", "PYTHON"), a_path),
    "TORCH_INDEX": one_word,
    **dict.fromkeys(("PARTITION", "GRES", "TIME"), quotable),
}


def problems_of_goals(goals: list[str], variables: dict[str, str]) -> str | None:
    """A goal that names a run (exp-<run>, train-<run>, eval-<run>) must name one; REDO needs such a goal."""
    for goal in goals:
        prefix = next((prefix for prefix in RUN_GOALS if goal.startswith(prefix)), None)
        if prefix:
            try:
                run_name(goal.removeprefix(prefix))
            except Problem as err:
                return f"make {goal}: {err}"
    runs_named = any(goal.startswith(RUN_GOALS) or goal == "all-experiments" for goal in goals)
    if variables.get("REDO") and not runs_named:
        return ("REDO=1 redoes what is out of date in the runs the goals name: make exp-<run> REDO=1 (or train-<run>, "
                "eval-<run>, all-experiments)")
    return None


def first_problem(goals: list[str], variables: dict[str, str]) -> str | None:
    """The line that names the first wrong variable (in the order of CHECKS) or goal, or None."""
    for name, check in CHECKS.items():
        value = variables.get(name)
        if value is None or (not value.strip() and name not in ("PROFILE", "METHODS", "SIZES", "SEEDS")):
            continue  # not given, or given empty: the default (SET=, SEED=), except for the grid's lists
        try:
            check(value)
        except Problem as err:
            return f"{name}={value!r}: {err}"
    return problems_of_goals(goals, variables)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--goals", nargs="*", default=[], help="make's goals ($(MAKECMDGOALS))")
    parser.add_argument("variables", nargs="*", metavar="NAME=VALUE", help="the variables a user gave make")


def run(args: argparse.Namespace) -> None:
    variables = dict(item.partition("=")[::2] for item in args.variables)
    problem = first_problem(args.goals, variables)
    if problem:
        print(problem)
