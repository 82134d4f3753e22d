"""Raw data -> processed splits: read or download or generate, clean, split.

    python -m lib data --profile demo --raw-dir data/raw --out data/processed/demo --sizes 250 500 1k 2k

    sources     local files in the common shapes of the field -> canonical examples
    hub         the seed study's file from the Hugging Face hub, sampled into data/raw once
    synthetic   the project's own generated medical QA and multiple-choice items (demo, tests)
    clean       the cleaning rules and their report
    splits      fixed test/dev sets, nested train subsets, chat JSON Lines
    prepare     the `data` command that runs them in that order
    mcq         the `mcq-data` command: the knowledge track's multiple-choice items, read with
                sources.read_records
"""

from __future__ import annotations

import re
from pathlib import Path

from lib.io import atomic_write


def write_if_changed(path: str | Path, content: bytes) -> bool:
    """Write `content` atomically unless the file already holds exactly it; True if written.

    An unchanged file keeps its mtime, so make rebuilds nothing that depends on it.
    """
    path = Path(path)
    if path.is_file() and path.stat().st_size == len(content) and path.read_bytes() == content:
        return False
    with atomic_write(path, "wb") as handle:
        handle.write(content)
    return True


def id_prefix(name: str) -> str:
    """The prefix of record ids made from a source's name: "CMB-train" -> "cmb-train"."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "data"
