"""Evaluation: batched generation, determinism, coverage of the test set, bad inputs, the chat CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from builders import REPO_ROOT, demo_overrides
from lib.config import load_config
from lib.errors import UserError
from lib.io import read_json, read_jsonl, sha256_file
from lib.runs import MCQ_PREDICTIONS

pytestmark = pytest.mark.slow


@pytest.fixture
def trained_run(lora_run) -> Path:
    """The session's LoRA run on 64 examples (conftest.py), which export and serve share: enough
    to move the adapter away from zero."""
    return lora_run


def eval_config(tiny_model, method="lora"):
    return load_config("demo", method, overrides=demo_overrides(tiny_model))


def test_batched_generation_gives_the_answers_of_one_by_one(tiny_model, demo_data):
    from lib.evaluate.generate import TransformersGenerator, study_decoding
    from lib.model import load_for_inference
    from lib.prompts import prompt_messages, render_prompt

    config = eval_config(tiny_model)
    tokenizer, model = load_for_inference(config)
    test = list(read_jsonl(demo_data / "test.jsonl"))[:12]
    prompts = [render_prompt(tokenizer, prompt_messages(r["messages"])) for r in test]
    generator = TransformersGenerator(model, tokenizer, study_decoding(config, tokenizer, model))
    batched = generator.generate(prompts, batch_size=6, progress=False)
    single = generator.generate(prompts, batch_size=1, progress=False)
    assert [a.text for a in batched] == [a.text for a in single]
    assert [a.new_tokens for a in batched] == [a.new_tokens for a in single]
    assert all(a.hit_length_limit == (a.new_tokens == 16) for a in batched)  # random model: rarely stops


def test_a_batch_goes_on_without_its_finished_rows_with_the_answers_of_one_by_one(tiny_model, demo_data, monkeypatch):
    from lib.evaluate.generate import TransformersGenerator, study_decoding
    from lib.model import load_for_inference
    from lib.prompts import prompt_messages, render_prompt

    config = load_config("demo", "lora", overrides=demo_overrides(tiny_model, "eval.max_new_tokens=96"))
    tokenizer, model = load_for_inference(config)
    test = list(read_jsonl(demo_data / "test.jsonl"))[:16]
    prompts = [render_prompt(tokenizer, prompt_messages(r["messages"])) for r in test]
    generator = TransformersGenerator(model, tokenizer, study_decoding(config, tokenizer, model))
    widths = []  # the rows of each generate() call
    generate = model.generate

    def counted(**kwargs):
        widths.append(len(kwargs["input_ids"]))
        return generate(**kwargs)

    monkeypatch.setattr(model, "generate", counted)
    batched = generator.generate(prompts, batch_size=16, progress=False)
    lengths = sorted(answer.new_tokens for answer in batched)
    assert lengths[0] * 2 < lengths[-1]  # answers that end apart, as the pretrained model writes them
    # once at most half of the rows still write, those go on alone, until every one has ended
    assert widths[0] == 16 and len(widths) > 1
    assert all(0 < after <= before / 2 for before, after in zip(widths, widths[1:]))
    single = generator.generate(prompts, batch_size=1, progress=False)
    assert [(a.text, a.new_tokens, a.hit_length_limit) for a in batched] == \
        [(a.text, a.new_tokens, a.hit_length_limit) for a in single]


def test_generation_sets_one_length_limit(tiny_model, demo_data, caplog, monkeypatch):
    # transformers warns at every generate call whose configuration sets max_length beside max_new_tokens
    import logging

    from lib.evaluate.generate import TransformersGenerator, study_decoding
    from lib.model import load_for_inference
    from lib.prompts import prompt_messages, render_prompt

    config = eval_config(tiny_model)
    tokenizer, model = load_for_inference(config)
    test = list(read_jsonl(demo_data / "test.jsonl"))[:2]
    prompts = [render_prompt(tokenizer, prompt_messages(r["messages"])) for r in test]
    generator = TransformersGenerator(model, tokenizer, study_decoding(config, tokenizer, model))
    # transformers' loggers stop at their own handler: on to caplog's (after loading, which sets them up)
    monkeypatch.setattr(logging.getLogger("transformers"), "propagate", True)
    with caplog.at_level(logging.WARNING):
        answers = generator.generate(prompts, batch_size=2, progress=False)
    assert [record.getMessage() for record in caplog.records if "max_length" in record.getMessage()] == []
    assert max(answer.new_tokens for answer in answers) <= config.eval.max_new_tokens


def test_a_lora_adapter_merged_for_generation_gives_the_answers_of_the_unmerged_one(trained_run, tiny_model, demo_data):
    from lib.evaluate.generate import TransformersGenerator, study_decoding
    from lib.model import load_for_inference
    from lib.prompts import prompt_messages, render_prompt

    config = eval_config(tiny_model)
    tokenizer, model = load_for_inference(config, trained_run / "adapter")
    test = list(read_jsonl(demo_data / "test.jsonl"))[:16]
    prompts = [render_prompt(tokenizer, prompt_messages(r["messages"])) for r in test]
    decoding = study_decoding(config, tokenizer, model)
    unmerged = TransformersGenerator(model, tokenizer, decoding).generate(prompts, batch_size=8, progress=False)
    merged = TransformersGenerator(model.merge_and_unload(), tokenizer, decoding).generate(prompts, 8, progress=False)
    assert [a.text for a in merged] == [a.text for a in unmerged]


def test_evaluating_twice_gives_identical_predictions_and_metrics(trained_run, tiny_model, demo_data):
    from lib.evaluate.run import evaluate

    first = evaluate(eval_config(tiny_model), trained_run, demo_data)
    predictions = (trained_run / "predictions.jsonl").read_bytes()
    # what the scores were made from: a run evaluated on the same inputs is not evaluated again
    assert first["inputs"]["data"]["test.jsonl"] == sha256_file(demo_data / "test.jsonl")
    assert first["inputs"]["adapter"] == sha256_file(trained_run / "adapter" / "adapter_model.safetensors")
    written = (trained_run / "eval.json").read_bytes()
    assert evaluate(eval_config(tiny_model), trained_run, demo_data)["inputs"] == first["inputs"]
    assert (trained_run / "eval.json").read_bytes() == written
    # each knowledge-track item's answer, which the summary's MCQ trend resamples
    answers = list(read_jsonl(trained_run / MCQ_PREDICTIONS))
    assert [a["id"] for a in answers] == [item["id"] for item in read_jsonl(demo_data / "mcq.jsonl")]
    assert 100 * np.mean([a["correct"]["letter"] for a in answers]) == pytest.approx(first["mcq"]["overall"]["value"])
    (trained_run / MCQ_PREDICTIONS).unlink()  # an evaluation without its per-item answers is done again
    second = evaluate(eval_config(tiny_model), trained_run, demo_data)
    assert list(read_jsonl(trained_run / MCQ_PREDICTIONS)) == answers
    assert (trained_run / "predictions.jsonl").read_bytes() == predictions
    assert first["metrics"] == second["metrics"]
    assert first["mcq"] == second["mcq"] and first["mcq"]["overall"]["n"] == 40
    # both tracks, each scored by letter and by option text (cloze), every item's results kept
    for track in ("mcq", "general"):
        assert {"overall", "acc", "acc_norm", "chance", "items"} <= set(first[track])
        assert first[track]["acc_norm"]["n"] == 40 and first[track]["chance"] == 25.0
        assert len(first[track]["items"]) == 40
    assert first["inputs"]["data"]["general.jsonl"] == sha256_file(demo_data / "general.jsonl")
    # a LoRA run generates with its adapter merged; on a CPU as many at once as eval.batch_size
    assert first["generation"]["merged_adapter"] is True
    assert first["generation"]["batch_size"] == eval_config(tiny_model).eval.batch_size

    test_ids = [r["id"] for r in read_jsonl(demo_data / "test.jsonl")]
    rows = list(read_jsonl(trained_run / "predictions.jsonl"))
    assert [row["id"] for row in rows] == test_ids  # every test item, in test-file order
    saved = read_json(trained_run / "eval.json")
    assert saved["n_items"] == len(test_ids)
    # the test loss is the token-weighted mean of the items' losses, as the summary recomputes it
    tokens = sum(row["scores"]["ref_tokens"] for row in rows)
    weighted = sum(row["scores"]["loss"] * row["scores"]["ref_tokens"] for row in rows) / tokens
    assert saved["metrics"]["test_loss"]["value"] == pytest.approx(weighted, rel=1e-9)
    low, high = saved["metrics"]["rougeL"]["ci_low"], saved["metrics"]["rougeL"]["ci_high"]
    assert low <= saved["metrics"]["rougeL"]["value"] <= high
    assert not (trained_run / "predictions.partial.jsonl").exists()


def test_an_interrupted_generation_keeps_its_finished_answers(trained_run, tiny_model, demo_data, capsys):
    from lib.evaluate.generate import TransformersGenerator
    from lib.evaluate.run import evaluate

    evaluate(eval_config(tiny_model), trained_run, demo_data)
    expected = (trained_run / "predictions.jsonl").read_bytes()
    (trained_run / "eval.json").unlink()  # else the run is evaluated on these inputs already: nothing to redo
    original = TransformersGenerator.generate

    def crash_after_first_batch(self, prompts, batch_size, progress=True, on_batch=None):
        def then_crash(batch, answers):
            on_batch(batch, answers)
            raise KeyboardInterrupt
        return original(self, prompts, batch_size, progress, then_crash)

    TransformersGenerator.generate = crash_after_first_batch
    try:
        with pytest.raises(KeyboardInterrupt):
            evaluate(eval_config(tiny_model), trained_run, demo_data)
    finally:
        TransformersGenerator.generate = original
    assert (trained_run / "predictions.partial.jsonl").is_file()
    evaluate(eval_config(tiny_model), trained_run, demo_data)
    assert "answers kept from an interrupted run" in capsys.readouterr().out
    assert (trained_run / "predictions.jsonl").read_bytes() == expected


def test_an_adapter_of_another_base_model_is_refused(trained_run, tiny_model, tmp_path):
    from lib.model import check_adapter_base

    check_adapter_base(trained_run / "adapter", str(tiny_model))  # its own base: fine
    refused = "trained on .*tiny-qwen2[^,]*, but the configured base model is Qwen/Qwen2.5-3B"
    with pytest.raises(UserError, match=refused):
        check_adapter_base(trained_run / "adapter", "Qwen/Qwen2.5-3B-Instruct")


def test_bad_evaluation_inputs_get_one_line(trained_run, tiny_model, demo_data, tmp_path):
    from lib.evaluate.run import evaluate

    with pytest.raises(UserError, match=r"lora-1k: the run has not finished training.*make exp-lora-1k"):
        evaluate(eval_config(tiny_model), tmp_path / "lora-1k", demo_data)
    broken = tmp_path / "data"
    broken.mkdir()
    (broken / "test.jsonl").write_text(json.dumps({"id": "a", "question": "头痛？"}, ensure_ascii=False) + "\n")
    with pytest.raises(UserError, match=r"test.jsonl:1: the record has no `messages` list"):
        evaluate(eval_config(tiny_model), trained_run, broken)


def test_the_nf4_base_is_evaluated_in_4_bits_without_an_adapter(tiny_model, demo_data, tmp_path, run_cli):
    run_dir = tmp_path / "base-nf4"
    sixteen_bit = [arg for o in demo_overrides(tiny_model) for arg in ("--set", o)]
    refused = run_cli("evaluate", "--profile", "demo", "--run-dir", run_dir, "--data", demo_data, *sixteen_bit)
    assert refused.returncode != 0 and "load it with --method qlora" in refused.stderr

    from lib.evaluate.run import evaluate

    result = evaluate(eval_config(tiny_model, "qlora"), run_dir, demo_data)
    assert result["run"] == "base-nf4" and result["mcq"]["overall"]["n"] == 40
    assert read_json(run_dir / "eval.json")["metrics"]["test_loss"]["value"] > 0
    assert result["provenance"]["config"]["quantization"]["load_in_4bit"] is True
    assert not (run_dir / "adapter").exists()


def test_chat_streams_an_answer_and_leaves_at_end_of_input(trained_run, tiny_model):
    command = [sys.executable, "-m", "lib", "chat", "--profile", "demo", "--method", "lora", "--run-dir",
               str(trained_run)] + [arg for o in demo_overrides(tiny_model) for arg in ("--set", o)]
    finished = subprocess.run(command, cwd=REPO_ROOT, input="头痛怎么办？\n/reset\n发烧了怎么办？\n",
                              capture_output=True, text=True, timeout=120)
    assert finished.returncode == 0, finished.stderr[-2000:]
    assert finished.stdout.count("助手: ") == 2
    assert "你: 头痛怎么办？" in finished.stdout


def test_the_vllm_backend_gets_the_same_prompts_and_decoding(trained_run, tiny_model, demo_data, monkeypatch):
    """vLLM needs a GPU, so here a stand-in module records what the backend asks of it."""
    import types

    from lib.evaluate import run as evaluation

    asked = {}

    class LLM:
        def __init__(self, **settings):
            asked["settings"] = settings

        def generate(self, prompts, params, lora_request=None, use_tqdm=True):
            asked.update(prompts=prompts, params=params, lora=lora_request)
            done = types.SimpleNamespace(text=" 答案", token_ids=[1, 2], finish_reason="stop")
            return [types.SimpleNamespace(outputs=[done]) for _ in prompts]

    vllm = types.ModuleType("vllm")
    vllm.LLM, vllm.SamplingParams = LLM, lambda **params: params
    lora = types.ModuleType("vllm.lora.request")
    lora.LoRARequest = lambda name, number, path: path
    monkeypatch.setitem(sys.modules, "vllm", vllm)
    monkeypatch.setitem(sys.modules, "vllm.lora", types.ModuleType("vllm.lora"))
    monkeypatch.setitem(sys.modules, "vllm.lora.request", lora)

    seen = {}
    original = evaluation.generate_resumably

    def record(generator, prompts, settings, run_dir):
        seen.setdefault(generator.name, prompts)
        return original(generator, prompts, settings, run_dir)

    monkeypatch.setattr(evaluation, "generate_resumably", record)
    monkeypatch.setattr("lib.evaluate.generate.vllm_usable", lambda: True)
    evaluation.evaluate(load_config("demo", "lora", overrides=demo_overrides(tiny_model, "eval.backend=vllm")),
                        trained_run, demo_data)
    evaluation.evaluate(eval_config(tiny_model), trained_run, demo_data)

    assert seen["vllm"] == seen["transformers"] == asked["prompts"]  # one rendering for both backends
    assert asked["params"]["temperature"] == 0.0 and asked["params"]["max_tokens"] == 16
    from transformers import AutoTokenizer

    end_of_turn = AutoTokenizer.from_pretrained(tiny_model).convert_tokens_to_ids("<|im_end|>")
    assert end_of_turn in asked["params"]["stop_token_ids"]
    assert asked["lora"] == str(trained_run / "adapter")  # attached per request, never merged


def test_answers_kept_from_an_interruption_belong_to_the_same_questions(tmp_path):
    """A partial file written for other questions (another test set, say) is not reused."""
    from lib.evaluate.generate import Answer
    from lib.evaluate.run import generate_resumably

    class Echo:  # answers with its prompt, so a reused answer would show
        name = "echo"

        def generate(self, prompts, batch_size, progress=True, on_batch=None):
            answers = [Answer(prompt, 1, False) for prompt in prompts]
            on_batch(list(range(len(prompts))), answers)
            return answers

    settings = {"decoding": {"backend": "echo", "max_new_tokens": 4}, "batch_size": 2}
    assert [a.text for a in generate_resumably(Echo(), ["问一", "问二"], settings, tmp_path)] == ["问一", "问二"]
    assert [a.text for a in generate_resumably(Echo(), ["问三", "问四"], settings, tmp_path)] == ["问三", "问四"]
