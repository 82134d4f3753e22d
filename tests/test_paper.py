"""The PDF of the report (paper/report.tex built by `python -m lib paper`, lib/paper.py) from the
small study of tests/builders.py's write_study: the generated numbers and a Chinese example are in the PDF's
text, a partial study says what is missing, the demo disclaimer is there for demo only.

Building needs TeX (xelatex, latexmk, bibtex: `make setup-tex`); those tests skip without it.
Two builds of ~15 s each on 2 cores. The set-up check (`make tex`: paper/probe.tex with the
report's own preamble) names a missing package, font or metric in one line.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from builders import QUESTION, REPO_ROOT, read_macros, write_study
from lib import cli
from lib.config import load_grid, run_name
from lib.errors import UserError
from lib.paper import (
    PAPER_DIR,
    build_pdf,
    check_setup,
    missing_name,
    providing_package,
    tex_packages,
    tex_tools_missing,
)
from lib.report.study import load_study
from lib.report.write import write_report

pypdf = pytest.importorskip("pypdf")
needs_tex = pytest.mark.skipif(
    bool(tex_tools_missing()),
    reason=f"no TeX here ({', '.join(tex_tools_missing())} missing): `make setup-tex` installs it")
DEMO_DISCLAIMER = "say nothing about medicine"


def build(tmp_path: Path, profile: str, unfinished: dict[str, str] | None = None,
          seeds: tuple[int, ...] | None = None) -> tuple[str, dict, Path]:
    """Write the study, generate its LaTeX, build the PDF: (PDF text without whitespace, macros, log)."""
    paths = write_study(tmp_path / "study", profile, unfinished, seeds)
    generated = tmp_path / "generated"
    write_report(load_study(paths["results"], paths["runs"], paths["data"], profile, seeds=seeds), generated)
    pdf = build_pdf(generated, tmp_path / "build", profile)
    text = "".join(page.extract_text() for page in pypdf.PdfReader(pdf).pages)
    return re.sub(r"\s+", "", text), read_macros(generated), pdf.with_suffix(".log")


def visible(macro_body: str) -> str:
    """The text a number macro prints (\\NA{} prints an en dash)."""
    return macro_body.replace(r"\NA{}", "–").replace(" ", "")


@needs_tex
def test_pdf_quotes_the_generated_numbers(tmp_path):
    # two training seeds: the text with p-values (the partial study below builds the one-seed text)
    text, macros, log = build(tmp_path, "demo", seeds=(42, 7))
    for name in ("BestRougeL", "BaseTestLoss", "BestGainRougeL", "LoraFitAlpha", "QloraMemoryRatio",
                 "QloraRougeLDiff", "CleanRecords", "TestSize", "LoraAlpha", "GitCommit", "LoraHoldoutPercent",
                 "QloraZeroDataTestLoss", "LoraFitSlopePerDoubling", "QloraLossDiffP"):
        assert visible(macros[name]) in text, f"\\{name} = {macros[name]!r} not in the PDF"
    assert QUESTION in text  # a Chinese example, extractable (fonts with ToUnicode maps)
    assert DEMO_DISCLAIMER.replace(" ", "") in text and "演示配置" in text
    assert "本报告不完整" not in text
    log_text = log.read_text(encoding="utf-8", errors="replace")
    assert "Missing character" not in log_text  # no glyph printed as a box or nothing
    assert not re.search(r"(Citation|Reference) `[^']+' .*undefined", log_text)


@needs_tex
def test_partial_study_builds_a_report_that_names_what_is_missing(tmp_path):
    grid = load_grid("paper")
    seed = grid.default_seed
    missing = run_name("qlora", grid.sizes[-1], seed, seed)
    training = run_name("qlora", grid.sizes[-2], seed, seed)
    text, macros, _ = build(tmp_path, "paper", unfinished={missing: "missing", training: "training"})
    assert "本报告不完整" in text
    assert missing in text and training in text and "训练未完成" in text
    assert visible(macros["BestRougeL"]) in text
    assert "不给$p$值" in text or "不给p值" in text  # one seed: the comparison says why it has no p-value
    assert DEMO_DISCLAIMER.replace(" ", "") not in text and "演示配置" not in text


def test_without_tex_the_build_says_how_to_install_it(tmp_path, monkeypatch, capsys):
    paths = write_study(tmp_path / "study")
    generated = tmp_path / "generated"
    write_report(load_study(paths["results"], paths["runs"], paths["data"], "demo"), generated)
    monkeypatch.setattr(shutil, "which", lambda tool: None)
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["paper", "--profile", "demo", "--generated", str(generated), "--out", str(tmp_path / "build")])
    assert exit_info.value.code == 2
    message = capsys.readouterr().err.strip()
    assert message.count("\n") == 0 and "make setup-tex" in message and "xelatex" in message


def test_generated_folder_of_another_profile_is_refused(tmp_path):
    paths = write_study(tmp_path / "study")
    generated = tmp_path / "generated"
    write_report(load_study(paths["results"], paths["runs"], paths["data"], "demo"), generated)
    with pytest.raises(UserError, match="made for profile 'demo', not 'paper'"):
        build_pdf(generated, tmp_path / "build", "paper")
    with pytest.raises(UserError, match="no such file"):
        build_pdf(tmp_path / "nothing", tmp_path / "build", "demo")


@needs_tex
def test_a_tex_error_is_one_line_naming_the_log(tmp_path):
    paths = write_study(tmp_path / "study")
    generated = tmp_path / "generated"
    write_report(load_study(paths["results"], paths["runs"], paths["data"], "demo"), generated)
    with (generated / "macros.tex").open("a", encoding="utf-8") as handle:
        handle.write("\\newcommand{\\BestRougeL}{again}\n")  # defined twice: LaTeX stops
    with pytest.raises(UserError,
                       match=r"report.log: .*macros.tex:\d+: LaTeX Error: Command \\BestRougeL already defined"):
        build_pdf(generated, tmp_path / "build", "demo")


# --- the TeX set-up: one list of packages, checked by compiling the report's own preamble ---------


def probe_copy(tmp_path: Path, edit) -> Path:
    """paper/probe.tex with the report's preamble and bibliography beside it, the preamble edited."""
    folder = tmp_path / "probe"
    folder.mkdir()
    for name in ("probe.tex", "references.bib"):
        shutil.copy(PAPER_DIR / name, folder / name)
    (folder / "preamble.tex").write_text(edit((PAPER_DIR / "preamble.tex").read_text(encoding="utf-8")),
                                         encoding="utf-8")
    return folder / "probe.tex"


def test_the_report_and_the_probe_share_one_preamble():
    report, probe = ((PAPER_DIR / name).read_text(encoding="utf-8") for name in ("report.tex", "probe.tex"))
    for text in (report, probe):
        assert "\\input{preamble}" in text and "\\documentclass" not in text and "\\usepackage" not in text
    assert "\\documentclass" in (PAPER_DIR / "preamble.tex").read_text(encoding="utf-8")


@needs_tex
def test_the_probe_builds_here(tmp_path):
    assert check_setup(out=tmp_path / "build").is_file()


@needs_tex
@pytest.mark.parametrize("edit, missing", [
    (lambda text: text.replace("\\usepackage{booktabs}", "\\usepackage{booktabs}\\usepackage{no-such-package}"),
     "no-such-package.sty is missing; install TeX with `make setup-tex`"),
    (lambda text: text.replace("{WenQuanYi Micro Hei}", "{No Such Hei}"), "No Such Hei is missing"),
])
def test_a_missing_package_or_font_is_one_line_naming_it(tmp_path, edit, missing):
    with pytest.raises(UserError) as error:
        check_setup(probe_copy(tmp_path, edit), tmp_path / "build")
    message = str(error.value)
    assert missing in message and "\n" not in message and "probe.log" in message


def test_a_missing_metric_names_the_package_that_ships_it():
    # the first error of hyperref's XeTeX driver where texlive-fonts-recommended is absent
    line = ("hyperref.sty:4872: Font \\XeTeXLink@font=pzdr at 0.00002pt not loadable: "
            "Metric (TFM) file or installed font not found.")
    assert missing_name(line) == "pzdr.tfm"
    assert providing_package("pzdr.tfm") == "texlive-fonts-recommended"
    assert providing_package("ctexart.cls") == "texlive-lang-chinese"
    assert providing_package("WenQuanYi Micro Hei Mono") == "fonts-wqy-microhei"


def test_the_check_needs_only_the_standard_library():
    # `make setup-tex` runs it with the system Python, before the project's environment exists
    code = "import sys, lib.cli, lib.paper; print(sorted(m for m in ('numpy', 'torch', 'yaml') if m in sys.modules))"
    imported = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True)
    assert imported.stdout.strip() == "[]", imported.stderr


def test_setup_tex_installs_exactly_the_list_and_ends_with_the_check():
    packages = list(tex_packages())
    assert {"texlive-xetex", "texlive-lang-chinese", "texlive-fonts-recommended", "latexmk"} <= set(packages)
    plan = subprocess.run(["make", "-n", "setup-tex"], cwd=REPO_ROOT, capture_output=True, text=True).stdout
    install = next(line for line in plan.splitlines() if "apt-get install" in line)
    assert install.split("--no-install-recommends")[1].split(">")[0].split() == packages
    assert plan.strip().splitlines()[-1].endswith("-m lib paper --check")
    assert "make setup-tex" in (REPO_ROOT / ".ci" / "run").read_text(encoding="utf-8")
