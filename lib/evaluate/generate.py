"""Deterministic answers for the test set: greedy decoding, batched, two backends, one interface.

Both backends take the same rendered prompts (lib.prompts.render_prompt) and the same decoding
settings: greedy, at most max_new_tokens, stop at the end-of-turn token. Each returns, per
prompt, the answer text, the number of tokens generated and whether it hit the length limit.

- TransformersGenerator (always): `generate` on left-padded batches of prompts of similar
  length (sorted by length, so little padding is computed). Batched greedy decoding gives the
  same text as one prompt at a time (tests/test_evaluate.py) and is several times faster.
- VllmGenerator (a GPU with vLLM installed): the base model with the LoRA adapter attached per
  request, never merged (merging into a 4-bit base loses quality).
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass

from tqdm import tqdm


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


class TransformersGenerator:
    name = "transformers"

    def __init__(self, model, tokenizer, stop_ids: list[int]):
        self.model = model
        self.tokenizer = tokenizer
        self.stop_ids = stop_ids

    def generate(self, prompts: list[str], max_new_tokens: int, batch_size: int, progress: bool = True,
                 on_batch=None) -> list[Answer]:
        """Answers in prompt order; `on_batch(indices, answers)` sees each batch as it finishes."""
        import torch

        encoded = [self.tokenizer(prompt, add_special_tokens=False)["input_ids"] for prompt in prompts]
        answers: list[Answer | None] = [None] * len(prompts)
        batches = length_sorted_batches([len(ids) for ids in encoded], batch_size)
        for batch in tqdm(batches, desc="generate", unit="batch", disable=not progress):
            # left padding: the new tokens of every row then start at one column
            ids, attention, _ = left_padded([encoded[i] for i in batch], self.tokenizer.pad_token_id)
            with torch.inference_mode():
                output = self.model.generate(
                    input_ids=ids.to(self.model.device),
                    attention_mask=attention.to(self.model.device),
                    max_new_tokens=max_new_tokens,
                    do_sample=False,
                    eos_token_id=self.stop_ids,
                    pad_token_id=self.tokenizer.pad_token_id,
                )
            new = output[:, ids.shape[1]:].tolist()
            done = [self._answer(tokens, max_new_tokens) for tokens in new]
            for index, answer in zip(batch, done):
                answers[index] = answer
            if on_batch is not None:
                on_batch(batch, done)
        return answers

    def _answer(self, tokens: list[int], max_new_tokens: int) -> Answer:
        stops = [position for position, token in enumerate(tokens) if token in self.stop_ids]
        length = stops[0] + 1 if stops else len(tokens)
        text = self.tokenizer.decode(tokens[:length], skip_special_tokens=True).strip()
        return Answer(text=text, new_tokens=length, hit_length_limit=not stops and length >= max_new_tokens)


class VllmGenerator:
    name = "vllm"

    def __init__(self, base_location: str, adapter_dir: str | None, stop_ids: list[int], dtype: str, quantized: bool,
                 max_lora_rank: int):
        from vllm import LLM

        self.llm = LLM(
            model=base_location,
            dtype=dtype,
            quantization="bitsandbytes" if quantized else None,
            enable_lora=adapter_dir is not None,
            max_lora_rank=max_lora_rank,
            seed=0,
        )
        self.adapter_dir = adapter_dir
        self.stop_ids = stop_ids

    def generate(self, prompts: list[str], max_new_tokens: int, batch_size: int, progress: bool = True,
                 on_batch=None) -> list[Answer]:
        from vllm import SamplingParams
        from vllm.lora.request import LoRARequest

        params = SamplingParams(temperature=0.0, max_tokens=max_new_tokens, stop_token_ids=self.stop_ids,
                                skip_special_tokens=True)
        lora = LoRARequest("adapter", 1, self.adapter_dir) if self.adapter_dir else None
        outputs = self.llm.generate(prompts, params, lora_request=lora, use_tqdm=progress)
        answers = [Answer(text=o.outputs[0].text.strip(), new_tokens=len(o.outputs[0].token_ids),
                          hit_length_limit=o.outputs[0].finish_reason == "length") for o in outputs]
        if on_batch is not None:
            on_batch(list(range(len(prompts))), answers)
        return answers


def vllm_usable() -> bool:
    import torch

    return importlib.util.find_spec("vllm") is not None and torch.cuda.is_available()


def choose_backend(setting: str) -> str:
    """auto -> vllm where it can run, else transformers; an explicit vllm that cannot run is an error."""
    from lib.errors import UserError

    if setting == "auto":
        return "vllm" if vllm_usable() else "transformers"
    if setting == "vllm" and not vllm_usable():
        raise UserError("eval.backend=vllm needs a GPU and the vllm package (pip install -e '.[vllm]'); "
                        "use eval.backend=transformers")
    if setting not in ("vllm", "transformers"):
        raise UserError(f"eval.backend={setting!r}: expected auto, transformers or vllm")
    return setting
