"""The knowledge track: multiple-choice accuracy from the log-probability of each option letter.

`python -m lib evaluate` (lib/evaluate/run.py) scores data/processed/<profile>/mcq.jsonl
(written by `python -m lib mcq-data`, lib/data/mcq.py) with `score_mcq` and puts
`mcq_summary` into eval.json as "mcq".

Each item goes through the model's own chat template: the system prompt, the user turn

    <question>
    A. <option A>
    B. <option B>
    ...
    请只回答选项字母。

and the generation prompt (`<|im_start|>assistant\\n` for Qwen). One forward pass gives the
distribution of the next token; the prediction is the item's letter whose token has the highest
log-probability, among that item's letters only. Nothing is generated or parsed, so the score is
deterministic and an answer cannot be lost to phrasing (multiple choice by likelihood, as
lm-evaluation-harness does it). Each letter must be one token that directly follows the prompt
("A" is a single token in Qwen2.5's vocabulary and in the demo's byte-level one); this is checked
before scoring. Prompts are batched by length and left-padded, with position ids counted from
each prompt's first real token, so a batch gives the answers of one-by-one scoring.
"""

from __future__ import annotations

from collections import defaultdict

from tqdm import tqdm

from lib.errors import UserError
from lib.evaluate.generate import left_padded, length_sorted_batches
from lib.prompts import render_prompt
from lib.stats import BOOTSTRAP_SEED, bootstrap

INSTRUCTION = "请只回答选项字母。"


def user_turn(item: dict) -> str:
    options = "\n".join(f"{letter}. {text}" for letter, text in item["options"].items())
    return f"{item['question']}\n{options}\n{INSTRUCTION}"


def render(tokenizer, item: dict, system_prompt: str) -> str:
    messages = [{"role": "system", "content": system_prompt}, {"role": "user", "content": user_turn(item)}]
    return render_prompt(tokenizer, messages)


def letter_token_ids(tokenizer, prompt: str, letters: list[str]) -> dict[str, int]:
    """{letter: token id} of each letter as the token right after `prompt`; an error when a
    letter would not be exactly one token there."""
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    ids = {}
    for letter in letters:
        continued = tokenizer(prompt + letter, add_special_tokens=False)["input_ids"]
        if len(continued) != len(prompt_ids) + 1 or continued[:-1] != prompt_ids:
            raise UserError(f"option letter {letter!r} is not one token after the chat prompt of this tokenizer; "
                            "the knowledge track scores one token per option letter")
        ids[letter] = continued[-1]
    return ids


def next_token_logprobs(model, sequences: list[list[int]], pad_id: int):
    """(batch, vocab) log-probabilities of the token after each sequence, in one left-padded pass."""
    import torch

    ids, attention, positions = left_padded(sequences, pad_id)
    device = model.device
    with torch.inference_mode():
        logits = model(input_ids=ids.to(device), attention_mask=attention.to(device),
                       position_ids=positions.to(device), logits_to_keep=1).logits[:, -1]
    return torch.log_softmax(logits.float(), dim=-1).cpu()


def score_mcq(model, tokenizer, items: list[dict], system_prompt: str, batch_size: int,
              progress: bool = True) -> list[dict]:
    """Per item, in order: id, source, answer, predicted, correct, letter_logprobs {letter: log p}."""
    if not items:
        return []
    prompts = [render(tokenizer, item, system_prompt) for item in items]
    letters = sorted({letter for item in items for letter in item["options"]})
    token_of = letter_token_ids(tokenizer, prompts[0], letters)  # one template: the first prompt checks all
    encoded = [tokenizer(prompt, add_special_tokens=False)["input_ids"] for prompt in prompts]
    pad_id = tokenizer.pad_token_id  # lib.model.load_tokenizer sets one where the model has none

    model.eval()
    letter_logprobs: list[dict | None] = [None] * len(items)
    for batch in tqdm(length_sorted_batches([len(ids) for ids in encoded], batch_size),
                      desc="knowledge track", unit="batch", disable=not progress):
        logprobs = next_token_logprobs(model, [encoded[i] for i in batch], pad_id)
        for row, index in enumerate(batch):
            letter_logprobs[index] = {letter: float(logprobs[row, token_of[letter]])
                                      for letter in items[index]["options"]}
    return [result(item, scores) for item, scores in zip(items, letter_logprobs)]


def result(item: dict, letter_logprobs: dict) -> dict:
    predicted = max(letter_logprobs, key=letter_logprobs.get)  # a tie goes to the earlier letter
    return {"id": item["id"], "source": item["source"], "answer": item["answer"], "predicted": predicted,
            "correct": predicted == item["answer"], "letter_logprobs": letter_logprobs}


def mcq_summary(per_item: list[dict], n_samples: int = 1_000, seed: int = BOOTSTRAP_SEED) -> dict:
    """Accuracy in percent with its bootstrap interval, overall and per source."""
    by_source: dict[str, list[float]] = defaultdict(list)
    for item in per_item:
        by_source[item["source"]].append(100.0 * item["correct"])
    return {
        "overall": bootstrap([100.0 * item["correct"] for item in per_item], n_samples=n_samples, seed=seed),
        "per_source": {source: bootstrap(values, n_samples=n_samples, seed=seed)
                       for source, values in sorted(by_source.items())},
    }
