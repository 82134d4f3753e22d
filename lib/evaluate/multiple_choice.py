"""Multiple-choice accuracy, scored two ways: by the option letter and by the option's text (cloze).

`python -m lib evaluate` (lib/evaluate/run.py) scores data/processed/<profile>/mcq.jsonl
(the medical knowledge track, written by `python -m lib mcq-data`, lib/data/mcq.py) and
general.jsonl (the general-ability track) with `score_mcq`, and puts each `mcq_summary` into
eval.json as "mcq" and "general".

Letter scoring (`overall`, the headline: it is how an exam is asked of an instruction-tuned model).

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

Cloze scoring (`acc` and `acc_norm`, lm-evaluation-harness's two scores). The user turn is the
question alone, and each option's text is scored as the assistant's answer: the sum of the
log-probabilities of its tokens after the generation prompt. `acc` picks the option of highest
sum; `acc_norm` divides each sum by the option's length in characters first, so that a long
option is not penalised for having more tokens to pay for. A model that cannot yet map its
knowledge onto letters (the demo's tiny base has never seen an exam) still shows here what it
knows: the right option is the likelier text. Both are kept because they answer different
questions: letter accuracy what a user asking an exam gets, cloze accuracy what the weights know.

Each cloze prompt goes through the model once: a batch of prompts is run left-padded, keeping
its key-value cache, and the cache is then repeated for each option of an item
(Cache.reorder_cache, as beam search does) so that all options continue their own prompt in one
right-padded pass. Only the options' positions get logits, as in lib/evaluate/likelihood.py.
"""

from __future__ import annotations

from collections import defaultdict

from tqdm import tqdm

from lib.errors import UserError
from lib.evaluate.generate import left_padded, length_sorted_batches
from lib.evaluate.metrics import MCQ_SCORINGS
from lib.prompts import render_prompt
from lib.stats import BOOTSTRAP_SEED, bootstrap

INSTRUCTION = "请只回答选项字母。"
# eval.json's key of each track: its items file in the processed data folder, and its name in messages
TRACKS = {"mcq": ("mcq.jsonl", "medical knowledge"), "general": ("general.jsonl", "general-ability")}


def user_turn(item: dict) -> str:
    options = "\n".join(f"{letter}. {text}" for letter, text in item["options"].items())
    return f"{item['question']}\n{options}\n{INSTRUCTION}"


def render(tokenizer, item: dict, system_prompt: str) -> str:
    messages = [{"role": "system", "content": system_prompt}, {"role": "user", "content": user_turn(item)}]
    return render_prompt(tokenizer, messages)


def cloze_render(tokenizer, item: dict, system_prompt: str) -> str:
    """The cloze prompt: the question alone as the user turn, then the generation prompt."""
    messages = [{"role": "system", "content": system_prompt}, {"role": "user", "content": item["question"]}]
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


def option_logprobs(model, prompts: list[list[int]], options: list[list[list[int]]], pad_id: int) -> list[list[float]]:
    """The summed log-probability of each option's tokens after its item's prompt
    (options[i][k]: the token ids of item i's option k), the prompts run once.

    Option k of item i is a row of the second pass: its cache is prompt i's, its positions count
    on from prompt i's length, its padding is on the right (after its real tokens, where it
    changes nothing). Its first token is predicted by the prompt pass's last logits, token j > 0
    by the option pass's logits at j - 1."""
    import torch

    device = model.device
    ids, attention, positions = left_padded(prompts, pad_id)
    owner = [i for i, item_options in enumerate(options) for _ in item_options]  # the prompt each row continues
    rows = [tokens for item_options in options for tokens in item_options]
    width = max(map(len, rows))
    option_ids = torch.tensor([tokens + [pad_id] * (width - len(tokens)) for tokens in rows])
    option_mask = torch.tensor([[1] * len(tokens) + [0] * (width - len(tokens)) for tokens in rows])
    owner_index = torch.tensor(owner)
    option_positions = attention.sum(dim=1)[owner_index, None] + torch.arange(width)
    with torch.inference_mode():
        prompt_pass = model(input_ids=ids.to(device), attention_mask=attention.to(device),
                            position_ids=positions.to(device), use_cache=True, logits_to_keep=1)
        first = torch.log_softmax(prompt_pass.logits[:, -1].float(), dim=-1)[owner_index.to(device)]
        cache = prompt_pass.past_key_values
        cache.reorder_cache(owner_index.to(device))
        logits = model(input_ids=option_ids.to(device),
                       attention_mask=torch.cat([attention[owner_index], option_mask], dim=1).to(device),
                       position_ids=option_positions.to(device), past_key_values=cache).logits.float()
        # logits[:, j] predicts token j + 1 of the option (the last option position predicts nothing)
        later = torch.log_softmax(logits[:, : width - 1], dim=-1)
        targets = option_ids[:, 1:].to(device)
        later_logprobs = later.gather(-1, targets[..., None])[..., 0] * option_mask[:, 1:].to(device)
        first_logprobs = first.gather(-1, option_ids[:, :1].to(device))[:, 0]
        sums = (first_logprobs + later_logprobs.sum(dim=1)).cpu().tolist()
    per_item: list[list[float]] = [[] for _ in prompts]
    for item, value in zip(owner, sums):
        per_item[item].append(value)
    return per_item


def letter_logprobs_of(model, tokenizer, items: list[dict], system_prompt: str, batch_size: int,
                       progress: bool) -> list[dict]:
    """{letter: log p of the letter token after the lettered prompt} per item."""
    prompts = [render(tokenizer, item, system_prompt) for item in items]
    letters = sorted({letter for item in items for letter in item["options"]})
    token_of = letter_token_ids(tokenizer, prompts[0], letters)  # one template: the first prompt checks all
    encoded = [tokenizer(prompt, add_special_tokens=False)["input_ids"] for prompt in prompts]
    pad_id = tokenizer.pad_token_id  # lib.model.load_tokenizer sets one where the model has none
    letter_logprobs: list[dict | None] = [None] * len(items)
    for batch in tqdm(length_sorted_batches([len(ids) for ids in encoded], batch_size),
                      desc="multiple choice (letters)", unit="batch", disable=not progress):
        logprobs = next_token_logprobs(model, [encoded[i] for i in batch], pad_id)
        for row, index in enumerate(batch):
            letter_logprobs[index] = {letter: float(logprobs[row, token_of[letter]])
                                      for letter in items[index]["options"]}
    return letter_logprobs


def cloze_logprobs_of(model, tokenizer, items: list[dict], system_prompt: str, batch_size: int,
                      progress: bool) -> list[dict]:
    """{letter: summed log p of the option's text as the answer to the bare question} per item."""
    prompts = [tokenizer(cloze_render(tokenizer, item, system_prompt), add_special_tokens=False)["input_ids"]
               for item in items]
    options = [[tokenizer(text, add_special_tokens=False)["input_ids"] for text in item["options"].values()]
               for item in items]
    pad_id = tokenizer.pad_token_id
    sums: list[dict | None] = [None] * len(items)
    for batch in tqdm(length_sorted_batches([len(ids) for ids in prompts], batch_size),
                      desc="multiple choice (cloze)", unit="batch", disable=not progress):
        batch_sums = option_logprobs(model, [prompts[i] for i in batch], [options[i] for i in batch], pad_id)
        for index, values in zip(batch, batch_sums):
            sums[index] = dict(zip(items[index]["options"], values))
    return sums


def score_mcq(model, tokenizer, items: list[dict], system_prompt: str, batch_size: int,
              progress: bool = True) -> list[dict]:
    """Per item, in order: id, source, answer, options (their number), and for each scoring (letter, acc, acc_norm) the
    predicted letter and whether it is right; letter_logprobs and option_logprobs {letter: log p}."""
    if not items:
        return []
    model.eval()
    letters = letter_logprobs_of(model, tokenizer, items, system_prompt, batch_size, progress)
    cloze = cloze_logprobs_of(model, tokenizer, items, system_prompt, batch_size, progress)
    return [result(item, letter, options) for item, letter, options in zip(items, letters, cloze)]


def best(scores: dict) -> str:
    return max(scores, key=scores.get)  # a tie goes to the earlier letter


def result(item: dict, letter_logprobs: dict, option_logprobs: dict) -> dict:
    per_character = {letter: value / len(item["options"][letter]) for letter, value in option_logprobs.items()}
    predicted = {"letter": best(letter_logprobs), "acc": best(option_logprobs), "acc_norm": best(per_character)}
    return {"id": item["id"], "source": item["source"], "answer": item["answer"], "options": len(item["options"]),
            "predicted": predicted,
            "correct": {scoring: letter == item["answer"] for scoring, letter in predicted.items()},
            "letter_logprobs": letter_logprobs, "option_logprobs": option_logprobs}


def mcq_summary(per_item: list[dict], n_samples: int = 1_000, seed: int = BOOTSTRAP_SEED) -> dict:
    """Accuracy in percent with its bootstrap interval: letter accuracy overall (`overall`) and
    per source, cloze accuracy (`acc`, `acc_norm`) overall; the accuracy of guessing (`chance`:
    the mean of 100 / options over items, 25 for four options); and each item's right or wrong per
    scoring (`items`: {id: [letter, acc, acc_norm]} as 0/1, for intervals paired with another run)."""
    by_source: dict[str, list[float]] = defaultdict(list)
    for item in per_item:
        by_source[item["source"]].append(100.0 * item["correct"]["letter"])

    def accuracy(scoring: str) -> dict:
        return bootstrap([100.0 * item["correct"][scoring] for item in per_item], n_samples=n_samples, seed=seed)

    return {
        "overall": accuracy("letter"),
        "per_source": {source: bootstrap(values, n_samples=n_samples, seed=seed)
                       for source, values in sorted(by_source.items())},
        "acc": accuracy("acc"),
        "acc_norm": accuracy("acc_norm"),
        "chance": sum(100.0 / item["options"] for item in per_item) / len(per_item) if per_item else None,
        "items": {item["id"]: [int(item["correct"][scoring]) for scoring in MCQ_SCORINGS] for item in per_item},
    }
