"""Fixtures shared by the test files: running the command line, the development data folder, the
tiny models (kept in .cache/tests/ across sessions) and demo data built once per session. What tests
build by hand is in builders.py."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from builders import REPO_ROOT, build_untrained_tiny, cached_model, demo_config

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


# --- the tiny models, built once and kept in .cache/tests/ across sessions --------------------------

def pytest_collection_modifyitems(items):
    """`make test-fast` (-m "not slow") pretrains nothing: a test that needs the pretrained tiny model,
    itself or through another fixture, is marked slow, or it stops the session here."""
    unmarked = [item.nodeid for item in items
                if "tiny_model" in getattr(item, "fixturenames", ()) and item.get_closest_marker("slow") is None]
    if unmarked:
        raise pytest.UsageError(f"{', '.join(unmarked)}: uses the pretrained tiny_model but is not marked slow "
                                "(mark it, or use untrained_tiny_model where the weights do not matter)")


@pytest.fixture(scope="session")
def tiny_model() -> Path:
    """The demo's tiny Qwen2 exactly as `make tiny-model` builds it, pretraining included (~2 min
    when the cache has none for these sources). Only slow tests use it: `make test-fast` never pretrains.
    Both tiny models are shared by every test and kept for later sessions: a test never writes into them."""
    from lib.tiny_model import build

    return cached_model("tiny-qwen2", build)


@pytest.fixture(scope="session")
def untrained_tiny_model() -> Path:
    """The tiny model's tokenizer, architecture and generation config with random weights (~5 s): for
    tests of what the weights do not decide (templates, tokens, padding, files, commands)."""
    return cached_model("tiny-qwen2-untrained", build_untrained_tiny)


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
def standin_data(demo_data, tmp_path_factory) -> Path:
    """demo_data's train-64 with 8 dev examples, for training the stand-in: each dev loss computes
    logits over its 151,936-token vocabulary, so dev examples, more than steps, are what its runs cost."""
    from lib.io import read_jsonl, write_jsonl

    data = tmp_path_factory.mktemp("standin-data")
    shutil.copyfile(demo_data / "train-64.jsonl", data / "train-64.jsonl")
    write_jsonl(data / "dev.jsonl", list(read_jsonl(demo_data / "dev.jsonl"))[:8])
    return data


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
