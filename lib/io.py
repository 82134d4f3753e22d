"""Files: atomic writes, JSON Lines, checksums, and the provenance every result carries.

Every stage writes through `atomic_write` (a temporary file in the same folder, then a rename),
so an interrupted run never leaves a half-written file that make could take for a finished one.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import shutil
import subprocess
import tempfile
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

from lib.errors import UserError
from lib.hardware import machine

REPO_ROOT = Path(__file__).resolve().parent.parent


def shown(path: str | Path) -> str:
    """A path as the user should read it: relative to the repository when it lies inside it."""
    path = Path(path).resolve()
    return str(path.relative_to(REPO_ROOT)) if path.is_relative_to(REPO_ROOT) else str(path)

# The libraries whose versions decide the numbers of a run.
TRACKED_PACKAGES = (
    "torch", "transformers", "trl", "peft", "accelerate", "bitsandbytes",
    "datasets", "tokenizers", "numpy", "jieba", "rouge-chinese", "sacrebleu",
)


_UMASK = os.umask(0)
os.umask(_UMASK)


@contextlib.contextmanager
def atomic_write(path: str | Path, mode: str = "w"):
    """Open a temporary file beside `path`; on success rename it over `path`, else delete it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as err:  # named by the file it is for, not by a random temporary name
        raise type(err)(err.errno, err.strerror, str(path)) from None
    try:
        encoding = None if "b" in mode else "utf-8"
        with os.fdopen(fd, mode, encoding=encoding) as handle:
            yield handle
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes owner-only files; give the usual mode
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_folder(path: str | Path):
    """Yield a temporary folder beside `path` to fill; on success it takes the place of `path`
    (a previous folder there is deleted), else it is deleted. Readers see the old folder or the
    new one, never a half-written one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        work = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
    except OSError as err:  # named by the folder it is for, not by a random temporary name
        raise type(err)(err.errno, err.strerror, str(path)) from None
    try:
        yield work
        os.chmod(work, 0o777 & ~_UMASK)  # mkdtemp makes an owner-only folder; give the usual mode
        if path.exists():
            old = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".old"))
            os.replace(path, old / path.name)
            os.replace(work, path)
            shutil.rmtree(old)
        else:
            os.replace(work, path)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise


@contextlib.contextmanager
def lock_if_free(lock_file: str | Path):
    """Hold `lock_file` while the block runs, if no other process holds it: yields the open file
    (its holder line rewritten to name this process), or None when another process holds it. The
    kernel releases the lock when the last process with the file open ends, however it ends
    (kill -9 too), so a lock is never left behind; the file itself stays, naming the last holder."""
    import fcntl

    lock_file = Path(lock_file)
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    with lock_file.open("a+", encoding="utf-8") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield None
            return
        handle.truncate(0)
        handle.write(f"pid {os.getpid()} on {platform.node()} since "
                     f"{datetime.now(UTC).isoformat(timespec='seconds')}\n")
        handle.flush()
        yield handle


def lock_holder(lock_file: str | Path) -> str:
    """Who holds a lock, as its file names them ("pid 12 on node3 since ...")."""
    with contextlib.suppress(FileNotFoundError):
        return Path(lock_file).read_text(encoding="utf-8").strip() or "another process"
    return "another process"


@contextlib.contextmanager
def exclusive(lock_file: str | Path, what: str):
    """Hold `lock_file` while this process works: a second process that wants the same lock (the
    same make target started twice) stops at once with one line, instead of both writing the same
    outputs (see lock_if_free)."""
    with lock_if_free(lock_file) as handle:
        if handle is None:
            raise UserError(f"{shown(Path(lock_file).parent)}: {what} is already in progress "
                            f"({lock_holder(lock_file)}); wait for it to finish, or stop it and run the command again")
        yield


def json_bytes(obj) -> bytes:
    """The project's JSON file format: UTF-8, Chinese unescaped, indented, a final newline."""
    return (json.dumps(obj, ensure_ascii=False, indent=2) + "\n").encode("utf-8")


def jsonl_bytes(records: Iterable[dict]) -> bytes:
    """The project's JSON Lines format: one unescaped UTF-8 object a line."""
    return "".join(json.dumps(record, ensure_ascii=False) + "\n" for record in records).encode("utf-8")


def write_json(path: str | Path, obj) -> None:
    with atomic_write(path, "wb") as handle:
        handle.write(json_bytes(obj))


def read_json(path: str | Path):
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{shown(path)}: no such file") from None
    except json.JSONDecodeError as err:
        raise UserError(f"{shown(path)}:{err.lineno}: not valid JSON ({err.msg})") from None
    except RecursionError:
        raise UserError(f"{shown(path)}: not readable JSON (nested too deeply)") from None


def write_jsonl(path: str | Path, records: Iterable[dict]) -> int:
    """Write records one JSON object a line (UTF-8, unescaped Chinese); return the count."""
    records = list(records)
    with atomic_write(path, "wb") as handle:
        handle.write(jsonl_bytes(records))
    return len(records)


def numbered_jsonl(path: str | Path) -> Iterator[tuple[int, dict]]:
    """(line number, object) of a JSON Lines file this project wrote; blank lines are skipped,
    and a line that is not a JSON object is an error naming it."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{shown(path)}: no such file")
    with path.open(encoding="utf-8") as handle:
        for line_number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise UserError(f"{shown(path)}:{line_number}: not valid JSON ({err.msg})") from None
            except RecursionError:
                raise UserError(f"{shown(path)}:{line_number}: not readable JSON (nested too deeply)") from None
            if not isinstance(record, dict):
                raise UserError(f"{shown(path)}:{line_number}: expected a JSON object, got {type(record).__name__}")
            yield line_number, record


def read_jsonl(path: str | Path) -> Iterator[dict]:
    """The objects of a JSON Lines file this project wrote (see numbered_jsonl)."""
    return (record for _, record in numbered_jsonl(path))


def read_log(path: str | Path) -> list[dict]:
    """The entries of an append-only JSON Lines log (a cache, finished batches): a last line cut
    short by an interruption is what such a log may end with, so it is left out, not an error."""
    path = Path(path)
    if not path.is_file():
        return []
    entries = []
    # errors="replace": a cut may fall inside a multi-byte character; that line then fails to parse
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            entries.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return entries


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def git_commit() -> dict:
    """The commit of the working tree and whether it had uncommitted changes."""
    def git(*args: str) -> str:
        try:
            result = subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True)
        except OSError:  # no git on this machine: the results just carry no commit
            return ""
        return result.stdout.strip() if result.returncode == 0 else ""

    commit = git("rev-parse", "HEAD")
    return {"commit": commit or None, "dirty": bool(git("status", "--porcelain", "--untracked-files=no"))}


def installed_version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def library_versions() -> dict:
    return {"python": platform.python_version(),
            **{package: installed_version(package) for package in TRACKED_PACKAGES}}


def provenance(config: dict | None = None, seed: int | None = None) -> dict:
    """What a result needs to be reproduced: resolved config, commit, versions, seed, machine."""
    return {
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "git": git_commit(),
        "versions": library_versions(),
        "hardware": machine(),
        "seed": seed,
        "config": config,
    }


def nested_value(mapping: dict | None, dotted: str):
    """mapping['a']['b'] for 'a.b', or None where any step is absent."""
    for key in dotted.split("."):
        if not isinstance(mapping, dict):
            return None
        mapping = mapping.get(key)
    return mapping
