"""Files: JSON Lines with their line numbers, append-only logs cut short, atomic writes."""

from __future__ import annotations

import json
import os
import stat

import pytest

from lib.errors import UserError
from lib.io import atomic_write, numbered_jsonl, read_log, write_jsonl


def test_line_numbers_count_blank_lines_and_a_non_object_is_named(tmp_path):
    path = tmp_path / "split.jsonl"
    path.write_text('{"id": "a"}\n\n{"id": "b"}\n[1]\n', encoding="utf-8")
    lines = numbered_jsonl(path)
    assert next(lines) == (1, {"id": "a"}) and next(lines) == (3, {"id": "b"})
    with pytest.raises(UserError, match=r"split.jsonl:4: expected a JSON object, got list"):
        next(lines)


def test_a_log_cut_inside_a_chinese_character_keeps_its_complete_lines(tmp_path):
    path = tmp_path / "predictions.partial.jsonl"
    whole = json.dumps({"index": 0, "text": "多喝水"}, ensure_ascii=False) + "\n"
    cut = (json.dumps({"index": 1, "text": "注意休息"}, ensure_ascii=False)).encode("utf-8")[:-5]  # mid-character
    path.write_bytes(whole.encode("utf-8") + cut)
    assert read_log(path) == [{"index": 0, "text": "多喝水"}]
    assert read_log(tmp_path / "absent.jsonl") == []


def test_atomic_writes_leave_nothing_behind_on_failure_and_use_the_usual_mode(tmp_path):
    path = tmp_path / "eval.json"
    with pytest.raises(RuntimeError):
        with atomic_write(path) as handle:
            handle.write("half")
            raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []
    write_jsonl(path, [{"a": 1}])
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask
