"""LaTeX from Python, and the PDF build: escaping, number formats, macros, tables, latexmk.

Everything the report generator (lib/report.py) writes into .tex files passes through here:
user text through `escape`, numbers through the `format_*` functions (one format per kind of
number, so the prose and the tables always agree), macro definitions through `macro`, tables
through `table`. The `paper` command compiles paper/report.tex against one generated folder:

    python -m lib paper --profile demo --generated paper/generated/demo --out paper/build/demo

It runs latexmk + xelatex (non-interactive) from paper/, passes the generated folder in as
\\GeneratedDir (so the demo and paper profiles never mix), and prints the PDF's path last.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import shutil
import subprocess
import sys
import unicodedata
from pathlib import Path

from lib.errors import UserError
from lib.io import REPO_ROOT, atomic_write, shown

PAPER_DIR = REPO_ROOT / "paper"
MAIN_TEX = PAPER_DIR / "report.tex"
MISSING = r"\NA{}"  # report.tex defines \NA: the mark of a value that is not (yet) there
MINUS = "\u2212"  # a real minus sign, not a hyphen
INSTALL_HINT = (
    "install TeX with `make setup-tex` (Debian/Ubuntu: apt-get install --no-install-recommends "
    "texlive-xetex texlive-lang-chinese latexmk poppler-utils fonts-wqy-microhei)"
)

# --- escaping -----------------------------------------------------------------------------------

_SPECIALS = {
    "\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
    "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
}
# Character pairs that the text fonts turn into one glyph (-- into an en dash, `` into a quote,
# ?` into an inverted question mark ...): an empty group between them keeps the text as typed.
_LIGATURE_PAIRS = re.compile(r"(?<=-)(?=-)|(?<=`)(?=`)|(?<=')(?=')|(?<=[!?])(?=`)|(?<=,)(?=,)|(?<=<)(?=<)|(?<=>)(?=>)")


def printable(character: str) -> bool:
    """False for control and format characters, private-use code points and U+FFFD: they have
    no glyph in any font (model output can contain them), and TeX would print a box or stop."""
    return unicodedata.category(character) not in {"Cc", "Cf", "Co", "Cs", "Cn"} and character != "\ufffd"


def escape(text) -> str:
    """User text as LaTeX that prints exactly that text, on one line.

    The one function through which every string from data, configs and model output goes:
    whitespace runs (newlines included) become one space, unprintable characters are dropped,
    the ten TeX specials are escaped and font ligatures are broken.
    """
    text = "".join(c for c in str(text) if c.isspace() or printable(c))
    text = " ".join(text.split())
    text = "".join(_SPECIALS.get(c, c) for c in text)
    return _LIGATURE_PAIRS.sub("{}", text)


def texttt(text) -> str:
    """User text in typewriter type: file names, run names, package names, commits."""
    return r"\texttt{" + escape(text) + "}"


def truncate(text: str, limit: int) -> str:
    """At most `limit` characters of `text`; a cut text ends at its last sentence end when one
    lies in the last 40% (a shorter whole sentence reads better than a cut one), then "……"."""
    text = " ".join(str(text).split())
    if len(text) <= limit:
        return text
    cut = text[:limit]
    sentence_end = max(cut.rfind(mark) for mark in "。！？；!?;")
    if sentence_end >= 0.6 * limit:
        cut = cut[: sentence_end + 1]
    return cut.rstrip() + "……"


# --- numbers ------------------------------------------------------------------------------------


def is_missing(value) -> bool:
    """None or NaN: a number no input gave."""
    return value is None or (isinstance(value, float) and math.isnan(value))


def format_number(value, decimals: int) -> str:
    """Fixed decimals with thousands commas and a true minus: 1234.56, 1 -> '1,234.6'; -0.04, 1 -> '0.0'."""
    if is_missing(value):
        return MISSING
    text = f"{abs(value):,.{decimals}f}"
    negative = value < 0 and any(c not in "0.," for c in text)  # no "-0.0"
    return (MINUS if negative else "") + text


def format_count(value) -> str:
    """A whole number with thousands commas: 60000 -> '60,000'."""
    return format_number(value, 0)


def format_significant(value, digits: int = 3) -> str:
    """`digits` significant figures; below 0.001 or from a million up in scientific notation:
    1234.5 -> '1,230', 0.05123 -> '0.0512', 2e-4 -> '$2\\times10^{-4}$'."""
    if is_missing(value):
        return MISSING
    if value == 0:
        return "0"
    exponent = int(f"{value:.{digits - 1}e}".split("e")[1])  # after rounding: 0.99996 -> 1.00e+00
    if exponent < -3 or exponent >= 6:
        return format_scientific(value, digits)
    places = digits - 1 - exponent  # 1234.5 -> round to -1 places -> 1230
    return format_number(round(value, places), max(0, places))


def format_scientific(value, digits: int = 3) -> str:
    """Math-mode a x 10^b with at most `digits` significant figures, trailing zeros dropped:
    2e-3 -> '$2\\times10^{-3}$', 1.5e-4 -> '$1.5\\times10^{-4}$', 1e-4 -> '$10^{-4}$'."""
    if is_missing(value):
        return MISSING
    mantissa, exponent = f"{abs(value):.{digits - 1}e}".split("e")  # '2.00', '-03'
    mantissa, sign = mantissa.rstrip("0").rstrip("."), "-" if value < 0 else ""
    power = f"10^{{{int(exponent)}}}"
    return f"${sign}{power}$" if mantissa == "1" else f"${sign}{mantissa}\\times{power}$"


def format_p_value(value, relation: bool = False) -> str:
    """Three decimals, or '<0.001' where that would read 0.000; with `relation`, for prose after
    a p: '= 0.210' or '< 0.001'."""
    if is_missing(value):
        return MISSING
    if value < 0.0005:
        return "< 0.001" if relation else "<0.001"
    return ("= " if relation else "") + format_number(value, 3)


# --- macros and tables --------------------------------------------------------------------------

_DIGIT_WORDS = ("Zero", "One", "Two", "Three", "Four", "Five", "Six", "Seven", "Eight", "Nine")


def macro_name(*parts: str) -> str:
    """A TeX macro name (letters only) from name parts: ('qlora', 'rougeL') -> 'QloraRougeL',
    ('bleu4_char',) -> 'BleuFourChar', ('lora', '10k') -> 'LoraOneZeroK'."""
    words = []
    for part in parts:
        for token in re.findall(r"[A-Za-z]+|\d", str(part)):
            words.append(_DIGIT_WORDS[int(token)] if token.isdigit() else token[0].upper() + token[1:])
    if not words:
        raise ValueError(f"no letters or digits in macro name parts {parts!r}")
    return "".join(words)


def macro(name: str, body: str) -> str:
    """One \\newcommand line; `body` is LaTeX already (escaped text or a formatted number)."""
    if not re.fullmatch(r"[A-Za-z]+", name):
        raise ValueError(f"TeX macro names are letters only: {name!r}")
    return f"\\newcommand{{\\{name}}}{{{body}}}"


def value_with_interval(value: str, low: str | None = None, high: str | None = None) -> str:
    """A table cell: the value with its interval under it (report.tex's \\ValueCI), or the value
    alone when there is no interval."""
    if value == MISSING or low in (None, MISSING) or high in (None, MISSING):
        return value
    return f"\\ValueCI{{{value}}}{{{low}}}{{{high}}}"


def table(caption: str, label: str, columns: str, header: list[str], rows: list[list[str]],
          note: str | None = None) -> str:
    """A booktabs table float; `rows` of LaTeX cells; a `None` row draws a rule between groups.

    report.tex's \\FitWidth shrinks a table that is wider than the text, so a long name never
    pushes a table off the page. `note` goes under the table in small print.
    """
    lines = [r"\begin{table}[htbp]", r"\centering\small", f"\\caption{{{caption}}}\\label{{{label}}}",
             f"\\FitWidth{{\\begin{{tabular}}{{{columns}}}", r"\toprule", " & ".join(header) + r" \\", r"\midrule"]
    for row in rows:
        lines.append(r"\midrule" if row is None else " & ".join(row) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}}"]
    if note:
        lines.append(f"\\TableNote{{{note}}}")
    lines.append(r"\end{table}")
    return "\n".join(lines) + "\n"


def missing_table(caption: str, label: str, sentence: str) -> str:
    """The float of a table whose inputs are absent: its caption (references still resolve) and
    one sentence that says what is missing."""
    return "\n".join([r"\begin{table}[htbp]", r"\centering\small", f"\\caption{{{caption}}}\\label{{{label}}}",
                      f"\\MissingInput{{{sentence}}}", r"\end{table}"]) + "\n"


# --- the PDF build: python -m lib paper ---------------------------------------------------------

# TeX reads \GeneratedDir as a path: these characters would end or change it.
_UNSAFE_PATH = re.compile(r"[\s%#{}\\$~^&]")
_PROFILE_MACRO = re.compile(r"\\newcommand\{\\ProfileName\}\{([^}]*)\}")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--profile", default="paper", help="the profile the generated folder was made for")
    parser.add_argument("--generated", type=Path, default=None,
                        help="folder written by `python -m lib report` (default: paper/generated/<profile>)")
    parser.add_argument("--out", type=Path, default=None, help="build folder (default: paper/build/<profile>)")


def run(args: argparse.Namespace) -> None:
    generated = args.generated or PAPER_DIR / "generated" / args.profile
    out = args.out or PAPER_DIR / "build" / args.profile
    pdf = build_pdf(generated, out, args.profile)
    print(shown(pdf))


def tex_tools_missing() -> list[str]:
    return [tool for tool in ("latexmk", "xelatex", "bibtex") if shutil.which(tool) is None]


def build_pdf(generated: Path, out: Path, profile: str, main_tex: Path = MAIN_TEX) -> Path:
    """Compile `main_tex` against the `generated` folder into `out`/<name>.pdf and return its path."""
    generated, out = Path(generated).resolve(), Path(out).resolve()
    check_generated(generated, profile)
    missing_tools = tex_tools_missing()
    if missing_tools:
        raise UserError(f"{', '.join(missing_tools)} not found: {INSTALL_HINT}")
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
    command = [
        "latexmk", "-xelatex", "-bibtex", "-interaction=nonstopmode", "-halt-on-error", "-file-line-error",
        "-quiet", "-recorder", *(["-g"] if changed else []), f"-outdir={out}",
        f"-usepretex=\\def\\GeneratedDir{{{tex_path}}}", main_tex.name,
    ]
    # TeX wraps its log at 79 columns, which would cut file names and messages in two.
    environment = os.environ | {"max_print_line": "10000"}
    result = subprocess.run(command, cwd=main_tex.parent, env=environment, capture_output=True, text=True,
                            errors="replace")
    log = out / f"{main_tex.stem}.log"
    if result.returncode != 0:
        raise UserError(first_tex_error(log, result.stdout + result.stderr))
    with atomic_write(last_generated) as handle:
        handle.write(tex_path)
    for warning in tex_warnings(log):
        print(f"paper: warning: {warning}", file=sys.stderr)
    return out / f"{main_tex.stem}.pdf"


def check_generated(generated: Path, profile: str) -> None:
    """The generated folder exists and was made for this profile (demo and paper never mix)."""
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
