"""The set-up: one list of dependencies, mirrored for conda users."""

from __future__ import annotations

import contextlib
import tomllib
from importlib import metadata

import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.version import Version

from builders import REPO_ROOT


def test_environment_yml_mirrors_pyproject():
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    pinned = set(project["dependencies"]) | set(project["optional-dependencies"]["test"])
    environment = yaml.safe_load((REPO_ROOT / "environment.yml").read_text())
    pip = next(entry["pip"] for entry in environment["dependencies"] if isinstance(entry, dict))
    assert set(pip) - {"-e ."} == pinned
    python = next(e for e in environment["dependencies"] if isinstance(e, str) and e.startswith("python="))
    assert python == f"python={project['requires-python'].removeprefix('>=')}"  # conda's is the floor


def test_every_pin_is_exact():
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    assert all("==" in requirement for requirement in project["dependencies"])


def test_the_python_floor_is_the_highest_any_installed_pin_requires():
    """pyproject's requires-python is the oldest Python every pinned package installs on: each
    installed distribution's own Requires-Python (its metadata here, no index asked) admits it, and
    the minor version below it is refused by at least one of them."""
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    floor = Version(project["requires-python"].removeprefix(">="))
    assert project["requires-python"] == f">={floor}" and len(floor.release) == 2
    pins = [Requirement(pin) for pin in project["dependencies"] + project["optional-dependencies"]["test"]]
    required = {}
    for pin in pins:
        with contextlib.suppress(metadata.PackageNotFoundError):  # an extra not installed here
            required[pin.name] = SpecifierSet(metadata.metadata(pin.name).get("Requires-Python") or "")
    assert len(required) >= len(project["dependencies"])  # every dependency is installed and read
    refused = {name: str(spec) for name, spec in required.items() if not spec.contains(str(floor))}
    assert refused == {}, f"pins that refuse Python {floor}"
    below = f"{floor.major}.{floor.minor - 1}"
    assert any(not spec.contains(below) for spec in required.values()), f"every pin installs on Python {below}"
