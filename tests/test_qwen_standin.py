"""What only a model like Qwen2.5-3B-Instruct can show, on its stand-in (lib/standin.py): its
real tokenizer and ids, its stock chat template (which TRL swaps for its training variant), its
generation_config.json (sampling and a 1.05 repetition penalty) and bf16 weights.

- the loss mask covers each answer and its <|im_end|>, and the test loss uses that mask;
- greedy answers do not depend on the model's generation config, and stop at <|im_end|>;
- LoRA's and QLoRA's adapters, and their optimizer state, stay fp32 when training in bf16;
- cloze scoring with Qwen's tokenizer and template: each option's log-probability, batched over a
  shared prompt cache, is that of a whole-sequence pass, and the letters are single tokens.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from lib.config import load_config
from lib.io import write_jsonl
from lib.standin import ENDOFTEXT, GENERATION_CONFIG, IM_END, REGULAR_TOKENS, SPECIAL_TOKENS

pytestmark = pytest.mark.slow

EXAMPLE = [
    {"role": "system", "content": "你是一名专业、严谨的医学助手。"},
    {"role": "user", "content": "头痛怎么办？"},
    {"role": "assistant", "content": "建议休息，必要时就医。"},
]
QUESTIONS = ("高血压患者能不能喝咖啡？", "孩子发烧三天了怎么办？", "糖尿病要注意什么饮食？", "胃痛吃什么药？")


def standin_config(standin: Path, method: str = "lora", *extra: str):
    return load_config("demo", method, overrides=[
        f"model.name_or_path={standin}", "train.report_to=none", "train.logging_steps=1", "train.eval_steps=100",
        "train.save_steps=100", "train.max_length=128", "eval.max_new_tokens=24", *extra])


def test_the_standin_is_qwen2_5_but_for_its_size(qwen_standin):
    from transformers import AutoConfig, AutoTokenizer, GenerationConfig
    from trl.chat_template_utils import qwen2_5_chat_template

    tokenizer = AutoTokenizer.from_pretrained(qwen_standin)
    assert len(tokenizer) == REGULAR_TOKENS + len(SPECIAL_TOKENS) == 151_665
    assert tokenizer.convert_tokens_to_ids(list(SPECIAL_TOKENS[:3])) == [151_643, 151_644, 151_645]
    assert (tokenizer.eos_token_id, tokenizer.pad_token_id) == (IM_END, ENDOFTEXT)
    assert tokenizer.chat_template == qwen2_5_chat_template  # the stock one: no generation markers
    config = AutoConfig.from_pretrained(qwen_standin)
    assert (config.vocab_size, config.tie_word_embeddings, config.eos_token_id) == (151_936, True, IM_END)
    assert config.rope_parameters["rope_theta"] == 1e6 and str(config.dtype).endswith("bfloat16")
    assert GenerationConfig.from_pretrained(qwen_standin).repetition_penalty == GENERATION_CONFIG["repetition_penalty"]


def test_the_loss_mask_is_each_answer_with_its_end_of_turn(qwen_standin, tmp_path):
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    from lib.prompts import assistant_tokens, loss_template

    tokenizer = AutoTokenizer.from_pretrained(qwen_standin)
    trainer = SFTTrainer(model=AutoModelForCausalLM.from_pretrained(qwen_standin), processing_class=tokenizer,
                         train_dataset=Dataset.from_list([{"messages": EXAMPLE}]),
                         args=SFTConfig(output_dir=str(tmp_path), assistant_only_loss=True, report_to="none",
                                        use_cpu=True, bf16=False, activation_checkpointing=False))
    row = trainer.train_dataset[0]
    mask = [int(label != -100) for label in row["labels"]]
    trained = tokenizer.decode([token for token, keep in zip(row["input_ids"], mask) if keep])
    assert trained == "\n建议休息，必要时就医。<|im_end|>\n"  # TRL's training template: the answer and its end
    # the test loss (lib.evaluate.likelihood) scores exactly these tokens
    assert assistant_tokens(tokenizer, EXAMPLE, None, loss_template(tokenizer)) == (list(row["input_ids"]), mask)


def generate(config, adapter_dir=None, questions=QUESTIONS):
    from lib.evaluate.generate import TransformersGenerator, study_decoding
    from lib.model import load_for_inference
    from lib.prompts import render_prompt

    tokenizer, model = load_for_inference(config, adapter_dir)
    prompts = [render_prompt(tokenizer, [EXAMPLE[0], {"role": "user", "content": q}]) for q in questions]
    generator = TransformersGenerator(model, tokenizer, study_decoding(config, tokenizer, model))
    return generator, prompts


def test_greedy_answers_do_not_depend_on_the_models_generation_config(qwen_standin):
    from transformers import GenerationConfig

    generator, prompts = generate(standin_config(qwen_standin))
    assert generator.decoding.stop_ids == (ENDOFTEXT, IM_END) and generator.decoding.repetition_penalty == 1.0
    # what generate() makes of our configuration and the model's file together (transformers fills
    # what a passed configuration leaves unset from the file): greedy, and no penalty
    used, _ = generator.model._prepare_generation_config(generator.generation_config)
    assert (used.do_sample, used.num_beams, used.repetition_penalty) == (False, 1, 1.0)
    assert used.eos_token_id == [ENDOFTEXT, IM_END] and used.max_new_tokens == 24
    # where generate(do_sample=False) alone would have applied the file's 1.05
    assert generator.model._prepare_generation_config(None, do_sample=False)[0].repetition_penalty == 1.05

    with_file = [a.text for a in generator.generate(prompts, batch_size=4, progress=False)]
    generator.model.generation_config = GenerationConfig()  # as if the model shipped none
    assert [a.text for a in generator.generate(prompts, batch_size=4, progress=False)] == with_file


def test_a_trained_answer_stops_at_im_end(qwen_standin, tmp_path):
    from lib.train import RunSpec, train

    answer = "多喝水，注意休息。"
    data = tmp_path / "data"
    record = {"id": "x", "source": "test", "messages": [EXAMPLE[0], {"role": "user", "content": QUESTIONS[0]},
                                                       {"role": "assistant", "content": answer}]}
    for name, copies in (("train-32.jsonl", 32), ("dev.jsonl", 4)):
        write_jsonl(data / name, [record] * copies)
    config = standin_config(qwen_standin, "lora", "train.learning_rate=1e-2", "train.epochs=4", "train.warmup_ratio=0")
    train(config, RunSpec("lora-32", "demo", "lora", "32", 32, 42), data, tmp_path / "run")

    generator, prompts = generate(config, tmp_path / "run" / "adapter", QUESTIONS[:1])
    [result] = generator.generate(prompts, batch_size=1, progress=False)
    assert result.text == answer and not result.hit_length_limit
    assert result.new_tokens == len(generator.tokenizer(answer)["input_ids"]) + 1  # the answer, then <|im_end|>


@pytest.mark.parametrize("method", ["lora", "qlora"])
def test_adapters_and_their_optimizer_state_stay_fp32_in_bf16(method, qwen_standin, standin_data, tmp_path):
    from safetensors.torch import load_file

    from lib.io import read_json
    from lib.train import RunSpec, train

    config = standin_config(qwen_standin, method, "model.dtype=bfloat16", "train.epochs=0.125", "train.save_steps=1")
    out = tmp_path / f"{method}-64"
    train(config, RunSpec(f"{method}-64", "demo", method, "64", 64, 42), standin_data, out)  # 1 step

    metrics = read_json(out / "train_metrics.json")
    assert (metrics["dtype"], metrics["adapter_dtype"]) == ("bfloat16", "float32")
    adapter = load_file(out / "adapter" / "adapter_model.safetensors")
    assert adapter and {tensor.dtype for tensor in adapter.values()} == {torch.float32}
    optimizer = torch.load(out / "checkpoints" / "checkpoint-1" / "optimizer.pt", weights_only=False)
    moments = [value for state in optimizer["state"].values()
               for name, value in state.items() if name.startswith("exp_avg")]
    assert moments and {moment.dtype for moment in moments} == {torch.float32}  # AdamW's, as its parameters


def test_cloze_and_letter_scoring_work_with_qwens_tokenizer_and_template(qwen_standin):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from builders import sequence_logprob
    from lib.data.general_facts import generate_general_mcq
    from lib.evaluate.multiple_choice import cloze_render, option_logprobs, score_mcq

    tokenizer = AutoTokenizer.from_pretrained(qwen_standin)
    model = AutoModelForCausalLM.from_pretrained(qwen_standin, dtype=torch.float32).eval()  # exact comparisons
    items = generate_general_mcq(6, seed=0)
    system = EXAMPLE[0]["content"]
    prompts = [tokenizer(cloze_render(tokenizer, item, system), add_special_tokens=False)["input_ids"]
               for item in items]
    assert all(tokenizer.decode(p).endswith("<|im_start|>assistant\n") for p in prompts)
    options = [[tokenizer(text, add_special_tokens=False)["input_ids"] for text in item["options"].values()]
               for item in items]
    batched = option_logprobs(model, prompts, options, tokenizer.pad_token_id)
    for prompt, item_options, got in zip(prompts, options, batched):
        assert got == pytest.approx([sequence_logprob(model, prompt, option) for option in item_options], abs=1e-3)
    scored = score_mcq(model, tokenizer, items, system, batch_size=4, progress=False)  # letters: one token each
    assert [set(s["letter_logprobs"]) for s in scored] == [set("ABCD")] * len(items)

