"""Model cards: the Hub's front matter parses as YAML and carries the run's metrics; the body
quotes every metric with its interval beside the base model's, the data, the settings and the
disclaimer; a QLoRA export says it was merged into the dequantised 16-bit base."""

from __future__ import annotations

import json

import pytest
import yaml

from builders import config, mcq, run_metrics
from lib.evaluate.metrics import METRICS
from lib.model_card import ADAPTER, MERGED, CardInputs, card_inputs, card_text, write_card


def front_matter_and_body(text: str) -> tuple[dict, str]:
    assert text.startswith("---\n")
    matter, body = text[4:].split("\n---\n", 1)
    return yaml.safe_load(matter), body


def card_for(method: str = "lora", base_evaluated: bool = True, base_model: str = "Qwen/Qwen2.5-3B-Instruct",
             export: dict | None = None) -> CardInputs:
    run_config = config(method, "900", 42, "demo")
    run_config["model"]["name_or_path"] = base_model
    run_config["resolved"]["model_origin"] = {"name": base_model, "revision": "main", "commit": "9f8e7d"}
    run_config["data"] |= {"source": "hub", "hub_repo": "shibing624/medical", "hub_file": "finetune/train_zh_0.json",
                           "system_prompt": "你是医学助手。"}
    evaluation = {"run": f"{method}-900", "n_items": 200, "metrics": run_metrics(method, 3), "mcq": mcq(method, 3),
                  "generation": {"decoding": {"max_new_tokens": 512, "repetition_penalty": 1.0}}}
    base = {"run": "base", "n_items": 200, "metrics": run_metrics("base", 0), "mcq": mcq("base", 0)}
    manifest = {"source": {"type": "hub", "repo": "shibing624/medical", "file": "finetune/train_zh_0.json",
                           "revision": "main", "commit": "abc123", "count": 100_000},
                "clean_records": 74_321, "files": {"train-900.jsonl": {"count": 900, "sha256": "f" * 64}}}
    cleaning = {"input_records": 100_000, "kept": 74_321,
                "rules": [{"rule": "duplicate", "dropped": 20_000}, {"rule": "normalise", "dropped": 0}]}
    return CardInputs(run=f"{method}-900", config=run_config, evaluation=evaluation,
                      base_evaluation=base if base_evaluated else None, manifest=manifest, cleaning=cleaning,
                      export=export)


def test_front_matter_parses_and_carries_the_runs_metrics():
    inputs = card_for()
    matter, _ = front_matter_and_body(card_text(inputs, MERGED))
    assert matter["base_model"] == "Qwen/Qwen2.5-3B-Instruct"
    assert matter["library_name"] == "transformers" and matter["language"] == ["zh"]
    assert matter["license"] == "other"
    assert matter["license_link"] == "https://huggingface.co/Qwen/Qwen2.5-3B-Instruct/blob/main/LICENSE"
    assert matter["datasets"] == ["shibing624/medical"] and "medical" in matter["tags"]
    qa, knowledge = matter["model-index"][0]["results"]
    values = {metric["type"]: metric["value"] for metric in qa["metrics"]}
    assert values == {name: round(stat["value"], METRICS[name].decimals)
                      for name, stat in inputs.evaluation["metrics"].items()}
    assert qa["dataset"]["type"] == "shibing624/medical" and qa["dataset"]["split"] == "test"
    assert knowledge["metrics"][0]["value"] == round(inputs.evaluation["mcq"]["overall"]["value"], 1)
    assert front_matter_and_body(card_text(inputs, ADAPTER))[0]["library_name"] == "peft"


def test_body_quotes_every_metric_with_its_interval_beside_the_base_model():
    inputs = card_for()
    _, body = front_matter_and_body(card_text(inputs, MERGED))
    rows = {line.split(" | ")[0].lstrip("| "): line for line in body.splitlines() if line.startswith("| ")}
    for name, stat in inputs.evaluation["metrics"].items():
        decimals = METRICS[name].decimals
        run_cell = f"{stat['value']:.{decimals}f} [{stat['ci_low']:.{decimals}f}, {stat['ci_high']:.{decimals}f}]"
        base = inputs.base_evaluation["metrics"][name]
        base_cell = f"{base['value']:.{decimals}f} [{base['ci_low']:.{decimals}f}, {base['ci_high']:.{decimals}f}]"
        assert f"| {run_cell} | {base_cell} |" in rows[METRICS[name].english]
    assert METRICS["mcq_accuracy"].english in rows  # the knowledge track, by letter
    assert "shibing624/medical, file finetune/train_zh_0.json at revision main, commit abc123" in body
    assert "74,321" in body and "duplicate 20,000" in body and "train-900.jsonl, 900 conversations" in body
    assert "| LoRA rank / alpha / dropout | 16 / 32 / 0.05 |" in body
    assert "| base model | Qwen/Qwen2.5-3B-Instruct at commit 9f8e7d |" in body
    assert "不构成医疗建议" in body and "not medical advice" in body
    assert "你是医学助手。" in body  # the system prompt it was trained with, in the usage example


def test_a_missing_base_evaluation_and_a_local_base_model_are_said_not_invented():
    _, body = front_matter_and_body(card_text(card_for(base_evaluated=False, base_model="models/tiny-qwen2"), MERGED))
    assert "(not evaluated: make eval-base)" in body
    matter, _ = front_matter_and_body(card_text(card_for(base_model="models/tiny-qwen2"), MERGED))
    assert "license_link" not in matter


@pytest.mark.parametrize("kind", [MERGED, ADAPTER])
def test_a_qlora_card_says_how_it_was_merged_or_how_to_load_it(kind):
    export = {"dtype": "bfloat16", "check": {"prompts": 8, "agreeing": 7, "device": "cuda", "dtype": "bfloat16"}}
    _, body = front_matter_and_body(card_text(card_for("qlora", export=export), kind))
    if kind == MERGED:
        assert "merged into the dequantised 16-bit base" in body and "never into 4-bit weights" in body
        assert "on 7 of 8 test prompts" in body
    else:
        assert "4-bit NF4" in body and "PeftModel.from_pretrained" in body


def test_cards_are_written_from_a_runs_files(tmp_path):
    run_dir = tmp_path / "runs" / "lora-900"
    (run_dir / "adapter").mkdir(parents=True)
    (tmp_path / "runs" / "base").mkdir()
    inputs = card_for()
    (run_dir / "config.json").write_text(json.dumps(inputs.config), encoding="utf-8")
    (run_dir / "eval.json").write_text(json.dumps(inputs.evaluation), encoding="utf-8")
    (tmp_path / "runs" / "base" / "eval.json").write_text(json.dumps(inputs.base_evaluation), encoding="utf-8")
    data = tmp_path / "data"
    data.mkdir()
    (data / "manifest.json").write_text(json.dumps(inputs.manifest), encoding="utf-8")
    read = card_inputs(run_dir, data)
    assert read.evaluation == inputs.evaluation and read.base_evaluation == inputs.base_evaluation
    assert read.cleaning is None  # absent: the card leaves the cleaning line out
    card = write_card(run_dir / "adapter", read, ADAPTER)
    matter, body = front_matter_and_body(card.read_text(encoding="utf-8"))
    assert matter["library_name"] == "peft" and "Cleaning:" not in body
