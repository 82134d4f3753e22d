"""Multiple-choice scoring (lib/evaluate/multiple_choice.py) on the tiny Qwen2 (random weights, taught
the items by the `taught` fixture): the option letter's log-probability, and the option text's (cloze,
acc and acc_norm)."""

from __future__ import annotations

import copy

import pytest

from builders import sequence_logprob
from lib.data.synthetic import generate_mcq
from lib.errors import UserError
from lib.evaluate.generate import left_padded
from lib.evaluate.multiple_choice import (
    cloze_render,
    letter_token_ids,
    mcq_summary,
    option_logprobs,
    render,
    result,
    score_mcq,
    user_turn,
)

SYSTEM_PROMPT = "你是一名专业、严谨的医学助手。"


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """The tiny model runs on one thread: a 1.1M-parameter model gains nothing from a second, and
    on a busy 2-core machine two OpenMP threads wait on each other (measured: a training step of
    the `taught` fixture took 0.09 s on one thread and 1.6 s on two while another job ran)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tiny(untrained_tiny_model):
    """The tiny Qwen2 and its tokenizer, random weights: `taught` teaches it what the tests score."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = untrained_tiny_model
    return AutoTokenizer.from_pretrained(model), AutoModelForCausalLM.from_pretrained(model)


ITEMS = generate_mcq(8, seed=0)  # answers A, B, B, C, A, D, D, C: every letter twice


@pytest.fixture(scope="module")
def taught(tiny):
    """A copy of the tiny model taught to answer ITEMS: the cross-entropy of the answer letter's
    token after each prompt, in a right-padded batch (padding after the prompts, so positions and
    logits of real tokens are those of one-by-one; independent of the scorer's left padding)."""
    import torch

    tokenizer, model = tiny
    model = copy.deepcopy(model)
    prompts = [render(tokenizer, item, SYSTEM_PROMPT) for item in ITEMS]
    token_of = letter_token_ids(tokenizer, prompts[0], list("ABCD"))
    batch = tokenizer(prompts, return_tensors="pt", padding=True, padding_side="right", add_special_tokens=False)
    last = batch["attention_mask"].sum(dim=1) - 1  # each prompt's last real token
    targets = torch.tensor([token_of[item["answer"]] for item in ITEMS])
    torch.manual_seed(0)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(60):  # from random weights the loss falls from ~7.9 to ~0.008 (0.07 after 30 steps)
        logits = model(**batch).logits[torch.arange(len(ITEMS)), last]
        loss = torch.nn.functional.cross_entropy(logits, targets)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    return tokenizer, model


def test_the_prompt_is_the_chat_template_with_lettered_options(tiny):
    tokenizer, _ = tiny
    item = {"id": "x", "source": "s", "question": "钙的生理功能有", "options": {"A": "抗氧化", "B": "维持视觉"},
            "answer": "B"}
    assert user_turn(item) == "钙的生理功能有\nA. 抗氧化\nB. 维持视觉\n请只回答选项字母。"
    assert render(tokenizer, item, SYSTEM_PROMPT) == (
        f"<|im_start|>system\n{SYSTEM_PROMPT}<|im_end|>\n<|im_start|>user\n{user_turn(item)}<|im_end|>\n"
        "<|im_start|>assistant\n")


def test_each_letter_is_one_token_after_the_prompt(tiny):
    tokenizer, _ = tiny
    prompt = render(tokenizer, ITEMS[0], SYSTEM_PROMPT)
    token_of = letter_token_ids(tokenizer, prompt, list("ABCDE"))
    assert [tokenizer.decode([token_of[letter]]) for letter in "ABCDE"] == list("ABCDE")
    with pytest.raises(UserError, match="is not one token after the chat prompt"):
        letter_token_ids(tokenizer, prompt, ["ꙮꙮ"])  # a rare character: several byte tokens


def test_the_scorer_picks_the_letter_the_model_was_taught(taught):
    tokenizer, model = taught
    scored = score_mcq(model, tokenizer, ITEMS, SYSTEM_PROMPT, batch_size=8, progress=False)
    assert [s["predicted"]["letter"] for s in scored] == [item["answer"] for item in ITEMS] == list("ABBCADDC")
    assert all(s["correct"]["letter"] for s in scored) and [s["id"] for s in scored] == [item["id"] for item in ITEMS]
    first = scored[0]["letter_logprobs"]
    assert set(first) == set("ABCD") and first["A"] > -0.5 > max(first["B"], first["C"], first["D"])


def test_batches_with_padding_give_the_answers_of_one_by_one(tiny, taught):
    for tokenizer, model in (tiny, taught):  # the random model too: its letters are close calls
        together = score_mcq(model, tokenizer, ITEMS, SYSTEM_PROMPT, batch_size=8, progress=False)
        alone = score_mcq(model, tokenizer, ITEMS, SYSTEM_PROMPT, batch_size=1, progress=False)
        assert [s["predicted"] for s in together] == [s["predicted"] for s in alone]
        for a, b in zip(together, alone):
            assert a["letter_logprobs"] == pytest.approx(b["letter_logprobs"], abs=1e-4)
            assert a["option_logprobs"] == pytest.approx(b["option_logprobs"], abs=1e-4)


def test_left_padding_ends_rows_together_and_counts_positions_from_the_first_real_token():
    ids, attention, positions = left_padded([[5, 6, 7], [8]], pad_id=0)
    assert ids.tolist() == [[5, 6, 7], [0, 0, 8]]
    assert attention.tolist() == [[1, 1, 1], [0, 0, 1]]
    assert positions.tolist() == [[0, 1, 2], [0, 0, 0]]


def test_only_the_items_own_letters_compete(taught):
    tokenizer, model = taught
    # ITEMS[3] was taught "C"; with its options cut to A and B, the prediction must be A or B
    cut = {**ITEMS[3], "options": {k: ITEMS[3]["options"][k] for k in "AB"}, "answer": "A"}
    scored = score_mcq(model, tokenizer, [cut], SYSTEM_PROMPT, batch_size=1, progress=False)[0]
    assert set(scored["letter_logprobs"]) == {"A", "B"} and scored["predicted"]["letter"] in ("A", "B")
    assert set(scored["option_logprobs"]) == {"A", "B"} and scored["predicted"]["acc_norm"] in ("A", "B")


def test_a_peft_model_is_scored_the_same_way(taught):
    from peft import LoraConfig, get_peft_model

    tokenizer, model = taught
    wrapped = get_peft_model(copy.deepcopy(model), LoraConfig(r=4, target_modules="all-linear"))
    scored = score_mcq(wrapped, tokenizer, ITEMS, SYSTEM_PROMPT, batch_size=4, progress=False)
    assert [s["predicted"]["letter"] for s in scored] == list("ABBCADDC")  # a fresh adapter changes nothing
    plain = score_mcq(model, tokenizer, ITEMS, SYSTEM_PROMPT, batch_size=4, progress=False)
    for a, b in zip(scored, plain):  # its cache is reused for the options as the plain model's is
        assert a["option_logprobs"] == pytest.approx(b["option_logprobs"], abs=1e-4)


def test_cloze_sums_each_options_log_probability_as_a_whole_sequence_pass_does(tiny):
    tokenizer, model = tiny
    items = ITEMS[:5]  # prompts of several lengths, options of one to several tokens
    prompts = [tokenizer(cloze_render(tokenizer, item, SYSTEM_PROMPT), add_special_tokens=False)["input_ids"]
               for item in items]
    options = [[tokenizer(text, add_special_tokens=False)["input_ids"] for text in item["options"].values()]
               for item in items]
    options[0] = options[0][:2]  # an item with fewer options than the others of its batch
    assert len({len(p) for p in prompts}) > 1 and len({len(o) for item in options for o in item}) > 1
    batched = option_logprobs(model, prompts, options, tokenizer.pad_token_id)
    expected = [[sequence_logprob(model, prompt, option) for option in item_options]
                for prompt, item_options in zip(prompts, options)]
    assert [len(values) for values in batched] == [2, 4, 4, 4, 4]
    for got, want in zip(batched, expected):
        assert got == pytest.approx(want, abs=1e-3)


def test_the_cloze_prompt_is_the_bare_question_in_the_chat_template(tiny):
    tokenizer, _ = tiny
    assert cloze_render(tokenizer, ITEMS[0], SYSTEM_PROMPT) == (
        f"<|im_start|>system\n{SYSTEM_PROMPT}<|im_end|>\n<|im_start|>user\n{ITEMS[0]['question']}<|im_end|>\n"
        "<|im_start|>assistant\n")


def test_acc_norm_divides_by_the_options_characters_and_can_disagree_with_acc():
    item = {"id": "x", "source": "s", "question": "q", "options": {"A": "头痛", "B": "头痛伴恶心呕吐"}, "answer": "B"}
    # A: -4 over 2 characters = -2 per character; B: -6 over 7 = -0.86: acc picks A, acc_norm B
    scored = result(item, {"A": -0.1, "B": -2.0}, {"A": -4.0, "B": -6.0})
    assert scored["predicted"] == {"letter": "A", "acc": "A", "acc_norm": "B"}
    assert scored["correct"] == {"letter": False, "acc": False, "acc_norm": True}


def summary_item(source: str, letter: bool, acc: bool = False, acc_norm: bool = False, number: list = [0]) -> dict:  # noqa: B006
    number[0] += 1
    return {"id": f"i{number[0]}", "source": source, "options": 4 if source == "cmb" else 5,
            "correct": {"letter": letter, "acc": acc, "acc_norm": acc_norm}}


def test_summary_is_accuracy_in_percent_overall_per_source_and_per_scoring():
    per_item = [summary_item("cmexam", c, acc=True) for c in (True, True, False, True)] + \
               [summary_item("cmb", c, acc_norm=True) for c in (False, True)]
    summary = mcq_summary(per_item, n_samples=200, seed=0)
    assert summary["overall"]["value"] == pytest.approx(400 / 6) and summary["overall"]["n"] == 6
    assert list(summary["per_source"]) == ["cmb", "cmexam"]
    assert summary["per_source"]["cmexam"]["value"] == 75.0 and summary["per_source"]["cmb"]["value"] == 50.0
    assert 0 <= summary["overall"]["ci_low"] < summary["overall"]["ci_high"] <= 100
    assert summary["acc"]["value"] == pytest.approx(400 / 6) and summary["acc_norm"]["value"] == pytest.approx(200 / 6)
    assert summary["chance"] == pytest.approx((4 * 20 + 2 * 25) / 6)
    first = per_item[0]["id"]
    assert summary["items"][first] == [1, 1, 0] and len(summary["items"]) == 6
