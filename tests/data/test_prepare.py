"""`python -m lib data` end to end on the generated source, as make runs it, its one-line errors, and
`python -m lib bench-data`."""

from __future__ import annotations

import json

from builders import write_jsonl
from lib.config import load_config
from lib.io import sha256_file

ARGS = ("--profile", "demo", "--set", "data.synthetic_size=2000")
DEMO = load_config("demo")


def test_data_command_end_to_end_and_rerun(tmp_path, run_cli):
    out = tmp_path / "processed"
    command = ("data", *ARGS, "--raw-dir", tmp_path / "raw", "--out", out, "--sizes", "250", "1k")
    first = run_cli(*command)
    assert first.returncode == 0, first.stderr
    names = ["test.jsonl", "dev.jsonl", "train-250.jsonl", "train-1k.jsonl"]
    assert sorted(p.name for p in out.iterdir()) == sorted([*names, "cleaning_report.json", "cleaning_report.md",
                                                            "manifest.json", ".data.lock"])
    assert (tmp_path / "raw" / "synthetic" / "synthetic-2000-s42.jsonl").is_file()
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert {name: entry["count"] for name, entry in manifest["files"].items()} == dict(
        zip(names, [DEMO.data.test_size, DEMO.data.dev_size, 250, 1000], strict=True))
    assert manifest["sizes"] == {"250": 250, "1k": 1000}
    assert manifest["provenance"]["seed"] == 42
    assert "wrote test.jsonl, dev.jsonl, train-250.jsonl, train-1k.jsonl" in first.stdout

    stamps = {name: (out / name).stat().st_mtime_ns for name in names}
    again = run_cli(*command)
    assert again.returncode == 0, again.stderr
    assert "unchanged test.jsonl, dev.jsonl, train-250.jsonl, train-1k.jsonl" in again.stdout
    assert {name: (out / name).stat().st_mtime_ns for name in names} == stamps
    assert all(manifest["files"][name]["sha256"] == sha256_file(out / name) for name in names)


def test_sizes_too_large_is_one_line_and_status_2(tmp_path, run_cli):
    done = run_cli("data", *ARGS, "--raw-dir", tmp_path / "raw", "--out", tmp_path / "out", "--sizes", "500", "60k")
    assert done.returncode == 2
    assert done.stderr.startswith("error: asked for 60k train examples but there are ")
    assert done.stderr.rstrip().endswith("sizes that fit: 500") and done.stderr.count("\n") == 1


def test_bad_sources_are_one_line_and_status_2(tmp_path, run_cli):
    missing = run_cli("data", "--profile", "demo", "--set", f"data.source={tmp_path / 'nope.jsonl'}",
                      "--out", tmp_path / "out")
    assert missing.returncode == 2 and "is not hub, synthetic or an existing file" in missing.stderr
    odd = write_jsonl(tmp_path / "odd.jsonl", [{"text": "一段文字"}])
    unknown = run_cli("data", "--profile", "demo", "--set", f"data.source={odd}", "--out", tmp_path / "out")
    assert unknown.returncode == 2 and "unknown record shape (fields: text)" in unknown.stderr
    assert "Traceback" not in missing.stderr + unknown.stderr


def test_bench_data_reports_every_stage(tmp_path, run_cli):
    done = run_cli("bench-data", "--out", tmp_path, "--records", "3000", "--sizes", "500")
    assert done.returncode == 0, done.stderr
    result = json.loads((tmp_path / "data.json").read_text(encoding="utf-8"))
    assert list(result["stages"]) == ["generate", "read", "clean", "split_write"]
    stages = sum(stage["seconds"] for stage in result["stages"].values())
    assert 0 < stages <= result["total"]["seconds"] + 0.05  # rounding of each stage to 0.01 s
    assert result["target_seconds"] == 1.8 and result["machine"]["cpu_count"] >= 1
    assert "| clean |" in (tmp_path / "data.md").read_text(encoding="utf-8")
