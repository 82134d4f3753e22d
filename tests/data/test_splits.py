"""Splits (lib/data/splits.py, lib/data/prepare.py): fixed test/dev, nested train subsets, no
test/dev question (or near copy of one) in any train subset, byte-identical reruns that leave
unchanged files alone, and a clear error for sizes the data cannot hold."""

from __future__ import annotations

import json
import os

import pytest

from lib.config import Config, load_config
from lib.data.clean import Fingerprint
from lib.data.prepare import prepare
from lib.data.sources import Example
from lib.data.splits import cut
from lib.data.synthetic import DISEASES
from lib.errors import UserError
from lib.io import read_jsonl, sha256_file

SIZES = ["250", "500", "1k"]


def demo_config(**data) -> Config:
    """The demo's data settings on 3,000 generated records (enough that a few training questions overlap test ones)."""
    values = {"source": "synthetic", "synthetic_size": 3000, "test_size": 200, "dev_size": 100, "seed": 42, **data}
    return load_config("demo", overrides=[f"data.{key}={value}" for key, value in values.items()])


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """One prepared folder shared by the read-only tests of this file."""
    root = tmp_path_factory.mktemp("prepared")
    result = prepare(demo_config(), root / "raw", root / "out", SIZES)
    return root / "out", result


def questions(path):
    return [record["messages"][-2]["content"] for record in read_jsonl(path)]


def test_train_subsets_are_nested_prefixes(prepared):
    out, result = prepared
    subsets = [list(read_jsonl(out / f"train-{size}.jsonl")) for size in SIZES]
    assert [len(s) for s in subsets] == [250, 500, 1000]
    assert subsets[0] == subsets[1][:250] and subsets[1] == subsets[2][:500]
    assert result.manifest["sizes"] == {"250": 250, "500": 500, "1k": 1000}


def shingles(text: str) -> set[str]:
    key = "".join(ch for ch in text.lower() if ch.isalnum())
    return {key[i:i + 3] for i in range(max(len(key) - 2, 1))}


def test_test_and_dev_are_disjoint_from_train_including_near_duplicates(prepared):
    out, _ = prepared
    held_out = questions(out / "test.jsonl") + questions(out / "dev.jsonl")
    train = questions(out / "train-1k.jsonl")
    assert (len(held_out), len(set(held_out))) == (300, 300)
    held_out_shingles = [shingles(q) for q in held_out]
    closest = max(len(s & t) / len(s | t) for s in map(shingles, train) for t in held_out_shingles)
    assert closest < demo_config().cleaning.near_duplicate_threshold


def test_records_are_chat_messages_with_the_system_prompt(prepared):
    out, _ = prepared
    record = next(read_jsonl(out / "test.jsonl"))
    assert set(record) == {"id", "source", "messages"}
    assert record["source"] == "synthetic" and record["id"].startswith("syn-")
    assert [m["role"] for m in record["messages"]] == ["system", "user", "assistant"]
    assert record["messages"][0]["content"] == demo_config().data.system_prompt
    ids = [r["id"] for name in ("test", "dev", "train-1k") for r in read_jsonl(out / f"{name}.jsonl")]
    assert len(ids) == len(set(ids))


def test_manifest_and_report_add_up(prepared):
    out, result = prepared
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    report = json.loads((out / "cleaning_report.json").read_text(encoding="utf-8"))
    for name, entry in manifest["files"].items():
        assert entry["sha256"] == sha256_file(out / name)
        assert entry["count"] == sum(1 for _ in read_jsonl(out / name))
    assert report["input_records"] - sum(rule["dropped"] for rule in report["rules"]) == report["kept"]
    assert manifest["clean_records"] == report["kept"]
    assert manifest["source"]["type"] == "synthetic" and manifest["config"]["data"]["seed"] == 42
    assert [rule["rule"] for rule in report["rules"]] == [
        "normalise", "empty", "too_short", "too_long", "not_chinese", "advertising", "non_answer",
        "repeats_question", "duplicate", "near_duplicate", "overlaps_eval"]
    assert "| near_duplicate |" in (out / "cleaning_report.md").read_text(encoding="utf-8")


def test_test_and_dev_do_not_depend_on_the_sizes_asked_for(prepared, tmp_path):
    out, _ = prepared
    prepare(demo_config(), tmp_path / "raw", tmp_path / "out", ["600"])
    for name in ("test.jsonl", "dev.jsonl"):
        assert sha256_file(tmp_path / "out" / name) == sha256_file(out / name)


def test_reruns_are_byte_identical_and_leave_unchanged_files_alone(prepared, tmp_path):
    out, first = prepared
    rerun = prepare(demo_config(), tmp_path / "raw", tmp_path / "out", SIZES)
    digests = {name: f["sha256"] for name, f in first.files.items()}
    assert {name: f["sha256"] for name, f in rerun.files.items()} == digests
    old = 1_000_000_000  # 2001: any stamp the rerun would overwrite
    for name in rerun.files:
        os.utime(tmp_path / "out" / name, (old, old))
    again = prepare(demo_config(), tmp_path / "raw", tmp_path / "out", SIZES)
    assert not any(f["written"] for f in again.files.values())
    assert all((tmp_path / "out" / name).stat().st_mtime == old for name in rerun.files)


def test_another_seed_changes_the_split(prepared, tmp_path):
    out, _ = prepared
    prepare(demo_config(seed=7), tmp_path / "raw", tmp_path / "out", ["250"])
    assert sha256_file(tmp_path / "out" / "test.jsonl") != sha256_file(out / "test.jsonl")


def test_sizes_larger_than_the_data_are_one_clear_error(prepared, tmp_path):
    _, result = prepared
    dropped = {rule["rule"]: rule["dropped"] for rule in result.report["rules"]}
    overlapping = dropped.pop("overlaps_eval")
    clean = result.report["input_records"] - sum(dropped.values())  # what cleaning kept, before the split
    assert overlapping > 0  # so that the message must tell clean examples from those left for training
    with pytest.raises(UserError) as error:
        prepare(demo_config(), tmp_path / "raw", tmp_path / "out", ["1k", "100k"])
    message = str(error.value)
    assert (f"there are {clean} clean examples: 200 test + 100 dev + {overlapping} train questions that overlap "
            f"them (dropped) leave {clean - 300 - overlapping} for training") in message
    assert message.endswith("sizes that fit: 1k")
    assert not (tmp_path / "out" / "manifest.json").exists()


DISTINCT_QUESTIONS = ["、".join(d.symptoms) + "是什么病？" for d in DISEASES[:40]]  # nothing in common


def cut_with_twins(copy):
    """Cut 40 distinct questions followed by copy(question) of each (line n + 40 is line n's twin);
    returns the splits, each line's twin, and the train lines whose twin went to test or dev."""
    texts = DISTINCT_QUESTIONS + [copy(q) for q in DISTINCT_QUESTIONS]
    examples = [Example(q, "回答" * 5, [], "test", line) for line, q in enumerate(texts, start=1)]
    config = demo_config(test_size=10, dev_size=5, seed=3)
    fingerprints = [Fingerprint.of(q, config.cleaning) for q in texts]
    splits = cut(examples, fingerprints, config.data, config.cleaning)
    held_out = {e.line for e in splits.test + splits.dev}
    twin = {line: (line + 40 if line <= 40 else line - 40) for line in range(1, 81)}
    return splits, twin, sorted(line for line in range(1, 81) if line not in held_out and twin[line] in held_out)


def test_overlaps_with_test_or_dev_are_dropped_from_train():
    splits, _, expected = cut_with_twins(lambda q: "请问" + q)  # a near copy, Jaccard ~0.9
    held_out = {e.line for e in splits.test + splits.dev}
    assert expected  # the seed puts some twins on both sides
    assert splits.overlaps.dropped == len(expected)
    assert {e.line for e in splits.train} == set(range(1, 81)) - held_out - set(expected)


def test_train_copies_of_test_or_dev_questions_are_dropped_as_equal():
    splits, twin, expected = cut_with_twins(lambda q: q)  # word for word
    assert splits.overlaps.dropped == len(expected) > 0
    shown = splits.overlaps.examples  # the first three drops, in the shuffled train order
    assert all(e["why"] == f"1.00 similar to test/dev line {twin[e['line']]}" for e in shown) and shown
