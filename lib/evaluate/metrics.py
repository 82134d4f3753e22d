"""Text metrics of generated answers against the reference answers, with bootstrap intervals.

`python -m lib evaluate` (lib/evaluate/run.py) calls `item_scores` for each line of
predictions.jsonl and `corpus_metrics` for the metrics of eval.json, handing it those per-item
ROUGE scores (`item_rouge`) so that no pair is scored twice: rouge_chinese's LCS takes ~70 ms on
a pair of 400-character answers.

How text is tokenised:
  words       jieba.lcut (default dictionary and HMM), dropping tokens that are only whitespace.
              Punctuation stays, one token per mark, as in the rouge_chinese-based scripts
              (ChatGLM, MedicalGPT) that published Chinese ROUGE numbers come from:
              "多喝水，注意休息。" -> 多喝水 | ， | 注意 | 休息 | 。
  characters  sacrebleu's "zh" tokenizer: each CJK character is a token, runs of other characters
              are split as by 13a; for Chinese text this is character BLEU.

Metrics (names and units as in eval.json):
  rouge1, rouge2, rougeL   F1 x 100 on words per item, averaged over items. rouge_chinese with
                           its defaults: ROUGE-N compares the *sets* of distinct n-grams of the
                           two texts (exclusive=True), ROUGE-L the longest common subsequence of
                           the whole word sequences. An empty or whitespace-only prediction (or
                           reference) scores 0; rouge_chinese itself would raise on it.
  bleu4_char               sacrebleu corpus BLEU-4, tokenize="zh", default exponential smoothing:
                           one brevity penalty and one precision per n over all items, not a
                           mean of sentence BLEU.
  bleu4_word               the same on words joined by spaces, tokenize="none".
  distinct1, distinct2     distinct word n-grams / all word n-grams over all predictions x 100;
                           n-grams do not cross from one answer to the next.
  answer_chars             mean characters of the prediction, surrounding whitespace stripped.
  empty_rate               percent of predictions that are empty after stripping whitespace.
  truncated_rate           percent of predictions that stopped at the token limit.

Intervals are 95% percentile bootstraps over items (lib.stats) with one seed
(lib.stats.BOOTSTRAP_SEED), so every metric sees the same resamples. Means resample per-item values. BLEU resamples per-item sufficient
statistics (hypothesis and reference lengths, matches and totals for n = 1..4) and recomputes the
corpus score from their sums, which keeps 1,000 resamples well under a second. distinct-n is
not a sum over items: an item drawn twice repeats all its n-grams, so every resample's
distinct-n falls below the full set's (on 1,000 real answers by 20% for distinct-1 and 29% for
distinct-2, so a plain percentile interval would not even contain the estimate). Its interval is
lib.stats.recentred_bootstrap: the spread of the same resamples recentred on the point estimate
(each resample shifted by value - mean of the resamples), the sampling spread without the
resampling bias.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from functools import partial

import jieba
import numpy as np
from rouge_chinese import Rouge
from sacrebleu.metrics import BLEU
from scipy import sparse

from lib.stats import BOOTSTRAP_SEED, bootstrap, recentred_bootstrap

jieba.setLogLevel(logging.WARNING)  # not "Building prefix dict ..." in every evaluation log

ROUGE_NAMES = {"rouge1": "rouge-1", "rouge2": "rouge-2", "rougeL": "rouge-l"}
_ROUGE = Rouge()


def words(text: str) -> list[str]:
    """jieba words of `text` without whitespace tokens (punctuation kept)."""
    return [token for token in jieba.lcut(text) if token.strip()]


# --- per item --------------------------------------------------------------------------------


def item_scores(prediction: str, reference: str) -> dict:
    """{"rouge1", "rouge2", "rougeL"}: F1 x 100 of one prediction against its reference."""
    return rouge_of_words(words(prediction), words(reference))


def rouge_of_words(prediction_words: list[str], reference_words: list[str]) -> dict:
    """item_scores of two texts already split into words."""
    if not prediction_words or not reference_words:
        return dict.fromkeys(ROUGE_NAMES, 0.0)
    scores = _ROUGE.get_scores(" ".join(prediction_words), " ".join(reference_words))[0]
    return {name: f1(scores[key]["p"], scores[key]["r"]) for name, key in ROUGE_NAMES.items()}


def f1(precision: float, recall: float) -> float:
    """F1 x 100 (rouge_chinese adds 1e-8 to the denominator, so identical texts got 99.9999995)."""
    return 200 * precision * recall / (precision + recall) if precision + recall else 0.0


# --- corpus BLEU from per-item statistics --------------------------------------------------------

CHARACTER_BLEU = BLEU(tokenize="zh")
WORD_BLEU = BLEU(tokenize="none", force=True)  # force: the input is tokenised on purpose


def bleu_statistics(bleu: BLEU, predictions: Sequence[str], references: Sequence[str]) -> np.ndarray:
    """(items, 10): hypothesis length, reference length, matches n=1..4, totals n=1..4 per item.

    These are the sufficient statistics sacrebleu sums for corpus BLEU (the same methods its
    own paired bootstrap uses)."""
    return np.array(bleu._extract_corpus_statistics(list(predictions), [list(references)]), dtype=np.int64)


def bleu_of_statistics(bleu: BLEU, rows: np.ndarray) -> float:
    """Corpus BLEU (0-100) of the items whose statistics are `rows`."""
    return float(bleu._compute_score_from_stats(rows.sum(axis=0).tolist()).score)


# --- distinct-n ---------------------------------------------------------------------------------


def ngram_incidence(token_lists: list[list[str]], n: int) -> tuple[sparse.csr_matrix, np.ndarray]:
    """(n-grams x items) matrix of 1 where the item's answer contains the n-gram, and the number
    of n-grams (with repeats) of each item."""
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


def distinct_of_items(incidence: sparse.csr_matrix, totals: np.ndarray, items: np.ndarray) -> float:
    """distinct-n x 100 of the answers `items` (indices, repeats allowed); NaN without n-grams."""
    copies = np.bincount(items, minlength=len(totals))  # how often each item was drawn
    total = int(copies @ totals)
    if total == 0:
        return float("nan")
    distinct = np.count_nonzero(incidence @ copies)  # n-grams that occur in a drawn item
    return 100.0 * distinct / total


# --- all metrics -------------------------------------------------------------------------------


def corpus_metrics(
    predictions: list[str],
    references: list[str],
    truncated: list[bool],
    n_samples: int = 1000,
    seed: int = BOOTSTRAP_SEED,
    item_rouge: list[dict] | None = None,
) -> dict[str, dict]:
    """Every text metric of eval.json as {"value", "ci_low", "ci_high", "n"}; a metric that is
    undefined (distinct-n when no prediction has n words) is absent.

    `item_rouge`: each item's item_scores (extra keys are ignored, so the `scores` of
    predictions.jsonl do), when the caller has them already; else they are computed here."""
    if not len(predictions) == len(references) == len(truncated):
        raise ValueError(f"{len(predictions)} predictions, {len(references)} references, {len(truncated)} flags")
    if item_rouge is not None and len(item_rouge) != len(predictions):
        raise ValueError(f"{len(predictions)} predictions, {len(item_rouge)} items of ROUGE scores")
    if not predictions:
        return {}
    interval = partial(bootstrap, n_samples=n_samples, seed=seed)
    prediction_words = [words(p) for p in predictions]
    reference_words = [words(r) for r in references]
    if item_rouge is None:
        item_rouge = [rouge_of_words(p, r) for p, r in zip(prediction_words, reference_words)]

    metrics = {name: interval([item[name] for item in item_rouge]) for name in ROUGE_NAMES}
    for name, bleu, hypotheses, targets in (
        ("bleu4_char", CHARACTER_BLEU, predictions, references),
        ("bleu4_word", WORD_BLEU, [" ".join(w) for w in prediction_words], [" ".join(w) for w in reference_words]),
    ):
        metrics[name] = interval(bleu_statistics(bleu, hypotheses, targets), partial(bleu_of_statistics, bleu))
    for n in (1, 2):
        statistic = partial(distinct_of_items, *ngram_incidence(prediction_words, n))
        result = recentred_bootstrap(statistic, len(predictions), n_samples, seed)
        if result is not None:
            metrics[f"distinct{n}"] = result
    stripped = [p.strip() for p in predictions]
    metrics["answer_chars"] = interval([len(p) for p in stripped])
    metrics["empty_rate"] = interval([100.0 * (not p) for p in stripped])
    metrics["truncated_rate"] = interval([100.0 * bool(t) for t in truncated])
    return metrics
