"""The cleaning rules (lib/data/clean.py): each drops what it should, counts it, and keeps clean
examples; normalisation; exact and MinHash near-duplicates; the optional token limit."""

from __future__ import annotations

import dataclasses

import pytest

from lib.config import load_config
from lib.data.clean import clean, normalise_text
from lib.data.sources import Example

CONFIG = load_config("paper").cleaning  # the study's own settings
QUESTION = "最近一周经常头痛头晕，晚上也睡不好，是什么原因？"
ANSWER = "可能与血压升高有关，建议先测量血压，并到心血管内科做心电图和动态血压监测。"
OTHER_QUESTION = "孩子咳嗽发烧两天了，需要去医院吗？"


def example(question=QUESTION, answer=ANSWER, line=1, history=()):
    return Example(question, answer, list(history), "test", line)


def drops(result):
    return {report.rule: report.dropped for report in result.reports if report.dropped}


@pytest.mark.parametrize("rule, question, answer", [
    ("empty", QUESTION, " \u3000 "),
    ("too_short", "头痛", ANSWER),  # 2 < 4 characters
    ("too_short", QUESTION, "多喝热水"),  # 4 < 8 characters
    ("too_long", "头" * 501, ANSWER),
    ("too_long", QUESTION, "注意休息。" * 401),  # 2005 characters
    ("not_chinese", "What causes headaches after exercise?", ANSWER),
    ("not_chinese", QUESTION, "Measure your blood pressure and see a cardiologist soon."),
    ("not_chinese", "高血压 hypertension?", ANSWER),  # 3 of 15 letters are Chinese: 20% < 30%
    ("advertising", QUESTION, ANSWER + "详情请访问www.example.com"),
    ("advertising", QUESTION, ANSWER + "详见 https://example.org/a"),
    ("advertising", QUESTION, ANSWER + "咨询电话13912345678"),
    ("advertising", QUESTION, ANSWER + "预约电话：010-88886666"),
    ("advertising", QUESTION, ANSWER + "有问题加QQ：12345678"),
    ("advertising", QUESTION, ANSWER + "我的微信号：doctor_li2024"),
    ("advertising", QUESTION, ANSWER + "点击在线咨询我院专家。"),
    ("non_answer", QUESTION, "你好，建议及时到正规医院就诊。"),
    ("non_answer", QUESTION, "请咨询医生，谢谢！"),
    ("non_answer", QUESTION, "这位朋友你好，你的提问过于简单，无法给你满意的答复。"),
    ("repeats_question", QUESTION, QUESTION),
    ("repeats_question", QUESTION, "最近一周，经常头痛头晕！"),  # a part of the question, other punctuation
    ("repeats_question", "患者术后出现髋关节脱位，常见并发症是什么？", "髋关节脱位"),
])
def test_each_rule_drops_and_counts_a_record_that_triggers_it(rule, question, answer):
    result = clean([example(OTHER_QUESTION, line=1), example(question, answer, line=2)], CONFIG)
    assert drops(result) == {rule: 1}
    assert [e.line for e in result.kept] == [1]
    report = next(r for r in result.reports if r.rule == rule)
    assert report.examples[0]["line"] == 2


def test_an_earlier_turn_whose_answer_repeats_its_question_drops_the_example():
    echoed = example(OTHER_QUESTION, ANSWER, line=2, history=[(QUESTION, QUESTION)])
    result = clean([example(line=1), echoed], CONFIG)
    assert drops(result) == {"repeats_question": 1}
    assert next(r for r in result.reports if r.rule == "repeats_question").examples[0]["why"] == \
        "answer equal to the question"


def test_an_answer_that_starts_by_restating_the_question_is_kept():
    restated = example(answer=QUESTION + ANSWER, line=1)  # the question inside the answer, not the other way
    assert clean([restated], CONFIG).kept == [restated]


def test_length_limits_are_inclusive():
    shortest = example("头痛发热", "建议多测量血压。", line=1)  # 4 and 8 characters: the minimums
    longest = example("头" * 499 + "？", "注" * 2000, line=2)  # 500 and 2000: the maximums
    result = clean([shortest, longest], CONFIG)
    assert drops(result) == {} and len(result.kept) == 2
    one_less = example("头痛发", "建议多测血压。", line=3)
    assert drops(clean([one_less], CONFIG)) == {"too_short": 1}


@pytest.mark.parametrize("answer", [
    "建议到消化内科做胃镜检查。",  # names a department and a test: an answer, though it says "go to hospital"
    "每天2次，每次10mg，血压控制在130/80mmHg以下。",  # numbers that are not phone numbers
    "高血压(hypertension)需要长期服药，不要自行停药。",  # some English is fine
])
def test_clean_answers_survive(answer):
    result = clean([example(answer=answer)], CONFIG)
    assert drops(result) == {} and [e.answer for e in result.kept] == [answer]


def test_normalisation_counts_changes_and_drops_nothing():
    assert (normalise_text("  ＣＴ检查　显示 肺部 阴影，  怎么办？\t\n\n\u200b需要住院吗 ")
            == "CT检查显示肺部阴影，怎么办？\n需要住院吗")
    assert normalise_text("take 2 pills， twice") == "take 2 pills，twice"
    result = clean([example(question="  " + QUESTION), example(OTHER_QUESTION, line=2)], CONFIG)
    normalise = result.reports[0]
    assert (normalise.rule, normalise.dropped, normalise.changed) == ("normalise", 0, 1)
    assert normalise.examples == [{"line": 1, "field": "question", "before": "  " + QUESTION, "after": QUESTION}]
    assert [e.question for e in result.kept] == [QUESTION, OTHER_QUESTION]


def test_a_change_only_in_an_earlier_turn_is_shown_as_that_turn():
    history = [("上次说血压偏高", "建议复查"), ("复查了 ， 还是高", "需要服药")]
    result = clean([example(history=history)], CONFIG)
    normalise = result.reports[0]
    assert normalise.changed == 1
    assert normalise.examples == [{"line": 1, "field": "history 2 question", "before": "复查了 ， 还是高",
                                   "after": "复查了，还是高"}]


def test_exact_duplicate_questions_keep_the_first():
    examples = [example(line=1), example(OTHER_QUESTION, line=2), example(answer=ANSWER + "另外要低盐饮食。", line=3)]
    result = clean(examples, CONFIG)
    assert drops(result) == {"duplicate": 1}
    assert [e.line for e in result.kept] == [1, 2]
    assert result.reports[-2].examples[0]["why"] == "same question as line 1"


def trigram_jaccard(a: str, b: str) -> float:
    """The definition, computed directly: Jaccard of character 3-gram sets without punctuation."""
    def grams(text):
        key = "".join(ch for ch in text if ch.isalnum())
        return {key[i:i + 3] for i in range(len(key) - 2)}
    return len(grams(a) & grams(b)) / len(grams(a) | grams(b))


def test_near_duplicate_questions_are_dropped_and_dissimilar_ones_kept():
    near = "请问" + QUESTION  # two more characters: 21 of 23 shingles shared
    related = "最近一周经常头痛头晕，白天也没有精神，该挂什么科？"
    assert trigram_jaccard(QUESTION, near) >= 0.9
    assert trigram_jaccard(QUESTION, related) < 0.5
    result = clean([example(line=1), example(near, line=2), example(related, line=3)], CONFIG)
    assert drops(result) == {"near_duplicate": 1}
    assert [e.line for e in result.kept] == [1, 3]
    assert result.reports[-1].examples[0]["why"] == f"{trigram_jaccard(QUESTION, near):.2f} similar to line 1"


def test_near_duplicate_threshold_comes_from_the_config():
    near = "请问" + QUESTION
    strict = dataclasses.replace(CONFIG, near_duplicate_threshold=0.95)
    assert trigram_jaccard(QUESTION, near) < 0.95
    assert drops(clean([example(line=1), example(near, line=2)], strict)) == {}


def test_history_turns_are_checked_for_advertising_and_emptiness():
    advert = example(history=[("之前的问题是什么？", "加微信doctor123了解。")])
    empty = example(OTHER_QUESTION, history=[("", "上一轮回答")], line=2)
    assert drops(clean([advert, empty], CONFIG)) == {"advertising": 1, "empty": 1}


def test_token_limit_with_a_real_tokenizer(tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    from lib.data.clean import token_counter

    # a character-level tokenizer: one token per character (unknown ones too), easy to count by hand
    characters = sorted(set(QUESTION + ANSWER + OTHER_QUESTION + "你是医生"))
    tokenizer = Tokenizer(models.WordLevel({c: i for i, c in enumerate(["[UNK]", *characters])}, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Split("", behavior="isolated")
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, unk_token="[UNK]")
    fast.save_pretrained(tmp_path / "plain")
    fast.chat_template = "{% for m in messages %}{{ m['content'] }}|{% endfor %}"
    fast.save_pretrained(tmp_path / "chat")

    plain = token_counter(str(tmp_path / "plain"), system_prompt="你是医生")
    assert plain(example()) == len("\n".join(["你是医生", QUESTION, ANSWER]))  # no template: joined by newlines
    chat = token_counter(str(tmp_path / "chat"), system_prompt="你是医生")
    assert chat(example()) == len("|".join(["你是医生", QUESTION, ANSWER, ""]))  # the template's rendering

    limit = dataclasses.replace(CONFIG, max_example_tokens=chat(example(OTHER_QUESTION)))
    result = clean([example(line=1), example(OTHER_QUESTION, line=2)], limit, count_tokens=chat)
    assert drops(result) == {"too_many_tokens": 1}
    assert [e.line for e in result.kept] == [2]


def test_the_real_files_answers_that_repeat_their_question_are_dropped(shared_data):
    from lib.data.sources import read_examples

    dropped = {}
    for name in ("huatuo_llama_kg_instruct.alpaca.jsonl", "medicalgpt_sft_1k.sharegpt.jsonl"):
        result = clean(read_examples(shared_data / name, "test", 0.01).examples, CONFIG)
        dropped[name] = drops(result).get("repeats_question")
    assert list(dropped.values()) == [7, 1]
