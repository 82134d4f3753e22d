"""The generated data (lib/data/synthetic.py): deterministic, learnable (the answer follows from
the disease in the question), dirty enough to exercise every cleaning rule, clean enough for the
demo's sizes; multiple-choice items with balanced, correct answers."""

from __future__ import annotations

import math
import random
import re
from collections import Counter

from lib.config import load_config
from lib.data import synthetic
from lib.data.clean import clean
from lib.data.sources import Example

BY_NAME = {d.name: d for d in synthetic.DISEASES}
DEMO = load_config("demo")


def as_examples(records):
    return [Example(r["instruction"] + (f"\n{r['input']}" if r["input"] else ""), r["output"], [], "synthetic", line)
            for line, r in enumerate(records, start=1)]


def named_disease(text: str):
    """The disease a text names (the longest name found, so 肺炎 inside 小儿支气管肺炎 does not count)."""
    found = [name for name in BY_NAME if name in text]
    return BY_NAME[max(found, key=len)] if found else None


def first_disease(text: str):
    """The disease named first in a text (at equal positions the longer name)."""
    found = [(text.find(name), -len(name), name) for name in BY_NAME if name in text]
    return BY_NAME[min(found)[2]] if found else None


def test_generation_is_deterministic_and_seeded():
    assert synthetic.generate(300, seed=5) == synthetic.generate(300, seed=5)
    assert synthetic.generate(300, seed=5) != synthetic.generate(300, seed=6)


def test_answers_follow_from_the_disease_in_the_question():
    rng = random.Random(0)
    for _ in range(500):
        record = synthetic.clean_record(rng)
        question, answer = record["instruction"] + record["input"], record["output"]
        diagnosed = re.search(r"考虑(.+?)的可能性", answer)
        if diagnosed:  # the question describes symptoms; the answer names the disease they belong to
            disease = BY_NAME[diagnosed.group(1)]
            assert named_disease(question) is None
            assert sum(symptom in question for symptom in disease.symptoms) >= 2
        else:  # the question names the disease; the first disease the answer names is that one
            disease = named_disease(question)
            assert first_disease(answer) in (disease, None)
        assert disease.department in answer or disease.name in answer


def test_every_cleaning_rule_has_something_to_drop():
    result = clean(as_examples(synthetic.generate(2000, seed=1)), DEMO.cleaning)
    counts = {report.rule: report.dropped for report in result.reports}
    assert result.reports[0].changed > 0  # normalise changes records and drops none
    assert all(counts[rule] > 0 for rule in counts if rule != "normalise"), counts


def test_the_demo_profile_keeps_enough_distinct_records():
    data = DEMO.data
    result = clean(as_examples(synthetic.generate(data.synthetic_size, data.seed)), DEMO.cleaning)
    needed = data.test_size + data.dev_size + 2000  # the demo's largest train size is 2k
    assert len(result.kept) >= needed + 1000, len(result.kept)  # room for the overlap rule and changes


def test_multiple_choice_items_are_distinct_balanced_and_correct():
    items = synthetic.generate_mcq(203, seed=4)
    assert items == synthetic.generate_mcq(203, seed=4)
    assert len({item["id"] for item in items}) == 203
    assert len({(item["question"], tuple(item["options"].values())) for item in items}) == 203
    letters = Counter(item["answer"] for item in items)
    assert max(letters.values()) - min(letters.values()) <= 1 and set(letters) == set("ABCD")
    for item in items:
        assert set(item["options"]) == set("ABCD") and len(set(item["options"].values())) == 4
        correct = item["options"][item["answer"]]
        kind = item["source"].removeprefix("synthetic-")
        if kind == "diagnosis":
            assert all(s in BY_NAME[correct].symptoms for s in item["question"][4:].split("，")[0].split("、"))
            continue
        disease = named_disease(item["question"])
        truth = {"department": (disease.department,), "symptom": disease.symptoms,
                 "examination": disease.exams, "treatment": disease.treatments}[kind]
        assert correct in truth
        assert not any(option in truth for letter, option in item["options"].items() if letter != item["answer"])


def test_the_pretraining_pages_state_the_facts_but_never_answer_a_question():
    pages = synthetic.pretraining_pages(2 * len(synthetic.DISEASES) * 4, seed=0)
    assert pages == synthetic.pretraining_pages(len(pages), seed=0)
    text = "\n".join(body for _, body in pages)
    assert all(d.name in text and d.department in text for d in synthetic.DISEASES)
    encyclopedia = [body for title, body in pages if "网友提问" not in title]
    questions = [body for title, body in pages if "网友提问" in title]
    assert questions and not any("？" in body for body in encyclopedia)
    # the forum pages list questions only: not one of the answers' sentences follows them
    answers = {sentence for r in synthetic.generate(500, seed=0) for sentence in r["output"].split("。") if sentence}
    assert not any(sentence in body for body in questions for sentence in answers)
    assert DEMO.data.system_prompt not in text  # the chat's system turn is taught by fine-tuning


def answer_loss(train: list, test: list, order: int = 3) -> float:
    """Nats per answer character of a character n-gram model (interpolated, add-one at the
    bottom) trained on the train pairs: a stand-in for the demo's tiny model."""
    counts, contexts, vocabulary = Counter(), Counter(), set()
    for example in train:
        text = "\x02" * order + example.question + "\t" + example.answer
        vocabulary |= set(text)
        for i in range(order, len(text)):
            for n in range(order + 1):
                counts[text[i - n:i], text[i]] += 1
                contexts[text[i - n:i]] += 1
    nats = characters = 0
    for example in test:
        text = "\x02" * order + example.question + "\t" + example.answer
        for i in range(len(text) - len(example.answer), len(text)):
            p = 1 / (len(vocabulary) + 1)
            for n in range(order + 1):
                seen = contexts[text[i - n:i]]
                if seen:
                    weight = seen / (seen + 3)
                    p = weight * counts[text[i - n:i], text[i]] / seen + (1 - weight) * p
            nats -= math.log(p)
            characters += 1
    return nats / characters


def test_more_generated_data_gives_a_lower_test_loss():
    examples = clean(as_examples(synthetic.generate(2000, seed=2)), DEMO.cleaning).kept
    test, pool = examples[:200], examples[200:]
    losses = [answer_loss(pool[:size], test) for size in (100, 400, 1200)]
    assert losses[0] > losses[1] > losses[2] and losses[2] < 0.75 * losses[0], losses
