"""The demo's general knowledge: generated facts outside medicine, for the general-ability track.

    python -m lib mcq-data --profile demo --track general --out data/processed/demo/general.jsonl

A fine-tuned model may lose what it knew before; to see that in the demo, its tiny base must
know something the medical fine-tuning never mentions. These are those facts: geography
(provincial and national capitals), history (dynasties' founders, authors of poems and novels)
and everyday science (animal classes, planets). Each is a (subject, answer) pair of a family
whose question and statements are templates, so that

    `general_pages`         writes encyclopedia pages stating them in varied wording, which the
                            tiny base is pretrained on among the medical pages (lib.tiny_model);
    `generate_general_mcq`  asks them as four-option items, the wrong options being the answers
                            of other subjects of the same family.

The same seed gives the same pages and items. The medical QA data (lib.data.synthetic) never
names a subject or answer of these families, so nothing in the fine-tuning data teaches or
contradicts them.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from lib.data.synthetic import LETTERS, four_option_item


@dataclass(frozen=True)
class Family:
    """Facts of one kind: (subject, answer) pairs, the item's question, and the page's statements."""
    name: str
    domain: str  # geography, history or science: the items' source is synthetic-general-<domain>
    facts: tuple[tuple[str, str], ...]
    question: str  # "{s}" is the subject
    statements: tuple[str, ...]  # "{s}" the subject, "{a}" the answer


def _pairs(text: str) -> tuple[tuple[str, str], ...]:
    return tuple(tuple(pair.split(":")) for pair in text.split())


FAMILIES = (
    Family("province", "geography", _pairs(
        "四川:成都 湖北:武汉 湖南:长沙 广东:广州 浙江:杭州 江苏:南京 山东:济南 河南:郑州 河北:石家庄 山西:太原 "
        "陕西:西安 甘肃:兰州 云南:昆明 贵州:贵阳 福建:福州 江西:南昌 安徽:合肥 辽宁:沈阳 吉林:长春 黑龙江:哈尔滨 "
        "青海:西宁 海南:海口"),
        "{s}省的省会是？",
        ("{s}省的省会是{a}。", "{a}是{s}省的省会，也是全省的政治和文化中心。", "{s}的省会城市是{a}。")),
    Family("country", "geography", _pairs(
        "法国:巴黎 日本:东京 英国:伦敦 德国:柏林 意大利:罗马 俄罗斯:莫斯科 埃及:开罗 泰国:曼谷 韩国:首尔 "
        "西班牙:马德里 加拿大:渥太华 澳大利亚:堪培拉 巴西:巴西利亚 印度:新德里 希腊:雅典 越南:河内 土耳其:安卡拉 "
        "阿根廷:布宜诺斯艾利斯"),
        "{s}的首都是？",
        ("{s}的首都是{a}。", "{a}是{s}的首都和最重要的城市之一。", "说到{s}的首都，就是{a}。")),
    Family("dynasty", "history", _pairs(
        "秦朝:嬴政 西汉:刘邦 东汉:刘秀 隋朝:杨坚 唐朝:李渊 北宋:赵匡胤 元朝:忽必烈 明朝:朱元璋 西晋:司马炎"),
        "{s}的开国皇帝是？",
        ("{s}的开国皇帝是{a}。", "{a}建立了{s}。", "历史上，{s}由{a}建立。")),
    Family("poem", "history", _pairs(
        "《静夜思》:李白 《春晓》:孟浩然 《登鹳雀楼》:王之涣 《悯农》:李绅 《咏鹅》:骆宾王 《江雪》:柳宗元 "
        "《游子吟》:孟郊 《清明》:杜牧 《春望》:杜甫 《元日》:王安石"),
        "{s}的作者是？",
        ("{s}的作者是{a}。", "{a}写下了{s}。", "{s}是{a}的名作。")),
    Family("novel", "history", _pairs("《红楼梦》:曹雪芹 《西游记》:吴承恩 《水浒传》:施耐庵 《三国演义》:罗贯中 "
                                      "《儒林外史》:吴敬梓"),
           "{s}的作者是？",
           ("{s}的作者是{a}。", "{a}写出了长篇小说{s}。", "{s}出自{a}之手。")),
    Family("animal", "science", _pairs(
        "鲸:哺乳动物 蝙蝠:哺乳动物 海豚:哺乳动物 青蛙:两栖动物 蝾螈:两栖动物 蛇:爬行动物 乌龟:爬行动物 鳄鱼:爬行动物 "
        "鲨鱼:鱼类 金鱼:鱼类 企鹅:鸟类 麻雀:鸟类 蜜蜂:昆虫 蝴蝶:昆虫"),
        "{s}属于哪一类动物？",
        ("{s}属于{a}。", "从分类上看，{s}是{a}。", "{s}是一种{a}。")),
    Family("planet", "science", _pairs(
        "离太阳最近的行星:水星 太阳系中最大的行星:木星 被称为红色星球的行星:火星 带有明显光环的行星:土星 "
        "人类居住的行星:地球 离太阳最远的行星:海王星 最亮的行星:金星"),
        "{s}是？",
        ("{s}是{a}。", "天文学中，{s}就是{a}。", "{a}是{s}。")),
)


def facts() -> list[tuple[Family, str, str]]:
    """Every (family, subject, answer)."""
    return [(family, subject, answer) for family in FAMILIES for subject, answer in family.facts]


def general_page(family: Family, subject: str, answer: str, rng: random.Random) -> str:
    """A short encyclopedia paragraph stating one fact twice, in two of its family's wordings."""
    return "".join(template.format(s=subject, a=answer) for template in rng.sample(family.statements, 2))


def general_pages(n_pages: int, seed: int) -> list[tuple[str, str]]:
    """`n_pages` (title, text) pages, each fact in turn, worded afresh each time."""
    rng = random.Random(seed)
    every = facts()
    return [(subject, general_page(family, subject, answer, rng))
            for family, subject, answer in (every[i % len(every)] for i in range(n_pages))]


def generate_general_mcq(n: int, seed: int) -> list[dict]:
    """`n` distinct four-option items asking the facts (each fact once before any is asked again
    with other wrong options); each letter is the answer of n/4 of them (±1)."""
    rng = random.Random(seed)
    answers = [LETTERS[i % 4] for i in range(n)]
    rng.shuffle(answers)
    items, seen = [], set()
    order = facts()
    attempts = 0
    while len(items) < n:
        if attempts % len(order) == 0:
            rng.shuffle(order)
        family, subject, correct = order[attempts % len(order)]
        attempts += 1
        if attempts > 50 * n + 1000:
            raise ValueError(f"cannot make {n} distinct general items from {len(order)} facts")
        pool = sorted({answer for _, answer in family.facts} - {correct})
        wrong = rng.sample(pool, 3)
        key = (subject, correct, frozenset(wrong))
        if key in seen:
            continue
        seen.add(key)
        items.append(four_option_item(f"syn-general-{len(items)}", f"synthetic-general-{family.domain}",
                                      family.question.format(s=subject), correct, wrong, answers[len(items)]))
    return items
