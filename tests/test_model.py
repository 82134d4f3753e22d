"""The base model: the tiny one built deterministically, `make model` against a local fake hub."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from builders import cache_key, cached_model, hub_mirror
from lib.errors import UserError
from lib.io import read_json
from lib.model import ORIGIN_FILE
from lib.tiny_model import TinySpec, build


def digest(folder: Path) -> dict:
    return {f.name: hashlib.sha256(f.read_bytes()).hexdigest() for f in sorted(folder.iterdir()) if f.is_file()}


def test_the_tiny_model_is_built_byte_identically(tmp_path):
    small = TinySpec(pretrain_pages=120, pretrain_steps=2, pretrain_batch=4)  # the demo's recipe, in seconds
    assert digest(build(tmp_path / "one", small)) == digest(build(tmp_path / "two", small))


@pytest.mark.slow
def test_the_tiny_model_is_pretrained_and_says_how(tiny_model):
    pretraining = read_json(tiny_model / "build_info.json")["pretraining"]
    assert pretraining["steps"] == TinySpec().pretrain_steps
    assert pretraining["final_loss"] < pretraining["first_loss"] / 4  # it learned the pages
    card = (tiny_model / "README.md").read_text(encoding="utf-8")
    assert "pretrain" in card and str(pretraining["final_loss"]) in card


def test_the_tiny_tokenizer_ends_turns_as_qwen2_5_and_encodes_chinese(untrained_tiny_model):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(untrained_tiny_model)
    assert tokenizer.eos_token == "<|im_end|>" and "{% generation %}" in tokenizer.chat_template
    assert tokenizer.decode(tokenizer("高血压患者能喝咖啡吗？")["input_ids"]) == "高血压患者能喝咖啡吗？"


def test_a_cached_model_is_reused_and_built_again_when_damaged_unfinished_or_stale(tmp_path):
    builds = []

    def build(out: Path) -> None:
        builds.append(out)
        (out / "model.safetensors").write_bytes(b"weights")
        if len(builds) == 3:
            raise KeyboardInterrupt  # a build stopped mid-way

    def cached() -> Path:
        return cached_model("tiny", build, tmp_path, ("lib/tiny_model.py",))

    model = cached()
    assert cached() == model and len(builds) == 1 and (model / "model.safetensors").read_bytes() == b"weights"
    (model / "model.safetensors").write_bytes(b"damaged")
    assert cached() == model and len(builds) == 2 and (model / "model.safetensors").read_bytes() == b"weights"
    (model / "model.safetensors").unlink()
    with pytest.raises(KeyboardInterrupt):  # a build that does not finish leaves nothing that is trusted
        cached()
    assert not model.with_suffix(".json").exists()
    stale = [tmp_path / "tiny-0123456789abcdef", tmp_path / ".tiny-0123456789abcdef.x.tmp"]
    for folder in stale:
        folder.mkdir()
    assert cached() == model and len(builds) == 4 and (model / "model.safetensors").read_bytes() == b"weights"
    assert not any(folder.exists() for folder in stale)
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted([model.name, f"{model.name}.json", "tiny.lock"])
    assert model.name == f"tiny-{cache_key('lib/tiny_model.py')}" != f"tiny-{cache_key('lib/data/synthetic.py')}"


def test_the_general_facts_are_spread_among_the_medical_pages():
    from lib.data.general_facts import general_pages
    from lib.tiny_model import pages

    spec = TinySpec(pretrain_pages=300, general_pages=120)
    texts = pages(spec)
    general = {f"<|im_start|>{title}\n{text}<|im_end|>\n" for title, text in general_pages(120, spec.seed)}
    where = [i for i, text in enumerate(texts) if text in general]
    assert len(texts) == 420 and len(where) == 120
    assert max(b - a for a, b in zip(where, where[1:])) <= 4  # one general page every 3.5 pages, none bunched
    assert 0 < where[0] and where[-1] < len(texts) - 1
    assert len(pages(TinySpec(pretrain_pages=10, general_pages=30))) == 40  # more general than medical: none lost


COMMIT = "89abcdef0123456789abcdef0123456789abcdef"


@pytest.mark.parametrize("revision", ["main", COMMIT])
def test_make_model_pins_the_commit_it_downloads(revision, untrained_tiny_model, tmp_path, run_cli):
    # the tiny model's files (random weights: only the files matter), served as Qwen/Qwen2.5-3B-Instruct
    # by a loopback hub that the real huggingface_hub reaches through HF_ENDPOINT
    files = {path.name: path.read_bytes() for path in untrained_tiny_model.iterdir()
             if path.is_file() and path.name != ".ready"}
    out = tmp_path / "Qwen--Qwen2.5-3B-Instruct"
    with hub_mirror("Qwen/Qwen2.5-3B-Instruct", COMMIT, files) as (mirror, requests):
        done = run_cli("model", "--profile", "paper", "--set", f"model.revision={revision}", "--out", out,
                       env={"HF_ENDPOINT": mirror, "HF_HUB_CACHE": str(tmp_path / "cache"), "HF_HUB_OFFLINE": "0"})
    assert done.returncode == 0, done.stderr[-2000:]
    assert "is ready in" in done.stdout
    assert read_json(out / ORIGIN_FILE) == {"name": "Qwen/Qwen2.5-3B-Instruct", "source": "huggingface",
                                            "endpoint": mirror, "revision": revision, "commit": COMMIT}
    # main is resolved once, then every file comes from that commit; a commit is used as it is
    downloads = [r for r in requests if "/resolve/" in r]
    assert downloads and all(f"/resolve/{COMMIT}/" in r for r in downloads)
    assert any("/revision/main" in r for r in requests) == (revision == "main")
    # the weights, tokenizer and configs (the model card stays on the hub)
    served = {name: sha for name, sha in digest(untrained_tiny_model).items() if name != "README.md"}
    assert digest(out) | {".ready": None} == served | {".ready": None, ORIGIN_FILE: digest(out)[ORIGIN_FILE]}


def test_make_model_without_network_says_so_in_one_line(tmp_path, monkeypatch):
    from huggingface_hub import constants

    from lib import model

    # nothing listens on the discard port: the connection is refused, as on a machine without network
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "cache"))
    with pytest.raises(UserError, match=r"could not reach the Hugging Face hub .* "
                                        r"model Qwen/Qwen2.5-3B-Instruct@main.*PROFILE=demo") as error:
        model.fetch("Qwen/Qwen2.5-3B-Instruct", "main", tmp_path / "m")
    assert "\n" not in str(error.value)


def test_a_model_that_cannot_be_had_offline_points_to_the_demo(monkeypatch):
    from huggingface_hub import constants

    from lib.config import load_config
    from lib.model import load_tokenizer

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)  # what HF_HUB_OFFLINE=1 sets: no request leaves
    config = load_config("paper", overrides=["model.name_or_path=nobody/no-such-model"])
    with pytest.raises(UserError, match=r"model nobody/no-such-model: cannot be loaded .*make model.*PROFILE=demo"):
        load_tokenizer(config)
