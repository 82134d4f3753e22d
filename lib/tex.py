"""LaTeX from Python: escaping, number formats, macros, tables.

Everything the report generator (lib/report/) writes into .tex files passes through here:
user text through `escape`, numbers through the `format_*` functions (one format per kind of
number, so the prose and the tables always agree), macro definitions through `macro`, tables
through `table`. lib/paper.py compiles the result into the PDF.
"""

from __future__ import annotations

import re
import unicodedata

from lib.stats import is_missing

MISSING = r"\NA{}"  # report.tex defines \NA: the mark of a value that is not (yet) there
MINUS = "\u2212"  # a real minus sign, not a hyphen

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
