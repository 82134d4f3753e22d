"""The base model: the tiny one built deterministically, `make model` against a local fake hub."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest

from lib.errors import UserError
from lib.tiny_model import TinySpec, build


def digest(folder: Path) -> dict:
    return {f.name: hashlib.sha256(f.read_bytes()).hexdigest() for f in sorted(folder.iterdir()) if f.is_file()}


def test_the_tiny_model_is_built_byte_identically(tiny_model, tmp_path):
    again = build(tmp_path / "tiny-qwen2", TinySpec(corpus_records=3_000))
    assert digest(again) == digest(tiny_model)

    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    assert tokenizer.eos_token == "<|im_end|>" and "{% generation %}" in tokenizer.chat_template
    assert tokenizer.decode(tokenizer("高血压患者能喝咖啡吗？")["input_ids"]) == "高血压患者能喝咖啡吗？"


def test_make_model_downloads_and_verifies(tiny_model, tmp_path, monkeypatch, capsys):
    import huggingface_hub

    from lib import model

    def snapshot_download(repo_id, revision, local_dir, allow_patterns):  # the hub, served from disk
        assert repo_id == "Qwen/Qwen2.5-3B-Instruct" and "*.safetensors" in allow_patterns
        shutil.copytree(tiny_model, local_dir, dirs_exist_ok=True)
        return str(local_dir)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    out = tmp_path / "Qwen--Qwen2.5-3B-Instruct"
    model.run(type("Args", (), {"profile": "paper", "variant": [], "overrides": [], "out": out,
                                "source": "huggingface"})())
    assert (out / model.READY_MARKER).is_file()
    assert "is ready in" in capsys.readouterr().out


def test_make_model_without_network_says_so_in_one_line(tmp_path, monkeypatch):
    import httpx2
    import huggingface_hub

    from lib import model

    def unreachable(*args, **kwargs):
        raise httpx2.ConnectError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", unreachable)
    with pytest.raises(UserError, match=r"could not reach the Hugging Face hub .* model Qwen/Qwen2.5-3B-Instruct@main.*PROFILE=demo") as error:
        model.fetch("Qwen/Qwen2.5-3B-Instruct", "main", tmp_path / "m")
    assert "\n" not in str(error.value)


def test_a_model_that_cannot_be_had_offline_points_to_the_demo(monkeypatch):
    from lib.config import load_config
    from lib.model import load_tokenizer

    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)  # what HF_HUB_OFFLINE=1 sets: no request leaves
    config = load_config("paper", overrides=["model.name_or_path=nobody/no-such-model"])
    with pytest.raises(UserError, match=r"model nobody/no-such-model: cannot be loaded .*make model.*PROFILE=demo"):
        load_tokenizer(config)
