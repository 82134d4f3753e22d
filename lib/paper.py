"""The PDF: compile paper/report.tex against one generated folder, and check that this machine can.

    python -m lib paper --profile demo --generated paper/generated/demo --out paper/build/demo  (make paper)
    python -m lib paper --check                                                                  (make tex)

The build runs latexmk + xelatex (non-interactive) from paper/, passes the generated folder in as
\\GeneratedDir (so the demo and paper profiles never mix), and prints the PDF's path last.

The check compiles paper/probe.tex, a page that inputs the report's own preamble
(paper/preamble.tex), afresh into paper/build/probe/. Where a package or font the report needs is
missing, it fails with one line naming the missing file or font and the package of
paper/tex-packages.txt that ships it. Only the standard library is used here, so `make setup-tex`
runs the check with the system Python, before any virtual environment exists.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from lib.errors import UserError
from lib.io import REPO_ROOT, atomic_write, shown

PAPER_DIR = REPO_ROOT / "paper"
MAIN_TEX = PAPER_DIR / "report.tex"
PROBE_TEX = PAPER_DIR / "probe.tex"
PROBE_OUT = PAPER_DIR / "build" / "probe"
TEX_PACKAGES = PAPER_DIR / "tex-packages.txt"
TEX_TOOLS = ("latexmk", "xelatex", "bibtex")

# TeX reads \GeneratedDir as a path: these characters would end or change it.
_UNSAFE_PATH = re.compile(r"[\s%#{}\\$~^&]")
_PROFILE_MACRO = re.compile(r"\\newcommand\{\\ProfileName\}\{([^}]*)\}")
# What a TeX error says is missing: a file (a package, class or metric) or a font.
_MISSING_PATTERNS = (
    re.compile(r"File `([^']+)' not found"),  # LaTeX: \usepackage, \documentclass, \input
    re.compile(r"Font \\\S+=(\S+) at \S+ not loadable: Metric \(TFM\) file"),  # hyperref's XeTeX link font
    re.compile(r'font "([^"]+)" (?:not found|cannot be found)', re.IGNORECASE),  # fontspec, probe.tex
)


# --- what the report needs --------------------------------------------------------------------


def tex_packages() -> dict[str, str]:
    """paper/tex-packages.txt as {Debian package: what the report takes from it}."""
    packages = {}
    for line in TEX_PACKAGES.read_text(encoding="utf-8").splitlines():
        name, _, provides = line.partition("#")[0].strip().partition(" ")
        if name:
            packages[name] = provides.strip()
    return packages


def install_hint() -> str:
    return ("install TeX with `make setup-tex` (Debian/Ubuntu: apt-get install --no-install-recommends "
            f"{' '.join(tex_packages())}; the list is {shown(TEX_PACKAGES)})")


def tex_tools_missing() -> list[str]:
    return [tool for tool in TEX_TOOLS if shutil.which(tool) is None]


def require_tex_tools() -> None:
    missing = tex_tools_missing()
    if missing:
        raise UserError(f"{', '.join(missing)} not found: {install_hint()}")


def latexmk(main_tex: Path, out: Path, pretex: str | None = None, full_rebuild: bool = False) -> Path:
    """Compile `main_tex` (from its own folder, so its \\input files and references.bib resolve)
    into `out`; return the PDF's path, or raise the first TeX error as one line."""
    command = [
        "latexmk", "-xelatex", "-bibtex", "-interaction=nonstopmode", "-halt-on-error", "-file-line-error",
        "-quiet", "-recorder", *(["-g"] if full_rebuild else []), f"-outdir={out}",
        *([f"-usepretex={pretex}"] if pretex else []), main_tex.name,
    ]
    # TeX wraps its log at 79 columns, which would cut file names and messages in two.
    environment = os.environ | {"max_print_line": "10000"}
    result = subprocess.run(command, cwd=main_tex.parent, env=environment, capture_output=True, text=True,
                            errors="replace")
    if result.returncode != 0:
        raise UserError(first_tex_error(out / f"{main_tex.stem}.log", result.stdout + result.stderr))
    return out / f"{main_tex.stem}.pdf"


# --- the check: python -m lib paper --check -----------------------------------------------------


def check_setup(probe: Path = PROBE_TEX, out: Path = PROBE_OUT) -> Path:
    """Compile the probe afresh; on failure one line: what is missing and which package ships it."""
    require_tex_tools()
    shutil.rmtree(out, ignore_errors=True)  # a build left from before would hide a package removed since
    out.mkdir(parents=True)
    try:
        return latexmk(probe, out)
    except UserError as err:
        name = missing_name(str(err))
        if name is None:
            raise UserError(f"TeX cannot build the report here: {err}; {install_hint()}") from None
        package = providing_package(name)
        ships = f" ({package} ships it: `make setup-tex` installs it)" if package else f"; {install_hint()}"
        raise UserError(f"TeX cannot build the report here: {name} is missing{ships}; "
                        f"see {shown(out / (probe.stem + '.log'))}") from None


def missing_name(error: str) -> str | None:
    """The file or font a TeX error says is missing, e.g. 'pzdr.tfm', 'ctexart.cls', or None."""
    for number, pattern in enumerate(_MISSING_PATTERNS):
        match = pattern.search(error)
        if match:
            return match.group(1) + (".tfm" if number == 1 else "")
    return None


def providing_package(name: str) -> str | None:
    """The package of paper/tex-packages.txt whose line names `name` ('pzdr.tfm', 'ctexart.cls',
    'WenQuanYi Micro Hei'), or None."""
    return next((package for package, provides in tex_packages().items() if name in provides), None)


# --- the build: python -m lib paper -------------------------------------------------------------


def build_pdf(generated: Path, out: Path, profile: str, main_tex: Path = MAIN_TEX) -> Path:
    """Compile `main_tex` against the `generated` folder into `out`/<name>.pdf and return its path."""
    generated, out = Path(generated).resolve(), Path(out).resolve()
    check_generated(generated, profile)
    require_tex_tools()
    # The path as TeX will see it: relative to paper/ where possible (short, and the same on
    # every clone), else absolute.
    tex_path = os.path.relpath(generated, main_tex.parent) if generated.is_relative_to(REPO_ROOT) else str(generated)
    tex_path = tex_path.replace(os.sep, "/")
    if _UNSAFE_PATH.search(tex_path):
        raise UserError(f"{generated}: TeX cannot read a folder whose path has spaces or any of % # {{ }} \\ $ ~ ^ &")
    out.mkdir(parents=True, exist_ok=True)
    # latexmk rebuilds when a file it read changes, but not when \GeneratedDir points elsewhere:
    # the folder of the last build is remembered, and a different one forces a full rebuild.
    last_generated = out / ".generated"
    changed = not last_generated.is_file() or last_generated.read_text(encoding="utf-8") != tex_path
    pdf = latexmk(main_tex, out, pretex=f"\\def\\GeneratedDir{{{tex_path}}}", full_rebuild=changed)
    with atomic_write(last_generated) as handle:
        handle.write(tex_path)
    for warning in tex_warnings(pdf.with_suffix(".log")):
        print(f"paper: warning: {warning}", file=sys.stderr)
    return pdf


def check_generated(generated: Path, profile: str) -> None:
    """The generated folder exists and was made for this profile (demo and paper never mix)."""
    from lib.tex import escape  # (with numpy: the build runs in the project's environment, the check need not)

    macros = generated / "macros.tex"
    if not macros.is_file():
        raise UserError(f"{shown(macros)}: no such file; write it first with "
                        f"`python -m lib report --profile {profile} --out {shown(generated)} ...`")
    match = _PROFILE_MACRO.search(macros.read_text(encoding="utf-8"))
    made_for = match.group(1) if match else None
    if made_for != escape(profile):
        raise UserError(f"{shown(macros)}: made for profile {made_for!r}, not {profile!r}")


def first_tex_error(log: Path, output: str) -> str:
    """One line for the user: the first error in the TeX log (file:line: message), or latexmk's."""
    text = log.read_text(encoding="utf-8", errors="replace") if log.is_file() else ""
    for line in text.splitlines():
        if re.match(r"^(\S+:\d+: |! )", line):
            return f"{shown(log)}: {line.strip()}"
    last_lines = [line for line in output.splitlines() if line.strip()]
    return f"latexmk failed ({last_lines[-1].strip() if last_lines else 'no output'}); see {shown(log)}"


def tex_warnings(log: Path) -> list[str]:
    """What a reader would see as a flaw: glyphs no font has, unresolved citations or
    references, lines that stick out into the margin."""
    text = log.read_text(encoding="utf-8", errors="replace") if log.is_file() else ""
    checks = {
        "characters missing from the fonts (printed as boxes or not at all)": r"^Missing character: There is no (\S+)",
        "undefined citations": r"Citation `([^']+)' .*undefined",
        "undefined references": r"Reference `([^']+)' .*undefined",
        "overfull lines": r"^Overfull \\hbox \((\S+) too wide\)",
    }
    warnings = []
    for what, pattern in checks.items():
        found = re.findall(pattern, text, flags=re.MULTILINE)
        if found:
            examples = ", ".join(dict.fromkeys(found[:5]))
            warnings.append(f"{len(found)} {what} ({examples}); see {shown(log)}")
    return warnings


# --- the command --------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--check", action="store_true",
                        help="only check that TeX can build the report here (compiles paper/probe.tex)")
    parser.add_argument("--profile", default="paper", help="the profile the generated folder was made for")
    parser.add_argument("--generated", type=Path, default=None,
                        help="folder written by `python -m lib report` (default: paper/generated/<profile>)")
    parser.add_argument("--out", type=Path, default=None, help="build folder (default: paper/build/<profile>)")


def run(args: argparse.Namespace) -> None:
    if args.check:
        check_setup()
        print(f"paper: TeX has every package and font the report needs ({shown(PROBE_TEX)} builds)")
        return
    generated = args.generated or PAPER_DIR / "generated" / args.profile
    out = args.out or PAPER_DIR / "build" / args.profile
    print(shown(build_pdf(generated, out, args.profile)))
