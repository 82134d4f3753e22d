"""Deterministic answers for the test set: greedy decoding, batched, two backends, one interface.

Both backends take the same rendered prompts (lib.prompts.render_prompt) and one `Decoding`: greedy,
at most max_new_tokens, stop at the end-of-turn tokens, built from the study's configuration and
never from the model's generation_config.json (Qwen2.5-3B-Instruct's asks for sampling and a
repetition penalty of 1.05, which `generate(do_sample=False)` would still apply and vLLM would not).
Each backend returns, per prompt, the answer text, the number of tokens generated and whether it
hit the length limit; eval.json records the decoding and the backend.

- TransformersGenerator (always): `generate` on left-padded batches of prompts of similar
  length (sorted by length, so little padding is computed); once half of a batch's answers have
  ended, the rest go on without them. Batched greedy decoding gives the same text as one prompt
  at a time (tests/evaluate/test_run.py) and is several times faster.
- VllmGenerator (a GPU with vLLM installed): the base model with the LoRA adapter attached per
  request, never merged (merging into a 4-bit base loses quality).
"""

from __future__ import annotations

import copy
import importlib.util
from dataclasses import dataclass

from tqdm import tqdm


@dataclass(frozen=True)
class Decoding:
    """Greedy decoding: at every step the most likely token, no sampling, no beams."""
    max_new_tokens: int
    stop_ids: tuple[int, ...]  # the first one generated ends the answer (lib.prompts.end_of_turn_ids)
    pad_id: int
    repetition_penalty: float  # 1.0: none (the study's eval.repetition_penalty)

    def generation_config(self):
        """transformers' GenerationConfig of this decoding, every value explicit: generate() fills
        only values left unset from the model's own generation_config.json, so none is left unset
        (the library's neutral defaults first, then the study's) but max_length, which
        max_new_tokens replaces (transformers warns at every call that sets both)."""
        from transformers import GenerationConfig

        neutral = GenerationConfig._get_default_generation_params()
        neutral.pop("max_length")
        return GenerationConfig(**neutral | {
            "do_sample": False, "num_beams": 1, "max_new_tokens": self.max_new_tokens,
            "repetition_penalty": self.repetition_penalty, "eos_token_id": list(self.stop_ids),
            "pad_token_id": self.pad_id, "bos_token_id": None,
        })

    def sampling_params(self):
        """vLLM's SamplingParams of this decoding (temperature 0 is vLLM's greedy)."""
        from vllm import SamplingParams

        return SamplingParams(temperature=0.0, top_p=1.0, top_k=-1, repetition_penalty=self.repetition_penalty,
                              max_tokens=self.max_new_tokens, stop_token_ids=list(self.stop_ids),
                              skip_special_tokens=True)

    def record(self, backend: str) -> dict:
        """What eval.json says of how its answers were written; runs are comparable only when
        these agree (lib.summarize.table checks it)."""
        return {"backend": backend, "strategy": "greedy", "max_new_tokens": self.max_new_tokens,
                "repetition_penalty": self.repetition_penalty, "stop_ids": list(self.stop_ids)}


def study_decoding(config, tokenizer, model) -> Decoding:
    """The configured decoding, stopping at the model's end-of-turn tokens."""
    from lib.prompts import end_of_turn_ids

    return Decoding(max_new_tokens=config.eval.max_new_tokens, stop_ids=tuple(end_of_turn_ids(tokenizer, model)),
                    pad_id=tokenizer.pad_token_id, repetition_penalty=config.eval.repetition_penalty)


def generation_batch_size(config, model, longest_prompt: int) -> int:
    """eval.generation_batch_size, or where it is null: on a CPU eval.batch_size; on a GPU the
    sequences whose key-value cache fits half the free memory, each
    2 (keys, values) x layers x kv heads x head dim x bytes x (prompt + max_new_tokens)
    (Qwen2.5-3B in bf16: 2 x 36 x 2 x 128 x 2 B = 36 KiB a token, 32 MiB for 900 tokens), rounded
    down to a power of two so that a restarted evaluation finds the same size and resumes."""
    import torch

    if config.eval.generation_batch_size is not None:
        return config.eval.generation_batch_size
    if not torch.cuda.is_available():
        return config.eval.batch_size
    shape = model.config
    head_dim = getattr(shape, "head_dim", None) or shape.hidden_size // shape.num_attention_heads
    per_token = 2 * shape.num_hidden_layers * shape.num_key_value_heads * head_dim * model.dtype.itemsize
    per_sequence = per_token * (longest_prompt + config.eval.max_new_tokens)
    fits = max(1, int(torch.cuda.mem_get_info()[0] / 2 // per_sequence))
    return 2 ** (fits.bit_length() - 1)


@dataclass
class Answer:
    text: str
    new_tokens: int
    hit_length_limit: bool


def length_sorted_batches(lengths: list[int], batch_size: int) -> list[list[int]]:
    """Indices grouped into batches of similar length, longest first (an OOM shows up at once)."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    return [order[start:start + batch_size] for start in range(0, len(order), batch_size)]


def left_padded(sequences: list[list[int]], pad_id: int):
    """(ids, attention_mask, position_ids) tensors of `sequences` padded on the left to the longest.

    Left padding ends every row at the last column, where the next token is predicted; position
    ids count from each row's first real token (0 on the padding), as for the row alone:
    [pad, pad, 7, 8] -> attention [0, 0, 1, 1], positions [0, 0, 0, 1].
    """
    import torch

    width = max(map(len, sequences))
    ids = torch.tensor([[pad_id] * (width - len(s)) + list(s) for s in sequences])
    attention = torch.tensor([[0] * (width - len(s)) + [1] * len(s) for s in sequences])
    positions = (attention.cumsum(dim=1) - 1).clamp(min=0)
    return ids, attention, positions


def at_most_half_writing(start: int, stop_ids):
    """A stopping criterion for generate(): True for every row, which ends the call, once at most
    half of the rows have written no end-of-turn token after column `start`."""
    import torch

    def stop(input_ids, scores, **kwargs):
        writing = ~torch.isin(input_ids[:, start:], stop_ids).any(dim=1)
        return torch.full_like(writing, 2 * int(writing.sum()) <= len(writing))

    return stop


class TransformersGenerator:
    name = "transformers"

    def __init__(self, model, tokenizer, decoding: Decoding):
        self.model = model
        self.tokenizer = tokenizer
        self.decoding = decoding
        self.generation_config = decoding.generation_config()

    def generate(self, prompts: list[str], batch_size: int, progress: bool = True, on_batch=None) -> list[Answer]:
        """Answers in prompt order; `on_batch(indices, answers)` sees each batch as it finishes."""
        encoded = [self.tokenizer(prompt, add_special_tokens=False)["input_ids"] for prompt in prompts]
        answers: list[Answer | None] = [None] * len(prompts)
        batches = length_sorted_batches([len(ids) for ids in encoded], batch_size)
        for batch in tqdm(batches, desc="generate", unit="batch", disable=not progress):
            done = [self._answer(tokens) for tokens in self._new_tokens([encoded[i] for i in batch])]
            for index, answer in zip(batch, done):
                answers[index] = answer
            if on_batch is not None:
                on_batch(batch, done)
        return answers

    def _new_tokens(self, prompts: list[list[int]]) -> list[list[int]]:
        """The tokens written after each prompt of one batch (after an end of turn: padding).

        generate() computes every row of a batch until its longest answer ends, and a step costs
        more the more rows it has. How long an answer will be is not known before it is written: the
        tiny model's answers to bench-generation's 200 questions have a median of 44 tokens and 18
        at the 128-token limit, and their lengths correlate negatively with the prompt's (-0.32)
        and the reference answer's (-0.28; a user's question has none), so sorting by either leaves
        a limit-length answer in every batch of 50. Instead, once at most half of a batch's rows
        still write, those go on as a batch of their own with their key-value cache (no token is
        computed twice), and so on: the few long answers of a batch of 50 run their last steps a
        few rows wide, not 50. Each row's tokens are computed as before, only beside fewer rows."""
        import torch
        from transformers import StoppingCriteriaList

        device = self.model.device
        stop_ids = torch.tensor(self.decoding.stop_ids, device=device)
        # left padding: the new tokens of every row then start at one column
        ids, attention, _ = left_padded(prompts, self.tokenizer.pad_token_id)
        ids, attention = ids.to(device), attention.to(device)
        written: list[list[int]] = [[] for _ in prompts]
        rows = list(range(len(prompts)))  # those still writing: ids, attention and cache hold these
        cache = None
        while rows:
            start = ids.shape[1]
            settings = copy.deepcopy(self.generation_config)
            settings.update(max_new_tokens=self.decoding.max_new_tokens - len(written[rows[0]]),
                            return_dict_in_generate=True)
            split = StoppingCriteriaList([at_most_half_writing(start, stop_ids)] if len(rows) > 1 else [])
            with torch.inference_mode():
                output = self.model.generate(input_ids=ids, attention_mask=attention, past_key_values=cache,
                                             generation_config=settings, stopping_criteria=split)
            new = output.sequences[:, start:]
            for row, tokens in zip(rows, new.tolist()):
                written[row] += tokens
            going = [place for place, row in enumerate(rows)
                     if self._end(written[row]) is None and len(written[row]) < self.decoding.max_new_tokens]
            rows = [rows[place] for place in going]
            if rows:
                # the cache holds every token but the last one written, which the next call reads first
                keep = torch.tensor(going, device=device)
                cache = output.past_key_values
                cache.batch_select_indices(keep)
                ids = output.sequences[keep]
                attention = torch.cat([attention[keep], torch.ones_like(new[keep])], dim=1)
        return written

    def _end(self, tokens: list[int]) -> int | None:
        """Where the answer in `tokens` ends: the position after its first end-of-turn token, if any."""
        return next((position + 1 for position, token in enumerate(tokens) if token in self.decoding.stop_ids), None)

    def _answer(self, tokens: list[int]) -> Answer:
        end = self._end(tokens)
        length = end if end is not None else len(tokens)
        text = self.tokenizer.decode(tokens[:length], skip_special_tokens=True).strip()
        return Answer(text=text, new_tokens=length,
                      hit_length_limit=end is None and length >= self.decoding.max_new_tokens)


class VllmGenerator:
    name = "vllm"

    def __init__(self, base_location: str, adapter_dir: str | None, decoding: Decoding, dtype: str, quantized: bool,
                 max_lora_rank: int):
        from vllm import LLM

        self.llm = LLM(
            model=base_location,
            dtype=dtype,
            quantization="bitsandbytes" if quantized else None,
            enable_lora=adapter_dir is not None,
            max_lora_rank=max_lora_rank,
            seed=0,
            generation_config="vllm",  # vLLM's neutral defaults, not the model's generation_config.json
        )
        self.adapter_dir = adapter_dir
        self.decoding = decoding

    def generate(self, prompts: list[str], batch_size: int, progress: bool = True, on_batch=None) -> list[Answer]:
        from vllm.lora.request import LoRARequest

        lora = LoRARequest("adapter", 1, self.adapter_dir) if self.adapter_dir else None
        outputs = self.llm.generate(prompts, self.decoding.sampling_params(), lora_request=lora, use_tqdm=progress)
        answers = [Answer(text=o.outputs[0].text.strip(), new_tokens=len(o.outputs[0].token_ids),
                          hit_length_limit=o.outputs[0].finish_reason == "length") for o in outputs]
        if on_batch is not None:
            on_batch(list(range(len(prompts))), answers)
        return answers


def vllm_usable() -> bool:
    import torch

    return importlib.util.find_spec("vllm") is not None and torch.cuda.is_available()


def choose_backend(setting: str, option: str = "eval.backend=") -> str:
    """auto -> vllm where it can run, else transformers; an explicit vllm that cannot run is an
    error naming `option`, the setting it came from (eval.backend=, or serve's "--backend ")."""
    from lib.errors import UserError

    if setting == "auto":
        return "vllm" if vllm_usable() else "transformers"
    if setting == "vllm" and not vllm_usable():
        raise UserError(f"{option}vllm needs a GPU and the vllm package (pip install -e '.[vllm]'); "
                        f"use {option}transformers")
    if setting not in ("vllm", "transformers"):
        raise UserError(f"{option}{setting!r}: expected auto, transformers or vllm")
    return setting
