"""TeX text (lib/tex.py): escaping user text, number formats, macro names, truncation."""

from __future__ import annotations

import re

import pytest

from lib.tex import (
    MINUS,
    escape,
    format_count,
    format_number,
    format_p_value,
    format_significant,
    macro,
    macro_name,
    truncate,
)


@pytest.mark.parametrize("text, expected", [
    ("50% & $5 #1 a_b", r"50\% \& \$5 \#1 a\_b"),
    ("{x} ~y ^z", r"\{x\} \textasciitilde{}y \textasciicircum{}z"),
    ("C:\\path", r"C:\textbackslash{}path"),
    ("a--b ``q'' ?`", "a-{}-b `{}`q'{}' ?{}`"),
    ("一行\n\n\t另一行  ", "一行 另一行"),
    ("bad\x00\x1b[0m\ufffd\u200b char", "bad[0m char"),
    ("\\newcommand{\\x}{}", r"\textbackslash{}newcommand\{\textbackslash{}x\}\{\}"),
])
def test_escape_makes_user_text_literal(text, expected):
    assert escape(text) == expected


def test_escape_leaves_no_unescaped_special():
    nasty = "%&_#${}~^\\" * 3
    escaped = escape(nasty)
    # Removing the escapes must leave no TeX special character behind.
    stripped = re.sub(r"\\(text(backslash|asciitilde|asciicircum)\{\}|[%&_#${}])", "", escaped)
    assert not set(stripped) & set("%&_#${}~^\\")


def test_number_formats():
    assert format_number(1234.567, 1) == "1,234.6"
    assert format_number(-1.26, 1) == f"{MINUS}1.3"
    assert format_number(-0.04, 1) == "0.0"  # never "-0.0"
    assert format_number(None, 3) == r"\NA{}"
    assert format_count(60000) == "60,000"
    assert format_significant(2e-4) == r"$2\times10^{-4}$"
    assert format_significant(1234.5) == "1,230"
    assert format_significant(0.99996) == "1.00"
    assert format_p_value(0.0001) == "<0.001" and format_p_value(0.21) == "0.210"


def test_macro_names_are_letters_only():
    assert macro_name("qlora", "rougeL") == "QloraRougeL"
    assert macro_name("bleu4_char") == "BleuFourChar"
    assert macro_name("rouge-chinese", "version") == "RougeChineseVersion"
    with pytest.raises(ValueError):
        macro("Bad1", "x")


def test_truncate_prefers_a_sentence_end():
    assert truncate("短句。", 10) == "短句。"
    text = "第一句话很长很长。第二句话也很长很长很长。第三句"
    assert truncate(text, 22) == "第一句话很长很长。第二句话也很长很长很长。……"  # ends at the sentence
    assert truncate(text, 20) == "第一句话很长很长。第二句话也很长很长很长……"  # last 。 too early: cut
    assert truncate("无标点" * 20, 10) == "无标点无标点无标点无……"
