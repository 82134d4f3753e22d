"""The demo's base model: a tiny Qwen2, pretrained on the project's own medical prose and general facts.

    python -m lib tiny-model --out models/tiny-qwen2        (make tiny-model; ~2 minutes, once)

It has the architecture, special tokens and chat template of Qwen2.5-Instruct, so the training
and evaluation code that serves Qwen2.5-3B serves it unchanged; only its size differs:

    embeddings   ~2,500 vocab x 128 hidden              = 320k (tied with the output layer)
    per layer    attention 128x128 (q, o) + 2 x 128x64 (k, v: 2 of 4 heads) =  49k
                 MLP 3 x 128x384                        = 147k
    4 layers                                            = 786k      total ~1.1M parameters

Like a real base model it is pretrained before anyone fine-tunes it: next-token loss on pages
of a generated health encyclopedia and of patients' forum questions (lib.data.synthetic.
pretraining_pages), with short pages of general facts among them (geography, history, science:
lib.data.general_facts, what the general-ability track asks and the fine-tuning data never
mentions), ~640k tokens in about 100 s on 2 CPU cores. It then writes fluent pages about
the diseases, but it has never seen a question answered: answering in the data's format is what
the study's fine-tuning teaches it. The tokenizer is byte-level BPE (Qwen2's pre-tokenizer, so
any text encodes) trained on the same pages, so every token the model can write was trained.
The same seed gives byte-identical files; build_info.json and README.md say how it was made.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path

from lib.architecture import TINY
from lib.io import atomic_write, write_json
from lib.model import READY_MARKER

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]


@dataclass(frozen=True)
class TinySpec:
    """The model's shape (by default lib.architecture.TINY, which the memory plan sizes) and its pretraining."""
    vocab_size: int = TINY.vocab_size
    hidden_size: int = TINY.hidden_size
    intermediate_size: int = TINY.intermediate_size
    num_hidden_layers: int = TINY.num_hidden_layers
    num_attention_heads: int = TINY.num_attention_heads
    num_key_value_heads: int = TINY.num_key_value_heads
    max_position_embeddings: int = TINY.max_position_embeddings
    seed: int = 0
    # The tokenizer and the pretraining read the same pages (lib.data.synthetic.pretraining_pages),
    # so that every token the model can write has been trained. Pretraining takes steps of
    # `pretrain_batch` rows of `pretrain_block` tokens.
    pretrain_pages: int = 3_000
    # pages of general facts (lib.data.general_facts), spread among the medical ones: what the
    # general-ability track asks, ~6% of the tokens (1,200 pages of ~30 tokens beside ~600k)
    general_pages: int = 1_200
    pretrain_steps: int = 320
    pretrain_batch: int = 16
    pretrain_block: int = 128
    pretrain_learning_rate: float = 3e-3

    def shape(self) -> dict:
        """The Qwen2Config fields that fix the model's shape."""
        return {
            "vocab_size": self.vocab_size,
            "hidden_size": self.hidden_size,
            "intermediate_size": self.intermediate_size,
            "num_hidden_layers": self.num_hidden_layers,
            "num_attention_heads": self.num_attention_heads,
            "num_key_value_heads": self.num_key_value_heads,
            "max_position_embeddings": self.max_position_embeddings,
            "tie_word_embeddings": TINY.tie_word_embeddings,
        }


def pages(spec: TinySpec) -> list[str]:
    """The pretraining text: each page between the chat template's own markers, its title on the
    first line. The base learns what <|im_start|> and <|im_end|> delimit, as Qwen2.5's base model
    has, but no page is a question with its answer. The general pages are spread evenly among the
    medical ones: each kind in its own order, merged by position within its kind (page i of n at i / n)."""
    from lib.data.general_facts import general_pages
    from lib.data.synthetic import pretraining_pages

    medical = pretraining_pages(spec.pretrain_pages, spec.seed)
    general = general_pages(spec.general_pages, spec.seed)
    placed = [(i / len(medical), 0, page) for i, page in enumerate(medical)] + \
             [((j + 0.5) / len(general), 1, page) for j, page in enumerate(general)]
    return [f"<|im_start|>{title}\n{text}<|im_end|>\n" for _, _, (title, text) in sorted(placed)]


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
        # At most two Chinese characters (3 bytes each) a token, as in Qwen's vocabulary: trained on
        # a small templated corpus, BPE would otherwise merge whole phrases into single tokens that
        # any other wording splits into rarely seen pieces.
        max_token_length=6,
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


def pretraining_blocks(tokenizer, texts: list[str], spec: TinySpec):
    """The pages as one token stream, cut into rows of `pretrain_block` tokens (the remainder is dropped)."""
    import torch

    stream = [token for page in texts for token in tokenizer(page)["input_ids"]]
    rows = len(stream) // spec.pretrain_block
    return torch.tensor(stream[:rows * spec.pretrain_block]).view(rows, spec.pretrain_block)


def pretrain(model, tokenizer, texts: list[str], spec: TinySpec) -> dict:
    """Next-token training on prose about the diseases, so that the base, like a real one, writes
    fluent domain text and knows the facts, but has never seen a question answered in chat form."""
    import torch
    from tqdm import tqdm
    from transformers import get_cosine_schedule_with_warmup

    blocks = pretraining_blocks(tokenizer, texts, spec)
    generator = torch.Generator().manual_seed(spec.seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=spec.pretrain_learning_rate, betas=(0.9, 0.95),
                                  weight_decay=0.1)
    schedule = get_cosine_schedule_with_warmup(optimizer, spec.pretrain_steps // 20, spec.pretrain_steps)
    model.train()
    losses = []
    for _ in (progress := tqdm(range(spec.pretrain_steps), desc="pretrain tiny-qwen2")):
        batch = blocks[torch.randint(len(blocks), (spec.pretrain_batch,), generator=generator)]
        loss = model(input_ids=batch, labels=batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad()
        losses.append(loss.item())
        progress.set_postfix(loss=f"{loss.item():.3f}", refresh=False)
    model.eval()
    tenth = max(1, len(losses) // 10)
    return {"corpus": "lib.data.synthetic.pretraining_pages + lib.data.general_facts.general_pages",
            "pages": spec.pretrain_pages + spec.general_pages,
            "corpus_tokens": blocks.numel(), "steps": spec.pretrain_steps,
            "tokens_seen": spec.pretrain_steps * spec.pretrain_batch * spec.pretrain_block,
            "first_loss": round(sum(losses[:tenth]) / tenth, 4),  # mean of the first and last tenth of the steps
            "final_loss": round(sum(losses[-tenth:]) / tenth, 4)}


def model_card(spec: TinySpec, parameters: int, vocab: int, pretraining: dict) -> str:
    return (f"# tiny-qwen2\n\nThe demo's base model, built by `make tiny-model` (lib/tiny_model.py): a Qwen2 "
            f"of {parameters:,} parameters with a {vocab:,}-token byte-level BPE vocabulary and Qwen2.5-Instruct's "
            f"special tokens and chat template, pretrained for {pretraining['steps']} steps "
            f"({pretraining['tokens_seen']:,} tokens) on {pretraining['pages']:,} generated pages "
            f"({pretraining['corpus']}, seed {spec.seed}); next-token loss {pretraining['first_loss']} -> "
            f"{pretraining['final_loss']}. It has never seen a question answered. Its knowledge is the "
            f"project's generated text; it says nothing about medicine.\n")


def build(out: Path, spec: TinySpec = TinySpec()) -> Path:
    """Write the tokenizer and model to `out`; the ready marker is written last."""
    texts = pages(spec)
    tokenizer = train_tokenizer(texts, spec)
    model = build_model(tokenizer, spec)
    pretraining = pretrain(model, tokenizer, texts, spec)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(out)
    model.save_pretrained(out, safe_serialization=True)
    parameters = sum(p.numel() for p in model.parameters())
    write_json(out / "build_info.json", {"spec": spec.__dict__, "parameters": parameters, "vocab": len(tokenizer),
                                         "pretraining": pretraining})
    (out / "README.md").write_text(model_card(spec, parameters, len(tokenizer), pretraining), encoding="utf-8")
    with atomic_write(out / READY_MARKER) as handle:
        handle.write("built\n")
    return out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, required=True, help="output folder, e.g. models/tiny-qwen2")


def run(args: argparse.Namespace) -> None:
    out = build(args.out)
    print(f"tiny-model: wrote {out}")
