"""The hub source (lib/data/hub.py) without the network: a fake of huggingface_hub's download
function for sampling, the manifest, reuse and the offline error; a loopback HTTP "mirror" that
the real huggingface_hub reaches through HF_ENDPOINT for the whole `data` command."""

from __future__ import annotations

import dataclasses
import hashlib
import json

import huggingface_hub
import pytest
from huggingface_hub import errors

from builders import fake_hub_download, hub_mirror, unreachable_hub, write_jsonl
from lib.config import load_config
from lib.data import hub, synthetic
from lib.errors import UserError
from lib.io import read_json

COMMIT = "0123456789abcdef0123456789abcdef01234567"
DATA = load_config("paper", overrides=["data.raw_sample_size=100", "data.seed=3"]).data


@pytest.fixture
def fake_hub(tmp_path, monkeypatch):
    """The hub download served from a local file of 1,000 numbered records: (the file, the calls)."""
    cached, calls = fake_hub_download(monkeypatch, tmp_path / "cache" / "datasets--shibing624--medical", COMMIT,
                                      DATA.hub_file)
    write_jsonl(cached, [{"instruction": f"问题{i}", "input": "", "output": f"回答{i}"} for i in range(1000)])
    return cached, calls


def numbers(path):
    return [int(json.loads(line)["instruction"][2:]) for line in path.read_text(encoding="utf-8").splitlines()]


def test_download_samples_a_seeded_subset_in_file_order_with_a_manifest(fake_hub, tmp_path):
    cached, calls = fake_hub
    sample, manifest = hub.fetch_sample(DATA, tmp_path / "raw")
    assert calls == [{"repo_id": "shibing624/medical", "filename": "finetune/train_zh_0.json",
                      "repo_type": "dataset", "revision": "main"}]  # no endpoint passed: HF_ENDPOINT decides
    picked = numbers(sample)
    assert len(picked) == len(set(picked)) == 100 and picked == sorted(picked)
    assert picked[0] < 100 and picked[-1] > 900  # drawn from the whole file, not its head
    assert sample == tmp_path / "raw" / "hub" / "shibing624__medical" / "train_zh_0-main-100-s3.jsonl"
    assert {k: manifest[k] for k in ("repo", "file", "revision", "commit", "source_lines", "count", "seed")} == {
        "repo": "shibing624/medical", "file": "finetune/train_zh_0.json", "revision": "main", "commit": COMMIT,
        "source_lines": 1000, "count": 100, "seed": 3}
    assert manifest["sha256"] == hashlib.sha256(sample.read_bytes()).hexdigest()
    assert manifest["source_sha256"] == hashlib.sha256(cached.read_bytes()).hexdigest()
    assert read_json(sample.with_name("train_zh_0-main-100-s3.manifest.json")) == manifest


def test_the_sample_is_reproducible_and_depends_on_the_seed(fake_hub, tmp_path):
    first, _ = hub.fetch_sample(DATA, tmp_path / "a")
    again, _ = hub.fetch_sample(DATA, tmp_path / "b")
    other, _ = hub.fetch_sample(dataclasses.replace(DATA, seed=4), tmp_path / "c")
    assert numbers(first) == numbers(again) != numbers(other)


def test_a_second_run_reuses_the_raw_sample_without_the_network(fake_hub, tmp_path, monkeypatch):
    sample, manifest = hub.fetch_sample(DATA, tmp_path / "raw")
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", lambda *a, **k: pytest.fail("downloaded again"))
    assert hub.fetch_sample(DATA, tmp_path / "raw") == (sample, manifest)
    sample.write_text(sample.read_text(encoding="utf-8") + "{}\n", encoding="utf-8")
    with pytest.raises(UserError, match="changed since it was sampled"):
        hub.fetch_sample(DATA, tmp_path / "raw")


@pytest.mark.parametrize("error", [
    errors.LocalEntryNotFoundError("An error happened while trying to locate the file on the Hub and we cannot "
                                   "find the requested files in the local cache."),  # what offline machines get
    errors.OfflineModeIsEnabled("HF_HUB_OFFLINE=1"),
])
def test_an_unreachable_hub_is_one_line_that_says_what_to_do(tmp_path, monkeypatch, error):
    unreachable_hub(monkeypatch, error)
    with pytest.raises(UserError) as raised:
        hub.fetch_sample(DATA, tmp_path / "raw")
    message = str(raised.value)
    assert message.startswith("could not reach the Hugging Face hub at ")
    assert "make data SOURCE=path/to/file.jsonl" in message and "PROFILE=demo" in message
    assert "HF_ENDPOINT" in message and "\n" not in message
    assert not (tmp_path / "raw").exists()


def test_the_data_command_downloads_through_HF_ENDPOINT(tmp_path, run_cli):
    records = synthetic.generate(1500, seed=0)
    body = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode("utf-8")
    with hub_mirror(DATA.hub_repo, COMMIT, {DATA.hub_file: body}, repo_type="dataset") as (mirror, requests):
        done = run_cli("data", "--profile", "paper", "--raw-dir", tmp_path / "raw", "--out", tmp_path / "out",
                       "--sizes", "300", "--set", "data.raw_sample_size=1200", "--set", "data.test_size=100",
                       "--set", "data.dev_size=50",
                       env={"HF_ENDPOINT": mirror, "HF_HUB_CACHE": str(tmp_path / "cache"), "HF_HUB_OFFLINE": "0"})
    assert done.returncode == 0, done.stderr
    assert requests[-1] == "GET /datasets/shibing624/medical/resolve/main/finetune/train_zh_0.json"
    manifest = read_json(tmp_path / "out" / "manifest.json")
    assert {k: manifest["source"][k] for k in ("type", "endpoint", "commit", "count", "source_lines")} == {
        "type": "hub", "endpoint": mirror, "commit": COMMIT, "count": 1200, "source_lines": 1500}
    first = json.loads((tmp_path / "out" / "test.jsonl").read_text(encoding="utf-8").splitlines()[0])
    assert first["source"] == "shibing624/medical" and first["id"].startswith("medical-")
