"""Clean question-answer examples rule by rule, counting what each rule drops and why.

    python -m lib data --profile demo --raw-dir data/raw --out data/processed/demo   (calls clean())

The rules, in the order they are applied (the first rule an example fails drops it):

    normalise        full-width letters, digits and spaces to half-width (Chinese punctuation
                     kept), invisible characters removed, whitespace collapsed; drops nothing
    empty            an empty question, answer or earlier turn
    too_short        question or answer under the minimum number of characters
    too_long         question or answer over the maximum number of characters
    too_many_tokens  the whole chat over cleaning.max_example_tokens (only with a tokenizer)
    not_chinese      question or answer mostly not Chinese (CJK share of letters too low)
    advertising      URLs, phone numbers, QQ or WeChat ids, hospital advertising, in any turn
    non_answer       the answer only refers the asker to a doctor or asks for more details
    repeats_question an answer equal to its question, or contained in it (punctuation, spacing and
                     case aside), in any turn: it teaches the model to echo the asker. Two public
                     medical sets (../shared/data) have 11 in 9,658 records, 8 of them not too
                     short: a disease named in the question given back as its complication, a
                     sentence of the question given back as the answer
    duplicate        the same question as an earlier example (the first is kept)
    near_duplicate   a question whose character shingles overlap an earlier kept one's by at
                     least cleaning.near_duplicate_threshold (Jaccard), found with MinHash LSH

lib.data.splits adds `overlaps_eval` (train questions that resemble test or dev questions).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
from tqdm import tqdm

from lib.config import CleaningConfig
from lib.data.sources import Example

if TYPE_CHECKING:  # datasketch (and the scipy it imports) loads where near duplicates are sought
    from datasketch import MinHash

EXAMPLES_PER_RULE = 3
EXAMPLE_CHARS = 200

# --- normalisation -----------------------------------------------------------------------------

# Full-width ASCII letters and digits (U+FF10.., U+FF21.., U+FF41..) become half-width, and
# the ideographic and no-break spaces become plain spaces. This is the part of NFKC that matters
# here: full NFKC would also turn the Chinese punctuation ，。？！：；（） into ASCII, which we keep.
_HALF_WIDTH = {
    **{code: code - 0xFEE0 for start, end in ((0xFF10, 0xFF19), (0xFF21, 0xFF3A), (0xFF41, 0xFF5A))
       for code in range(start, end + 1)},
    0x3000: " ",
    0x00A0: " ",
    **dict.fromkeys((0x200B, 0x200C, 0x200D, 0x2060, 0xFEFF)),  # zero-width characters: removed
}
_SPACES = re.compile(r"[ \t\f\v]+")
# Chinese needs no spaces: one between two Chinese characters, or beside Chinese punctuation
# (U+3000-303F, full-width forms U+FF00-FFEF), is noise ("头 痛", "， 该怎么治") and goes.
_CJK_CHARS = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002fa1f"  # CJK ideographs
_CJK_PUNCT = "\u3000-\u303f\uff00-\uffef"
_CHINESE_SPACE = re.compile(f"(?<=[{_CJK_CHARS}]) (?=[{_CJK_CHARS}])|(?<=[{_CJK_PUNCT}]) | (?=[{_CJK_PUNCT}])")


_NEEDS_HALF_WIDTH = re.compile("[" + "".join(map(chr, _HALF_WIDTH)) + "]")


def normalise_text(text: str) -> str:
    """Half-width letters/digits/spaces, one space between words and none in Chinese, no blank
    lines, stripped."""
    if _NEEDS_HALF_WIDTH.search(text):  # translate() is slow; most texts need nothing from it
        text = text.translate(_HALF_WIDTH)
    lines = (_SPACES.sub(" ", line).strip() for line in text.splitlines())
    return "\n".join(_CHINESE_SPACE.sub("", line) if " " in line else line for line in lines if line)


def normalise(example: Example) -> Example:
    return Example(
        normalise_text(example.question),
        normalise_text(example.answer),
        [(normalise_text(q), normalise_text(a)) for q, a in example.history],
        example.source,
        example.line,
    )


# --- per-example rules -------------------------------------------------------------------------

_CJK_RUN = re.compile(f"[{_CJK_CHARS}]+")
_OTHER_LETTER_RUN = re.compile(f"[^\\W\\d_{_CJK_CHARS}]+")  # letters of other scripts (Latin, kana, ...)

_ADVERTISING = re.compile(
    "|".join((
        r"https?://|www\.|\b[a-z0-9-]+\.(?:com|cn|net|org|cc|top|xyz|vip)\b",  # links
        r"(?<!\d)1[3-9]\d{9}(?!\d)",  # mobile phone numbers
        r"(?<![\d-])(?:\(0\d{2,3}\)|0\d{2,3}-)\d{7,8}(?!\d)|(?<!\d)400-?\d{3}-?\d{4}(?!\d)",  # landlines, hotlines
        r"(?:qq|扣扣)\s*(?:号|群)?\s*[:：]?\s*\d{5,11}",  # QQ numbers
        r"(?:微信|威信|薇信|v信|vx|wx)\s*(?:号|公众号)?\s*[:：]?\s*[a-z][-_a-z0-9]{5,19}",  # WeChat ids
        r"加(?:我)?(?:微信|威信|薇信|qq)|公众号",
        r"点击(?:在线)?咨询|免费咨询|咨询热线|预约热线|在线客服|(?:欢迎|请)(?:来|到)我院|我院(?:专家|采用|引进|特色)",
    )),
    re.IGNORECASE,
)

# An answer made only of these words tells the asker nothing: "see a doctor", "go to a proper
# hospital for a check", "please give more details". Any word outside the list (a department, a
# test, a drug, a disease) makes it an answer. Only short answers are checked.
_NON_ANSWER_WORDS = (
    "你好 您好 这位朋友 朋友 建议 最好 还是 应该 可以 需要 一定要 请 您 你 及时 尽快 尽早 马上 立即 立刻 赶紧 "
    "赶快 去 到 上 前往 找 正规 当地 附近 大 的 三甲 医院 专科 门诊 相关 科室 就医 就诊 看医生 医生 "
    "看一下 看看 问问 咨询 检查 一下 做个 做 面诊 诊治 诊断 明确 治疗 在 指导下 遵医嘱 听 "
    "吧 呢 啊 哦 哈 了 谢谢 祝 早日康复 身体健康 健康 不知道 不清楚 不好说 无法判断 说不好 不能确定 具体 "
    "情况 病情 提问 过于简单 无法 给你 满意的 答复 回答 希望 提供 完整的 病历 和 检查结果 详细 更多 信息 资料"
).split()
_NON_ANSWER = re.compile("(?:" + "|".join(sorted(map(re.escape, _NON_ANSWER_WORDS), key=len, reverse=True)) + ")+")
_NON_ANSWER_MAX_CHARS = 60
_NOT_WORD = re.compile(r"[\W_]+")


def chinese_share(text: str) -> float:
    """CJK characters / all letters (CJK included); digits and punctuation do not count."""
    chinese = sum(map(len, _CJK_RUN.findall(text)))
    letters = chinese + sum(map(len, _OTHER_LETTER_RUN.findall(text)))
    return chinese / letters if letters else 0.0


def is_non_answer(answer: str) -> bool:
    words = _NOT_WORD.sub("", answer)
    return len(words) <= _NON_ANSWER_MAX_CHARS and _NON_ANSWER.fullmatch(words) is not None


def bare(text: str) -> str:
    """Text without punctuation, spacing and case: what two texts are compared by."""
    return _NOT_WORD.sub("", text.lower())


def turns(example: Example) -> list[str]:
    return [text for pair in example.history for text in pair] + [example.question, example.answer]


@dataclass
class Rule:
    """A rule that looks at one example: `check` returns why it fails, or None."""

    name: str
    description: str
    check: Callable[[Example], str | None]


def example_rules(config: CleaningConfig, count_tokens: Callable[[Example], int] | None = None) -> list[Rule]:
    def empty(e):
        return "empty turn" if not all(turns(e)) else None

    def too_short(e):
        if len(e.question) < config.min_question_chars:
            return f"question of {len(e.question)} characters"
        if len(e.answer) < config.min_answer_chars:
            return f"answer of {len(e.answer)} characters"
        return None

    def too_long(e):
        if len(e.question) > config.max_question_chars:
            return f"question of {len(e.question)} characters"
        if len(e.answer) > config.max_answer_chars:
            return f"answer of {len(e.answer)} characters"
        return None

    def too_many_tokens(e):
        tokens = count_tokens(e)
        return f"{tokens} tokens" if tokens > config.max_example_tokens else None

    def not_chinese(e):
        for name, text in (("question", e.question), ("answer", e.answer)):
            share = chinese_share(text)
            if share < config.min_chinese_ratio:
                return f"{name}: {share:.0%} Chinese"
        return None

    def advertising(e):
        for text in turns(e):
            match = _ADVERTISING.search(text)
            if match:
                return f"matched {match.group(0)!r}"
        return None

    def non_answer(e):
        return "only refers to a doctor" if is_non_answer(e.answer) else None

    def repeats_question(e):
        for question, answer in [*e.history, (e.question, e.answer)]:
            bare_question, bare_answer = bare(question), bare(answer)
            if bare_answer and bare_answer in bare_question:
                return "answer equal to the question" if bare_answer == bare_question else "answer inside the question"
        return None

    shortest = f"question under {config.min_question_chars} or answer under {config.min_answer_chars} characters"
    longest = f"question over {config.max_question_chars} or answer over {config.max_answer_chars} characters"
    chinese = f"question or answer under {config.min_chinese_ratio:.0%} Chinese characters among letters"
    rules = [
        Rule("empty", "empty question, answer or earlier turn", empty),
        Rule("too_short", shortest, too_short),
        Rule("too_long", longest, too_long),
    ]
    if count_tokens is not None and config.max_example_tokens is not None:
        rules.append(Rule("too_many_tokens", f"chat over {config.max_example_tokens} tokens", too_many_tokens))
    rules += [
        Rule("not_chinese", chinese, not_chinese),
        Rule("advertising", "URL, phone number, QQ or WeChat id, or hospital advertising in any turn", advertising),
        Rule("non_answer", "answer only refers the asker to a doctor or asks for more details", non_answer),
        Rule("repeats_question", "answer equal to, or contained in, its question (punctuation and spacing aside)",
             repeats_question),
    ]
    return rules


# --- near duplicates ---------------------------------------------------------------------------

# MinHash LSH only proposes candidates; each is confirmed by the exact Jaccard similarity of the
# shingle sets, so a false candidate costs a comparison, a missed one a duplicate. Weighting
# misses 9:1 gives 14 bands of 9 rows for threshold 0.8 and 128 permutations: a pair at Jaccard
# 0.8 becomes a candidate with probability 1 - (1 - 0.8^9)^14 = 0.87, at 0.85 with 0.975
# (the default 1:1 weighting gives 0.40 and 0.69).
LSH_WEIGHTS = (0.1, 0.9)  # (false positive, false negative)
MINHASH_SEED = 1


def _identity(value: int) -> int:  # shingles arrive hashed, by `shingle_hashes`
    return value


@functools.cache
def _minhash_template(num_perm: int) -> MinHash:
    from datasketch import MinHash

    return MinHash(num_perm=num_perm, seed=MINHASH_SEED, hashfunc=_identity)


# Shingles are hashed with a 32-bit FNV-style polynomial over their code points, all positions
# of a question at once in numpy; datasketch then mixes each hash (murmur3 finaliser) before
# its permutations, so this simple hash is enough. (sha1 per shingle took 3x longer.)
_FNV_PRIME = np.uint32(0x01000193)


def shingle_hashes(key: str, n: int) -> np.ndarray:
    """Sorted unique uint32 hashes of the character n-grams of `key` (the whole key if shorter)."""
    codes = np.frombuffer(key.encode("utf-32-le"), dtype=np.uint32)
    count = max(codes.size - n + 1, 1)
    hashes = codes[:count].copy()
    for offset in range(1, min(n, codes.size)):
        hashes = hashes * _FNV_PRIME ^ codes[offset:offset + count]
    return np.unique(hashes)


@dataclass(slots=True)
class Fingerprint:
    """A question as a set of hashed character shingles and the MinHash of that set."""

    shingles: np.ndarray  # sorted unique uint32 hashes
    minhash: MinHash

    @classmethod
    def of(cls, question: str, config: CleaningConfig) -> Fingerprint:
        key = bare(question)  # punctuation and spacing do not make a question new
        shingles = shingle_hashes(key, config.shingle_chars)
        minhash = _minhash_template(config.minhash_permutations).copy()
        minhash.update_batch(shingles)
        return cls(shingles, minhash)

    def jaccard(self, other: Fingerprint) -> float:
        common = np.intersect1d(self.shingles, other.shingles, assume_unique=True).size
        union = self.shingles.size + other.shingles.size - common
        return common / union if union else 1.0


def exhaustive_bands(threshold: float, num_perm: int, miss: float = 1e-6) -> tuple[int, int]:
    """(bands, rows) with the most rows per band that still miss a pair at the threshold with
    probability below `miss`: for 0.8 and 128 permutations, 32 bands of 4 rows miss it with
    probability (1 - 0.8^4)^32 = 5e-8 (5 rows: 5e-5). More candidates to confirm, none lost."""
    for rows in range(num_perm, 0, -1):
        bands = num_perm // rows
        if bands >= 2 and (1 - threshold ** rows) ** bands < miss:
            return bands, rows
    return num_perm, 1


class NearDuplicateIndex:
    """Questions indexed by MinHash LSH; finds earlier ones that a new question nearly repeats.

    By default the bands follow LSH_WEIGHTS (fast, for de-duplicating the whole data set);
    `exhaustive=True` uses exhaustive_bands, for the few test and dev questions that no train
    question may come close to."""

    def __init__(self, config: CleaningConfig, exhaustive: bool = False):
        from datasketch import MinHashLSH

        self.threshold = config.near_duplicate_threshold
        num_perm = config.minhash_permutations
        if exhaustive:
            self.lsh = MinHashLSH(num_perm=num_perm, params=exhaustive_bands(self.threshold, num_perm))
        else:
            self.lsh = MinHashLSH(threshold=self.threshold, num_perm=num_perm, weights=LSH_WEIGHTS)
        self.fingerprints: dict[int, Fingerprint] = {}

    def add(self, key: int, fingerprint: Fingerprint) -> None:
        self.lsh.insert(key, fingerprint.minhash, check_duplication=False)
        self.fingerprints[key] = fingerprint

    def candidates(self, fingerprint: Fingerprint) -> list[int]:
        """Keys that share an LSH band with the question (unconfirmed), in insertion order."""
        return sorted(self.lsh.query(fingerprint.minhash))

    def nearest(self, fingerprint: Fingerprint) -> tuple[int, float] | None:
        """The most similar indexed question at or above the threshold, with its similarity."""
        scored = [(fingerprint.jaccard(self.fingerprints[key]), -key) for key in self.candidates(fingerprint)]
        best = max(scored, default=None)
        return (-best[1], best[0]) if best and best[0] >= self.threshold else None


# --- the report --------------------------------------------------------------------------------


@dataclass
class RuleReport:
    rule: str
    description: str
    dropped: int = 0
    examples: list[dict] = field(default_factory=list)

    def drop(self, example: Example, why: str) -> None:
        self.dropped += 1
        if len(self.examples) < EXAMPLES_PER_RULE:
            self.examples.append({
                "line": example.line,
                "question": shorten(example.question),
                "answer": shorten(example.answer),
                "why": why,
            })

    def to_dict(self) -> dict:
        return {"rule": self.rule, "description": self.description, "dropped": self.dropped, "examples": self.examples}


@dataclass
class NormaliseReport(RuleReport):
    changed: int = 0

    def note(self, before: Example, after: Example) -> None:
        """Count the example if normalisation changed any of its texts; show the first change."""
        change = first_change(before, after)
        if change is None:
            return
        self.changed += 1
        if len(self.examples) < EXAMPLES_PER_RULE:
            name, old, new = change
            self.examples.append({"line": before.line, "field": name, "before": shorten(old), "after": shorten(new)})

    def to_dict(self) -> dict:
        return {**super().to_dict(), "changed": self.changed}


def first_change(before: Example, after: Example) -> tuple[str, str, str] | None:
    """(field, text before, text after) of the first text that differs, earlier turns included."""
    fields = [("question", before.question, after.question), ("answer", before.answer, after.answer)]
    for turn, (old, new) in enumerate(zip(before.history, after.history, strict=True), start=1):
        fields += [(f"history {turn} question", old[0], new[0]), (f"history {turn} answer", old[1], new[1])]
    return next(((name, old, new) for name, old, new in fields if old != new), None)


def shorten(text: str) -> str:
    return text if len(text) <= EXAMPLE_CHARS else text[:EXAMPLE_CHARS] + "…"


# --- cleaning ----------------------------------------------------------------------------------


@dataclass
class CleanResult:
    kept: list[Example]
    fingerprints: list[Fingerprint]  # of the kept questions, aligned with `kept`
    reports: list[RuleReport]


def clean(
    examples: Iterable[Example],
    config: CleaningConfig,
    count_tokens: Callable[[Example], int] | None = None,
    total: int | None = None,
) -> CleanResult:
    """Apply the rules in order; keep the examples that pass them all."""
    normalised = NormaliseReport(
        "normalise", "full-width letters, digits and spaces made half-width, invisible characters removed, "
        "whitespace collapsed (counted in `changed`; drops nothing)")
    rules = example_rules(config, count_tokens)
    reports = {rule.name: RuleReport(rule.name, rule.description) for rule in rules}
    duplicate = RuleReport("duplicate", "the same question as an earlier example (the first is kept)")
    near_duplicate = RuleReport(
        "near_duplicate", f"question shingles ({config.shingle_chars}-grams) at least "
        f"{config.near_duplicate_threshold:g} Jaccard-similar to an earlier kept question (MinHash LSH)")

    kept, fingerprints, seen = [], [], {}
    index = NearDuplicateIndex(config)
    for raw in tqdm(examples, total=total, desc="clean", unit=" examples", disable=None):
        example = normalise(raw)
        normalised.note(raw, example)
        failed = next(((rule, why) for rule in rules if (why := rule.check(example)) is not None), None)
        if failed:
            reports[failed[0].name].drop(example, failed[1])
            continue
        if example.question in seen:
            duplicate.drop(example, f"same question as line {seen[example.question]}")
            continue
        seen[example.question] = example.line
        fingerprint = Fingerprint.of(example.question, config)
        match = index.nearest(fingerprint)
        if match:
            key, similarity = match
            near_duplicate.drop(example, f"{similarity:.2f} similar to line {kept[key].line}")
            continue
        index.add(len(kept), fingerprint)
        kept.append(example)
        fingerprints.append(fingerprint)
    return CleanResult(kept, fingerprints, [normalised, *reports.values(), duplicate, near_duplicate])


def token_counter(tokenizer_path: str, system_prompt: str) -> Callable[[Example], int]:
    """Tokens of an example as training sees it: the chat template when the tokenizer has one."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_path)

    def count(example: Example) -> int:
        messages = chat_messages(example, system_prompt)
        if tokenizer.chat_template:
            return len(tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True)["input_ids"])
        return len(tokenizer("\n".join(m["content"] for m in messages))["input_ids"])

    return count


def chat_messages(example: Example, system_prompt: str) -> list[dict]:
    """The example as chat messages: system prompt, earlier turns, then the question and answer."""
    messages = [{"role": "system", "content": system_prompt}]
    for question, answer in [*example.history, (example.question, example.answer)]:
        messages += [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
    return messages
