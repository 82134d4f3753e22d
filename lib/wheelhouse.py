"""`python -m lib wheelhouse`: every pinned package as wheels for another machine, in one folder.

    make wheelhouse                        for a GPU image (Python 3.12, manylinux_2_28_x86_64) -> wheelhouse/
    make wheelhouse SLIM=1                 the same without torch, triton and the nvidia-*/cuda-* libraries
    make setup WHEELHOUSE=wheelhouse       on the machine without internet: the venv from it, no index

A cluster's GPU nodes often cannot reach the internet; a machine that can builds this folder, and
the folder and the repository are copied over. What it does, in order:

  1. a package that publishes no wheel (SOURCE_ONLY: jieba) is built into one here (`pip wheel`);
     it is pure Python, so any machine installs it;
  2. pip resolves the pinned dependencies of pyproject.toml (with --oldest: OLDEST_SUPPORTED's
     versions instead), the build backend of the editable install and the installer `make setup`
     uses, for the target's Python and platform, wheels only, without installing anything;
  3. SLIM leaves out what a GPU image already has: torch and the packages that only carry its GPU
     code (GPU_IMAGE_PACKAGES); `make setup` then makes a venv that sees the machine's own torch;
  4. pip downloads each chosen wheel, checked against the sha256 the index publishes;
  5. requirements.txt (name==version --hash=sha256:..., what `make setup` installs, hashes
     checked) and manifest.json (the target, and each wheel's name, version, file, sha256, size)
     are written last, so a folder without them is an unfinished one.

Other files in the folder are left alone and not installed; a wheel there whose hash does not
match is downloaded again (pip checks it); a second `make wheelhouse` into the same folder stops
in one line while the first runs. `--check DIR` is the installing side's first step:
the folder is complete, made for this Python, and (SLIM) this Python has a torch to reuse; it
prints the venv options that `make setup` passes on.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from urllib.parse import unquote, urlparse

from lib.errors import UserError
from lib.io import atomic_write, exclusive, read_json, sha256_file, shown, write_json
from lib.versions import OLDEST_SUPPORTED, normalized, pinned_versions

# Packages that publish only a source archive on PyPI (jieba 0.42.1), built into a wheel here.
SOURCE_ONLY = ("jieba",)
# The build backend of `pip install -e .` (pyproject.toml's [build-system] requires): the editable
# install of the project itself builds with it, offline too.
BUILD_REQUIREMENT = "setuptools>=69"
# What a GPU image with CUDA torch installed already has: SLIM leaves these out (fnmatch patterns
# on normalised names). torch's other dependencies (sympy, networkx, jinja2, ...) are small and
# stay, since a venv of their pinned versions works with the image's torch as well.
GPU_IMAGE_PACKAGES = ("torch", "triton", "nvidia-*", "cuda-*")


# --- the target machine -----------------------------------------------------------------------------


def platform_tags(platform: str) -> list[str]:
    """pip's --platform values for `platform`: pip takes a wheel only for a tag it is given, so a
    manylinux_2_28 machine also lists the older glibc tags it runs (bitsandbytes' wheel is
    manylinux_2_24, psutil's manylinux2010, ...) and their legacy aliases."""
    match = re.fullmatch(r"manylinux_2_(\d+)_(\w+)", platform)
    if not match:
        return [platform]
    newest, arch = int(match.group(1)), match.group(2)
    legacy = {17: "manylinux2014", 12: "manylinux2010", 5: "manylinux1"}
    tags = []
    for glibc in range(newest, 4, -1):
        tags.append(f"manylinux_2_{glibc}_{arch}")
        if glibc in legacy:
            tags.append(f"{legacy[glibc]}_{arch}")
    return tags


def this_machine() -> tuple[str, str]:
    """(Python version, platform tag) of the running interpreter: its newest manylinux tag on Linux
    (what wheels on an index carry), else its own."""
    from packaging.tags import sys_tags

    platforms = [tag.platform for tag in sys_tags()]
    platform = next((p for p in platforms if p.startswith("manylinux_")), platforms[0])
    return f"{sys.version_info.major}.{sys.version_info.minor}", platform


def target_options(python_version: str, platform: str) -> list[str]:
    options = ["--only-binary=:all:", "--python-version", python_version]
    for tag in platform_tags(platform):
        options += ["--platform", tag]
    return options


# --- building the folder ----------------------------------------------------------------------------


def pip(*args: str) -> None:
    """Run pip of this interpreter; its error is the command's."""
    done = subprocess.run([sys.executable, "-m", "pip", *args], capture_output=True, text=True)
    if done.returncode:
        lines = [line for line in done.stderr.splitlines() if line.startswith("ERROR")] or done.stderr.splitlines()
        raise UserError(f"pip {args[0]} failed: {' '.join(lines[-2:]) or 'no message'}")


def root_requirements(oldest: bool, extra: list[str]) -> list[str]:
    """pyproject.toml's pins (OLDEST_SUPPORTED's versions with --oldest), then `extra`, which
    replaces a pin of the same name."""
    pins = pinned_versions()
    if oldest:
        pins |= {normalized(name): version for name, version in OLDEST_SUPPORTED.items()}
    for requirement in extra:
        name, _, version = requirement.partition("==")
        pins[normalized(name)] = version
    return [f"{name}=={version}" for name, version in pins.items()] + [BUILD_REQUIREMENT]


def build_source_only(requirements: list[str], folder: Path) -> None:
    """Wheels of the SOURCE_ONLY packages into `folder`; each must be pure Python (py3-none-any)."""
    for requirement in requirements:
        if normalized(requirement.partition("==")[0]) in SOURCE_ONLY:
            pip("wheel", "--quiet", "--no-deps", "--wheel-dir", str(folder), requirement)
    for wheel in folder.glob("*.whl"):
        if not wheel.name.endswith("-none-any.whl"):
            raise UserError(f"{wheel.name}: built for this machine only; a bundle for another one cannot carry it")


def resolve(requirements: list[str], target: list[str], built: Path) -> list[dict]:
    """pip's resolution of `requirements` for the target: [{name, version, file, sha256}]."""
    with tempfile.TemporaryDirectory(prefix="wheelhouse-") as scratch:
        listed = Path(scratch) / "requirements.txt"
        listed.write_text("\n".join(requirements) + "\n")
        report = Path(scratch) / "report.json"
        # --target: pip resolves for another machine only into a folder; --dry-run installs nothing there
        pip("install", "--quiet", "--dry-run", "--ignore-installed", "--target", str(Path(scratch) / "target"),
            "--report", str(report), "--find-links", str(built), *target, "-r", str(listed))
        chosen = json.loads(report.read_text())["install"]
    return [{"name": normalized(item["metadata"]["name"]), "version": item["metadata"]["version"],
             "file": unquote(Path(urlparse(item["download_info"]["url"]).path).name),
             "sha256": item["download_info"]["archive_info"]["hashes"]["sha256"]} for item in chosen]


def left_to_the_machine(name: str) -> bool:
    return any(fnmatch.fnmatch(name, pattern) for pattern in GPU_IMAGE_PACKAGES)


def requirement_lines(wheels: list[dict]) -> str:
    return "".join(f"{w['name']}=={w['version']} --hash=sha256:{w['sha256']}\n" for w in wheels)


def build(out: Path, python_version: str, platform: str, slim: bool, oldest: bool, extra: list[str]) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    target = target_options(python_version, platform)
    requirements = root_requirements(oldest, extra)
    with tempfile.TemporaryDirectory(prefix="wheelhouse-built-") as built:
        build_source_only(requirements, Path(built))
        resolved = resolve(requirements, target, Path(built))
        wheels = [w for w in resolved if not (slim and left_to_the_machine(w["name"]))]
        with tempfile.TemporaryDirectory(prefix="wheelhouse-") as scratch:
            locked = Path(scratch) / "requirements.txt"
            locked.write_text(requirement_lines(wheels))
            print(f"wheelhouse: downloading {len(wheels)} wheels for Python {python_version}, {platform} "
                  f"into {shown(out)}", flush=True)
            pip("download", "--quiet", "--no-deps", "--require-hashes", "--find-links", built, "--dest", str(out),
                *target, "-r", str(locked))
    for wheel in wheels:
        wheel["bytes"] = (out / wheel["file"]).stat().st_size
        if sha256_file(out / wheel["file"]) != wheel["sha256"]:  # pip checked it; a check of what lies here now
            raise UserError(f"{shown(out / wheel['file'])}: its sha256 is not the index's")
    manifest = {
        "python": python_version, "platform": platform, "slim": slim, "oldest": oldest,
        "left_to_the_machine": sorted(w["name"] for w in resolved if w not in wheels),
        "bytes": sum(w["bytes"] for w in wheels), "wheels": wheels,
    }
    with atomic_write(out / "requirements.txt") as handle:
        handle.write(requirement_lines(wheels))
    write_json(out / "manifest.json", manifest)
    return manifest


# --- the installing side ----------------------------------------------------------------------------


def check(folder: Path) -> str:
    """The venv options for this folder (SLIM: --system-site-packages), after checking that it is
    a finished bundle whose wheels are intact and made for this Python."""
    manifest_file = folder / "manifest.json"
    if not manifest_file.is_file() or not (folder / "requirements.txt").is_file():
        raise UserError(f"{shown(folder)}: not a finished bundle (no manifest.json or requirements.txt); "
                        "make it with `make wheelhouse` on a machine with internet")
    manifest = read_json(manifest_file)
    here = f"{sys.version_info.major}.{sys.version_info.minor}"
    if manifest["python"] != here:
        raise UserError(f"{shown(folder)} holds wheels for Python {manifest['python']}, this is Python {here}: "
                        f"make wheelhouse WHEEL_PYTHON={here} (or PYTHON= a Python {manifest['python']} here)")
    for wheel in manifest["wheels"]:
        path = folder / wheel["file"]
        if not path.is_file() or path.stat().st_size != wheel["bytes"]:
            raise UserError(f"{shown(path)}: missing or damaged (not the size manifest.json records); copy it again")
    if not manifest["slim"]:
        return ""
    import importlib.util

    if importlib.util.find_spec("torch") is None:
        raise UserError(f"{shown(folder)} leaves torch to this machine (SLIM), and {sys.executable} has none: "
                        "give the Python that has it (make setup WHEELHOUSE=... PYTHON=/path/to/python3), "
                        "or make the bundle without SLIM=1")
    return "--system-site-packages"


def summary(manifest: dict, out: Path) -> str:
    slim = (f"; left to the machine: {', '.join(manifest['left_to_the_machine'])}"
            if manifest["left_to_the_machine"] else "")
    return (f"wheelhouse: {len(manifest['wheels'])} wheels, {manifest['bytes'] / 2**20:,.1f} MiB, for Python "
            f"{manifest['python']} on {manifest['platform']}{slim} -> {shown(out)}\n"
            f"wheelhouse: copy it and the repository to the offline machine, then there: "
            f"make setup WHEELHOUSE={shown(out)}")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, help="the folder to fill (make wheelhouse: wheelhouse/)")
    parser.add_argument("--python-version", help="the target's Python, e.g. 3.12 (default: this one)")
    parser.add_argument("--platform", help="the target's platform tag, e.g. manylinux_2_28_x86_64 (default: this one)")
    parser.add_argument("--slim", action="store_true",
                        help="leave out torch, triton and the nvidia-*/cuda-* libraries (a GPU image's)")
    parser.add_argument("--oldest", action="store_true",
                        help="the oldest supported versions (lib.versions.OLDEST_SUPPORTED) instead of the pins")
    parser.add_argument("--also", action="append", default=[], metavar="NAME==VERSION",
                        help="one more wheel (make setup's installer, uv), or another version of a pinned package")
    parser.add_argument("--check", type=Path, metavar="DIR",
                        help="check a bundle before installing it; print the venv options (make setup WHEELHOUSE=)")


def run(args: argparse.Namespace) -> None:
    if args.check is not None:
        print(check(args.check))
        return
    if args.out is None:
        raise UserError("wheelhouse needs --out (the folder to fill) or --check DIR")
    for requirement in args.also:
        if not re.fullmatch(r"[A-Za-z0-9_.-]+==[A-Za-z0-9_.+!-]+", requirement):
            raise UserError(f"--also {requirement}: expected NAME==VERSION")
    python_version, platform = this_machine()
    with exclusive(args.out / ".wheelhouse.lock", "make wheelhouse"):
        manifest = build(args.out, args.python_version or python_version, args.platform or platform, args.slim,
                         args.oldest, args.also)
    print(summary(manifest, args.out))
