"""The study's metrics, each declared once (METRICS), and the metrics of generated answers.

`python -m lib evaluate` (lib/evaluate/run.py) calls `item_scores` for each line of
predictions.jsonl and `corpus_metrics` for the metrics of eval.json, handing it those per-item
ROUGE scores (`item_rouge`) so that no pair is scored twice: rouge_chinese's LCS takes ~70 ms on
a pair of 400-character answers.

The registry, METRICS, maps each metric's name (its key in eval.json, its column in summary.csv)
to a `Metric`: labels, decimals shown, direction, tokenisation, interval, and for the metrics of
generated text the function that computes it. Every later stage reads it: `corpus_metrics`
computes each registered metric that has a compute function; `python -m lib summarize` orders
summary.csv's columns by it and explains them in summary.md; `python -m lib report` takes its
table headers, decimals and macro names from it; `python -m lib figures` its axis labels. To add
a metric of generated text, add one entry with its compute function (a function of `Answers`
that returns lib.stats.bootstrap's {"value", "ci_low", "ci_high", "n"}, or None where the
metric is undefined): it then appears in eval.json, summary.csv, summary.md and the report's
results table and macros (\\Base<Name>, \\Best<Name>, ...).

How text is tokenised:
  words       jieba.lcut (default dictionary and HMM), dropping tokens that are only whitespace.
              Punctuation stays, one token per mark, as in the rouge_chinese-based scripts
              (ChatGLM, MedicalGPT) that published Chinese ROUGE numbers come from:
              "多喝水，注意休息。" -> 多喝水 | ， | 注意 | 休息 | 。
  characters  sacrebleu's "zh" tokenizer: each CJK character is a token, runs of other characters
              are split as by 13a; for Chinese text this is character BLEU.

ROUGE follows rouge_chinese's defaults: ROUGE-N compares the *sets* of distinct n-grams of the
two texts (exclusive=True), ROUGE-L the longest common subsequence of the whole word sequences.
An empty or whitespace-only prediction (or reference) scores 0; rouge_chinese itself would
raise on it. BLEU is sacrebleu's corpus BLEU-4 with its default exponential smoothing: one
brevity penalty and one precision per n over all items, not a mean of sentence BLEU.

Intervals are 95% percentile bootstraps over items (lib.stats) with one seed
(lib.stats.BOOTSTRAP_SEED), so every metric sees the same resamples. Means resample per-item
values. BLEU resamples per-item sufficient statistics (hypothesis and reference lengths, matches
and totals for n = 1..4) and recomputes the corpus score from their sums, which keeps 1,000
resamples well under a second. distinct-n is not a sum over items: an item drawn twice repeats
all its n-grams, so every resample's distinct-n falls below the full set's (on 1,000 real
answers by 20% for distinct-1 and 29% for distinct-2, so a plain percentile interval would not
even contain the estimate). Its interval is lib.stats.recentred_bootstrap: the spread of the
same resamples recentred on the point estimate (each resample shifted by value - mean of the
resamples), the sampling spread without the resampling bias.

jieba, rouge_chinese, sacrebleu and scipy load on first use: the analysis and the report read
the registry and must start fast.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache, cached_property, partial

import numpy as np

from lib.stats import BOOTSTRAP_SEED, bootstrap, mean_statistic, recentred_bootstrap

ROUGE_NAMES = {"rouge1": "rouge-1", "rouge2": "rouge-2", "rougeL": "rouge-l"}


# --- tokenisation ------------------------------------------------------------------------------


@cache
def jieba_segmenter():
    import jieba

    jieba.setLogLevel(logging.WARNING)  # not "Building prefix dict ..." in every evaluation log
    return jieba


def words(text: str) -> list[str]:
    """jieba words of `text` without whitespace tokens (punctuation kept)."""
    return [token for token in jieba_segmenter().lcut(text) if token.strip()]


# --- per item --------------------------------------------------------------------------------


@cache
def rouge_scorer():
    from rouge_chinese import Rouge

    return Rouge()


def item_scores(prediction: str, reference: str) -> dict:
    """{"rouge1", "rouge2", "rougeL"}: F1 x 100 of one prediction against its reference."""
    return rouge_of_words(words(prediction), words(reference))


def rouge_of_words(prediction_words: list[str], reference_words: list[str]) -> dict:
    """item_scores of two texts already split into words."""
    if not prediction_words or not reference_words:
        return dict.fromkeys(ROUGE_NAMES, 0.0)
    scores = rouge_scorer().get_scores(" ".join(prediction_words), " ".join(reference_words))[0]
    return {name: f1(scores[key]["p"], scores[key]["r"]) for name, key in ROUGE_NAMES.items()}


def f1(precision: float, recall: float) -> float:
    """F1 x 100 (rouge_chinese adds 1e-8 to the denominator, so identical texts got 99.9999995)."""
    return 200 * precision * recall / (precision + recall) if precision + recall else 0.0


# --- corpus BLEU from per-item statistics --------------------------------------------------------


@cache
def bleu_scorer(tokenize: str):
    """sacrebleu's BLEU-4 with `tokenize` ("zh": characters; "none": the words as given)."""
    from sacrebleu.metrics import BLEU

    return BLEU(tokenize=tokenize, force=tokenize == "none")  # force: the input is tokenised on purpose


def bleu_statistics(bleu, predictions: Sequence[str], references: Sequence[str]) -> np.ndarray:
    """(items, 10): hypothesis length, reference length, matches n=1..4, totals n=1..4 per item.

    These are the sufficient statistics sacrebleu sums for corpus BLEU (the same methods its
    own paired bootstrap uses)."""
    return np.array(bleu._extract_corpus_statistics(list(predictions), [list(references)]), dtype=np.int64)


def bleu_of_statistics(bleu, rows: np.ndarray) -> float:
    """Corpus BLEU (0-100) of the items whose statistics are `rows`."""
    return float(bleu._compute_score_from_stats(rows.sum(axis=0).tolist()).score)


# --- distinct-n ---------------------------------------------------------------------------------


def ngram_incidence(token_lists: list[list[str]], n: int):
    """(n-grams x items) sparse matrix of 1 where the item's answer contains the n-gram, and the
    number of n-grams (with repeats) of each item."""
    from scipy import sparse

    ids: dict[tuple, int] = {}
    rows, columns = [], []
    totals = np.zeros(len(token_lists), dtype=np.int64)
    for item, tokens in enumerate(token_lists):
        grams = [tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1)]
        totals[item] = len(grams)
        for gram in set(grams):
            rows.append(ids.setdefault(gram, len(ids)))
            columns.append(item)
    incidence = sparse.csr_matrix((np.ones(len(rows)), (rows, columns)), shape=(len(ids), len(token_lists)))
    return incidence, totals


def distinct_of_items(incidence, totals: np.ndarray, items: np.ndarray) -> float:
    """distinct-n x 100 of the answers `items` (indices, repeats allowed); NaN without n-grams."""
    copies = np.bincount(items, minlength=len(totals))  # how often each item was drawn
    total = int(copies @ totals)
    if total == 0:
        return float("nan")
    distinct = np.count_nonzero(incidence @ copies)  # n-grams that occur in a drawn item
    return 100.0 * distinct / total


# --- what the metrics of generated text read ------------------------------------------------------


@dataclass
class Answers:
    """A run's generated answers with their references, and what several metrics share, worked
    out once on first use: the jieba words and each item's ROUGE scores."""
    predictions: list[str]
    references: list[str]
    truncated: list[bool]  # the answer stopped at the token limit
    n_samples: int = 1_000
    seed: int = BOOTSTRAP_SEED
    given_rouge: list[dict] | None = None  # each item's item_scores, when the caller has them

    @cached_property
    def prediction_words(self) -> list[list[str]]:
        return [words(p) for p in self.predictions]

    @cached_property
    def reference_words(self) -> list[list[str]]:
        return [words(r) for r in self.references]

    @cached_property
    def item_rouge(self) -> list[dict]:
        if self.given_rouge is not None:
            return self.given_rouge
        return [rouge_of_words(p, r) for p, r in zip(self.prediction_words, self.reference_words)]

    @cached_property
    def stripped(self) -> list[str]:
        """The predictions without surrounding whitespace."""
        return [p.strip() for p in self.predictions]

    def interval(self, values, statistic: Callable[[np.ndarray], float] = mean_statistic) -> dict:
        """The statistic of per-item `values` with its bootstrap interval over the items."""
        return bootstrap(values, statistic, n_samples=self.n_samples, seed=self.seed)


def mean_rouge(name: str) -> Callable[[Answers], dict]:
    """F1 x 100 on words per item (rouge1, rouge2 or rougeL of item_scores), averaged over items."""
    return lambda answers: answers.interval([item[name] for item in answers.item_rouge])


def corpus_bleu(tokenize: str) -> Callable[[Answers], dict]:
    """Corpus BLEU-4 on characters ("zh") or on jieba words joined by spaces ("none")."""
    def compute(answers: Answers) -> dict:
        if tokenize == "none":
            hypotheses = [" ".join(w) for w in answers.prediction_words]
            references = [" ".join(w) for w in answers.reference_words]
        else:
            hypotheses, references = answers.predictions, answers.references
        bleu = bleu_scorer(tokenize)
        return answers.interval(bleu_statistics(bleu, hypotheses, references), partial(bleu_of_statistics, bleu))
    return compute


def distinct(n: int) -> Callable[[Answers], dict | None]:
    """Distinct word n-grams / all word n-grams over all predictions x 100 (n-grams do not cross
    from one answer to the next); None when no prediction has n words."""
    def compute(answers: Answers) -> dict | None:
        statistic = partial(distinct_of_items, *ngram_incidence(answers.prediction_words, n))
        return recentred_bootstrap(statistic, len(answers.predictions), answers.n_samples, answers.seed)
    return compute


def answer_chars(answers: Answers) -> dict:
    """Mean characters of the prediction, surrounding whitespace stripped."""
    return answers.interval([len(p) for p in answers.stripped])


def empty_rate(answers: Answers) -> dict:
    """Percent of predictions that are empty after stripping whitespace."""
    return answers.interval([100.0 * (not p) for p in answers.stripped])


def truncated_rate(answers: Answers) -> dict:
    """Percent of predictions that stopped at the token limit."""
    return answers.interval([100.0 * bool(t) for t in answers.truncated])


# --- the registry --------------------------------------------------------------------------------

WORDS = "jieba words"
CHARACTERS = "characters"
MODEL_TOKENS = "the model's own tokenizer"
NOT_TOKENISED = "-"
MEAN_OVER_ITEMS = "percentile bootstrap of the mean over items"
CORPUS_OVER_ITEMS = "percentile bootstrap over items, corpus score from summed per-item statistics"
RECENTRED = "recentred bootstrap over items (lib.stats.recentred_bootstrap)"
TOKEN_WEIGHTED = "percentile bootstrap over items of sum(NLL) / sum(tokens)"


# The multiple-choice tracks (eval.json's keys) and the scorings of each (lib/evaluate/multiple_choice.py):
# eval.json keeps letter accuracy as <track>.overall, cloze accuracy as <track>.acc and <track>.acc_norm,
# and each item's right or wrong as <track>.items {id: [letter, acc, acc_norm]}.
MCQ_TRACKS = {"mcq": ("医学选择题", "medical MCQ"), "general": ("通用选择题", "general MCQ")}
MCQ_SCORINGS = {"letter": ("overall", "accuracy", "准确率·字母", "accuracy, letter"),
                "acc": ("acc", "acc", "准确率·完形", "accuracy, cloze (acc)"),
                "acc_norm": ("acc_norm", "acc_norm", "准确率·完形按字归一", "accuracy, cloze per character (acc_norm)")}


@dataclass(frozen=True)
class Metric:
    """One metric of eval.json and summary.csv, as every stage shows it."""
    name: str  # key in eval.json's metrics, column of summary.csv; the report's macros: \\Base<Name>...
    chinese: str  # label in the report's tables and the figures (plain text, unit included)
    english: str  # label in the figures and summary.md
    decimals: int  # shown in the report
    higher_is_better: bool | None  # None: descriptive, neither way is better (answer length)
    tokenised: str  # what text is split into for it
    interval: str  # how its 95% interval is computed
    compute: Callable[[Answers], dict | None] | None = None  # metrics of generated text only
    computed_in: str = "lib/evaluate/metrics.py"  # where a metric without `compute` comes from
    optional: bool = False  # measured only when switched on: a summary column only where a run has it
    # in the `metrics` of every finished evaluation, with a number: an eval.json without it is damaged
    # (lib.runs); distinct-n is undefined where no answer has n words, MCQ accuracy comes from `mcq`
    always: bool = True
    from_eval: str | None = None  # where eval.json keeps it outside `metrics` ("mcq.acc_norm"), dotted


def track_metric(track: str, scoring: str) -> str:
    """The registered name of a track's accuracy by a scoring: mcq_accuracy (letter), general_acc_norm, ..."""
    return f"{track}_{MCQ_SCORINGS[scoring][1]}"


METRICS: dict[str, Metric] = {metric.name: metric for metric in (
    Metric("test_loss", "测试损失", "test loss (nats/token)", 3, False, MODEL_TOKENS, TOKEN_WEIGHTED,
           computed_in="lib/evaluate/likelihood.py (lib/evaluate/run.py loss_metrics)"),
    Metric("perplexity", "困惑度", "perplexity", 2, False, MODEL_TOKENS, "exp of test_loss's interval",
           computed_in="lib/evaluate/run.py loss_metrics: exp(test_loss)"),
    Metric("rouge1", "ROUGE-1", "ROUGE-1 (F1 x 100)", 1, True, WORDS, MEAN_OVER_ITEMS, mean_rouge("rouge1")),
    Metric("rouge2", "ROUGE-2", "ROUGE-2 (F1 x 100)", 1, True, WORDS, MEAN_OVER_ITEMS, mean_rouge("rouge2")),
    Metric("rougeL", "ROUGE-L", "ROUGE-L (F1 x 100)", 1, True, WORDS, MEAN_OVER_ITEMS, mean_rouge("rougeL")),
    Metric("bleu4_char", "BLEU-4（字）", "BLEU-4 (characters)", 1, True, "characters (sacrebleu zh)",
           CORPUS_OVER_ITEMS, corpus_bleu("zh")),
    Metric("bleu4_word", "BLEU-4（词）", "BLEU-4 (words)", 1, True, WORDS, CORPUS_OVER_ITEMS, corpus_bleu("none")),
    Metric("distinct1", "Distinct-1", "distinct-1 (%)", 1, True, WORDS, RECENTRED, distinct(1), always=False),
    Metric("distinct2", "Distinct-2", "distinct-2 (%)", 1, True, WORDS, RECENTRED, distinct(2), always=False),
    Metric("answer_chars", "答案长度（字）", "answer length (characters)", 0, None, CHARACTERS, MEAN_OVER_ITEMS,
           answer_chars),
    Metric("empty_rate", "空答案（%）", "empty answers (%)", 1, False, NOT_TOKENISED, MEAN_OVER_ITEMS, empty_rate),
    Metric("truncated_rate", "截断（%）", "answers cut at the token limit (%)", 1, False, MODEL_TOKENS,
           MEAN_OVER_ITEMS, truncated_rate),
    *(Metric(track_metric(track, scoring), f"{chinese}{scoring_chinese}（%）", f"{english} {scoring_english} (%)", 1,
             True, MODEL_TOKENS, MEAN_OVER_ITEMS,
             computed_in=f"lib/evaluate/multiple_choice.py mcq_summary (eval.json {track}.{statistic})",
             always=False, from_eval=f"{track}.{statistic}")
      for track, (chinese, english) in MCQ_TRACKS.items()
      for scoring, (statistic, _, scoring_chinese, scoring_english) in MCQ_SCORINGS.items()),
    *(Metric(f"judge_{aspect}", f"评审{chinese}（1-5）", f"judge: {aspect} (1-5)", 2, True, NOT_TOKENISED,
             "percentile bootstrap of the mean over the items the judge scored",
             computed_in="lib/evaluate/judge.py judge_predictions", optional=True, always=False)
      for aspect, chinese in (("accuracy", "准确性"), ("helpfulness", "帮助性"), ("safety", "安全性"))),
)}


# --- all metrics of generated text -----------------------------------------------------------------


def corpus_metrics(
    predictions: list[str],
    references: list[str],
    truncated: list[bool],
    n_samples: int = 1000,
    seed: int = BOOTSTRAP_SEED,
    item_rouge: list[dict] | None = None,
) -> dict[str, dict]:
    """Every registered metric with a compute function, as {"value", "ci_low", "ci_high", "n"};
    a metric that is undefined (distinct-n when no prediction has n words) is absent.

    `item_rouge`: each item's item_scores (extra keys are ignored, so the `scores` of
    predictions.jsonl do), when the caller has them already; else they are computed here."""
    if not len(predictions) == len(references) == len(truncated):
        raise ValueError(f"{len(predictions)} predictions, {len(references)} references, {len(truncated)} flags")
    if item_rouge is not None and len(item_rouge) != len(predictions):
        raise ValueError(f"{len(predictions)} predictions, {len(item_rouge)} items of ROUGE scores")
    if not predictions:
        return {}
    answers = Answers(predictions, references, truncated, n_samples, seed, item_rouge)
    results = {name: metric.compute(answers) for name, metric in METRICS.items() if metric.compute}
    return {name: result for name, result in results.items() if result is not None}
