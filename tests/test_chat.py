"""make chat with standard streams that cannot carry the conversation: a closed input, a terminal
whose encoding has no Chinese characters, input in another encoding than the terminal's. Each is
one line and exit status 2, never a traceback; a GBK terminal chats as a UTF-8 one does."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from builders import REPO_ROOT, demo_overrides


def chat(run_dir, tiny_model, *, stdin: bytes | None = b"", encoding: str | None = None, closed_input: bool = False,
         timeout: float = 300) -> subprocess.CompletedProcess:
    """`python -m lib chat` as `make chat` runs it, its input `stdin` (or closed), its streams in `encoding`."""
    command = [sys.executable, "-m", "lib", "chat", "--profile", "demo", "--method", "lora", "--run-dir",
               str(run_dir)] + [arg for o in demo_overrides(tiny_model) for arg in ("--set", o)]
    if closed_input:
        command = ["bash", "-c", 'exec "$@" 0<&-', "bash", *command]
    environment = {**os.environ, **({"PYTHONIOENCODING": encoding} if encoding else {})}
    return subprocess.run(command, cwd=REPO_ROOT, input=None if closed_input else stdin, capture_output=True,
                          env=environment, timeout=timeout)


@pytest.mark.parametrize("case", ["closed input", "latin-1 terminal", "ascii terminal"])
def test_streams_that_cannot_carry_chinese_are_one_line_before_the_model_loads(case, tmp_path):
    run_dir = tmp_path / "runs" / "lora-64"  # never read: the streams are checked first
    finished = chat(run_dir, tmp_path / "model", closed_input=case == "closed input",
                    encoding={"latin-1 terminal": "latin-1", "ascii terminal": "ascii"}.get(case))
    stderr = finished.stderr.decode("utf-8")
    assert finished.returncode == 2 and stderr.count("\n") == 1, stderr
    if case == "closed input":
        assert stderr.startswith("error: standard input is closed; chat reads questions from a terminal or a pipe")
    else:
        named = {"latin-1 terminal": "iso8859-1", "ascii terminal": "ascii"}[case]  # as Python names them
        assert stderr.startswith(f"error: the terminal's input encoding is {named}, which has no Chinese "
                                 "characters; use a UTF-8 terminal")


@pytest.mark.slow
def test_input_in_another_encoding_is_one_line_and_a_gbk_terminal_chats(lora_run, tiny_model):
    wrong = chat(lora_run, tiny_model, stdin="头痛怎么办？\n".encode("gbk"), encoding="utf-8")
    stderr = wrong.stderr.decode("utf-8")
    assert wrong.returncode == 2 and "Traceback" not in stderr
    assert re.fullmatch(r"error: standard input is not utf-8 text \(byte 0x[0-9a-f]{2}\); set the terminal "
                        r"\(or PYTHONIOENCODING\) to the encoding you type in, e.g. UTF-8", stderr.splitlines()[-1])
    gbk = chat(lora_run, tiny_model, stdin="头痛怎么办？\n".encode("gbk"), encoding="gbk")
    shown = gbk.stdout.decode("gbk")
    assert gbk.returncode == 0 and "你: 头痛怎么办？" in shown and "助手: " in shown
