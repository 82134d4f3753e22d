"""Fixtures shared by the test files: running the command line, the development data folder, a
tiny model and demo data built once per session. What tests build by hand is in builders.py."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from builders import REPO_ROOT, demo_config

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


# --- a tiny model and demo data, built once per test session -------------------------------------

@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """The demo's tiny Qwen2 exactly as `make tiny-model` builds it, pretraining included (~2 min)."""
    from lib.tiny_model import build

    return build(tmp_path_factory.mktemp("models") / "tiny-qwen2")


@pytest.fixture(scope="session")
def demo_data(tmp_path_factory) -> Path:
    """Processed demo splits, small: test 32, dev 32, train 64 and 128 (nested), 40 medical and 40
    general multiple-choice items."""
    from lib.config import load_config
    from lib.data import mcq
    from lib.data.prepare import prepare

    root = tmp_path_factory.mktemp("data")
    config = load_config("demo", overrides=["data.synthetic_size=1500", "data.test_size=32", "data.dev_size=32",
                                            "eval.mcq_size=40", "eval.general_size=40"])
    prepare(config, root / "raw", root / "processed", ["64", "128"])
    mcq.prepare(config, root / "processed" / "mcq.jsonl")
    mcq.prepare(config, root / "processed" / "general.jsonl", "general")
    return root / "processed"


@pytest.fixture(scope="session")
def qwen_standin(tmp_path_factory) -> Path:
    """A tiny random Qwen2 with every property of Qwen2.5-3B-Instruct but its size (lib/standin.py)."""
    from lib.standin import build_standin

    return build_standin(tmp_path_factory.mktemp("models") / "qwen2.5-standin")


# --- a trained run and its merged export, for export, push and serve ------------------------------


@pytest.fixture(scope="session")
def lora_run(tiny_model, demo_data, tmp_path_factory) -> Path:
    """A LoRA run on 64 examples (8 optimizer steps), in a runs/ folder as the study lays it out."""
    from lib.train import RunSpec, train

    out = tmp_path_factory.mktemp("results") / "runs" / "lora-64"
    train(demo_config(tiny_model), RunSpec("lora-64", "demo", "lora", "64", 64, 42), demo_data, out)
    return out


@pytest.fixture(scope="session")
def lora_export(lora_run, tiny_model, demo_data) -> Path:
    """The run's merged export (lib.export), in export/ beside runs/."""
    from lib.export import export

    out = lora_run.parent.parent / "export" / lora_run.name
    export(demo_config(tiny_model), lora_run, demo_data, out)
    return out
