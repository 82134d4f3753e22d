"""The demo's base model: a tiny random-init Qwen2 with a tokenizer trained on the project's text.

    python -m lib tiny-model --out models/tiny-qwen2        (make tiny-model)

It has the architecture, special tokens and chat template of Qwen2.5-Instruct, so the training
and evaluation code that serves Qwen2.5-3B serves it unchanged; only its size differs:

    embeddings   6,000 vocab x 128 hidden               = 768k (tied with the output layer)
    per layer    attention 128x128 (q, o) + 2 x 128x64 (k, v: 2 of 4 heads) =  49k
                 MLP 3 x 128x384                        = 147k
    4 layers                                            = 786k      total ~1.6M parameters

A 6k vocabulary keeps the output softmax small: the full 151k Qwen vocabulary would be 20-35x
slower on a CPU. The tokenizer is byte-level BPE (Qwen2's pre-tokenizer), so any text encodes.
The same seed and text give byte-identical files.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path

from lib.io import atomic_write, write_json
from lib.model import READY_MARKER

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]


@dataclass(frozen=True)
class TinySpec:
    vocab_size: int = 6_000
    hidden_size: int = 128
    intermediate_size: int = 384
    num_hidden_layers: int = 4
    num_attention_heads: int = 4
    num_key_value_heads: int = 2
    max_position_embeddings: int = 2_048
    corpus_records: int = 20_000  # generated QA pairs the tokenizer is trained on
    seed: int = 0

    def shape(self) -> dict:
        """The Qwen2Config fields that fix the model's shape (lib.architecture records them for the memory plan)."""
        return {
            "vocab_size": self.vocab_size,
            "hidden_size": self.hidden_size,
            "intermediate_size": self.intermediate_size,
            "num_hidden_layers": self.num_hidden_layers,
            "num_attention_heads": self.num_attention_heads,
            "num_key_value_heads": self.num_key_value_heads,
            "max_position_embeddings": self.max_position_embeddings,
            "tie_word_embeddings": True,
        }


def training_text(spec: TinySpec):
    """The project's own text: questions and answers from the synthetic generator."""
    from lib.data.synthetic import corpus_text

    return corpus_text(spec.corpus_records, seed=spec.seed)


def train_tokenizer(texts, spec: TinySpec):
    """Byte-level BPE with Qwen2's normaliser and pre-tokenizer, wrapped as a Qwen2Tokenizer."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers import Qwen2Tokenizer
    from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX
    from trl.chat_template_utils import qwen2_5_training_chat_template

    tokenizer = Tokenizer(models.BPE())
    tokenizer.normalizer = normalizers.NFC()
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=spec.vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    trained = json.loads(tokenizer.to_str())["model"]
    qwen = Qwen2Tokenizer(
        vocab=trained["vocab"],
        merges=[tuple(pair) for pair in trained["merges"]],
        eos_token="<|im_end|>",  # Qwen2.5-Instruct ends a turn (and generation) with <|im_end|>
        pad_token="<|endoftext|>",
        unk_token=None,
        additional_special_tokens=["<|im_start|>", "<|im_end|>"],
        model_max_length=spec.max_position_embeddings,
    )
    # Qwen2.5's own template with {% generation %} markers around assistant turns, so the loss
    # mask covers exactly the assistant tokens (TRL swaps the same template in for Qwen2.5-3B).
    qwen.chat_template = qwen2_5_training_chat_template
    return qwen


def build_model(tokenizer, spec: TinySpec):
    import torch
    from transformers import GenerationConfig, Qwen2Config, Qwen2ForCausalLM

    end_of_turn = tokenizer.convert_tokens_to_ids("<|im_end|>")
    config = Qwen2Config(
        **(spec.shape() | {"vocab_size": len(tokenizer)}),  # the trained vocabulary, specials included
        # Qwen2's default 0.02 makes random logits nearly uniform, and the frozen embeddings keep
        # them so: LoRA alone could then barely move the loss. With 0.1 a token's logit can reach
        # 128 x 0.1 x ~1 = 13 nats above the rest, so the adapters have something to steer.
        initializer_range=0.1,
        bos_token_id=None,
        eos_token_id=end_of_turn,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(spec.seed)
    model = Qwen2ForCausalLM(config)
    model.generation_config = GenerationConfig(
        eos_token_id=[end_of_turn, tokenizer.pad_token_id],  # as Qwen2.5-Instruct: stop at either
        pad_token_id=tokenizer.pad_token_id,
        do_sample=False,
    )
    return model


def build(out: Path, spec: TinySpec = TinySpec()) -> Path:
    """Write the tokenizer and model to `out`; the ready marker is written last."""
    tokenizer = train_tokenizer(training_text(spec), spec)
    model = build_model(tokenizer, spec)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(out)
    model.save_pretrained(out, safe_serialization=True)
    parameters = sum(p.numel() for p in model.parameters())
    write_json(out / "build_info.json", {"spec": spec.__dict__, "parameters": parameters, "vocab": len(tokenizer)})
    with atomic_write(out / READY_MARKER) as handle:
        handle.write("built\n")
    return out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, required=True, help="output folder, e.g. models/tiny-qwen2")


def run(args: argparse.Namespace) -> None:
    out = build(args.out)
    print(f"tiny-model: wrote {out}")
