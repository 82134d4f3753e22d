"""Fixtures shared by the test files: running the command line, the development data folder."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


@pytest.fixture
def run_cli():
    """Run `python -m lib <args>` from the repository root; return the finished process."""
    def run(*args: str, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "lib", *map(str, args)], cwd=REPO_ROOT, capture_output=True, text=True,
            timeout=timeout, env={**os.environ, **(env or {})},
        )
    return run


@pytest.fixture
def shared_data() -> Path:
    """The real public data of ../shared/data (development only); skips where it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"{SHARED_DATA} is absent (it exists only on the development machine)")
    return SHARED_DATA


def write_jsonl(path: Path, records: list, encoding: str = "utf-8") -> Path:
    """Write records (dicts, or raw strings written as they are) one a line."""
    lines = (r if isinstance(r, str) else json.dumps(r, ensure_ascii=False) for r in records)
    path.write_text("".join(line + "\n" for line in lines), encoding=encoding)
    return path
