"""The set-up: one list of dependencies, mirrored for conda users."""

from __future__ import annotations

import tomllib
import yaml

from builders import REPO_ROOT


def test_environment_yml_mirrors_pyproject():
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    pinned = set(project["dependencies"]) | set(project["optional-dependencies"]["test"])
    environment = yaml.safe_load((REPO_ROOT / "environment.yml").read_text())
    pip = next(entry["pip"] for entry in environment["dependencies"] if isinstance(entry, dict))
    assert set(pip) - {"-e ."} == pinned
    python = next(e for e in environment["dependencies"] if isinstance(e, str) and e.startswith("python="))
    assert project["requires-python"] == ">=3.10" and python == "python=3.11"


def test_every_pin_is_exact():
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    assert all("==" in requirement for requirement in project["dependencies"])
