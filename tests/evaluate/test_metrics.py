"""Text metrics (lib/evaluate/metrics.py) against values computed by hand, and the metric
registry: one entry is all a new metric of generated text needs to reach eval.json, the summary
and the report.

Word tokens are jieba's; each test first pins the segmentation it relies on, so a change of jieba
shows up as a failed segmentation, not as a puzzling score. ROUGE-N of rouge_chinese compares
the sets of distinct n-grams; F1 = 2PR / (P + R).
"""

from __future__ import annotations

import csv
import json
import math
import subprocess
import sys

import pytest
import sacrebleu

from builders import REPO_ROOT, read_macros, write_run
from lib.cli import main
from lib.evaluate.metrics import MEAN_OVER_ITEMS, METRICS, WORDS, Metric, corpus_metrics, item_scores, words
from lib.stats import bootstrap
from lib.tex import format_number, macro_name

# Pair A: the answer leaves out half of the advice.
HYPOTHESIS_A = "高血压患者应该低盐饮食"
REFERENCE_A = "高血压患者要低盐饮食并且按时服药"
# Pair B: the same advice in another order, with punctuation.
HYPOTHESIS_B = "注意休息，多喝温水。"
REFERENCE_B = "多喝水，注意休息。"


def test_words_are_jieba_tokens_without_whitespace_and_with_punctuation():
    assert words(HYPOTHESIS_A) == ["高血压", "患者", "应该", "低盐", "饮食"]
    assert words(REFERENCE_A) == ["高血压", "患者", "要", "低", "盐", "饮食", "并且", "按时", "服药"]
    assert words(HYPOTHESIS_B) == ["注意", "休息", "，", "多", "喝", "温水", "。"]
    assert words(REFERENCE_B) == ["多喝水", "，", "注意", "休息", "。"]
    assert words("多喝水 \n 注意休息") == ["多喝水", "注意", "休息"]
    assert words(" \n\t ") == []


def test_rouge_of_pair_a_by_hand():
    # unigrams: hypothesis 5, reference 9, shared {高血压, 患者, 饮食} = 3
    #   P = 3/5, R = 3/9, F1 = 2 * (1/5) / (3/5 + 1/3) = 3/7
    # bigrams: hypothesis 4, reference 8, shared {高血压 患者} = 1
    #   P = 1/4, R = 1/8, F1 = 2 * (1/32) / (3/8) = 1/6
    # LCS: 高血压 患者 饮食 = 3, P = 3/5, R = 3/9, F1 = 3/7
    scores = item_scores(HYPOTHESIS_A, REFERENCE_A)
    assert scores == pytest.approx({"rouge1": 300 / 7, "rouge2": 100 / 6, "rougeL": 300 / 7})


def test_rouge_of_pair_b_by_hand_counts_punctuation():
    # unigrams: hypothesis 7, reference 5, shared {注意, 休息, ，, 。} = 4
    #   P = 4/7, R = 4/5, F1 = 2 * (16/35) / (48/35) = 2/3
    # bigrams: hypothesis 6, reference 4, shared {注意 休息} = 1: P = 1/6, R = 1/4, F1 = 1/5
    # LCS: 注意 休息 。 = 3 (， comes before 注意 in the reference), P = 3/7, R = 3/5, F1 = 1/2
    scores = item_scores(HYPOTHESIS_B, REFERENCE_B)
    assert scores == pytest.approx({"rouge1": 200 / 3, "rouge2": 20.0, "rougeL": 50.0})


def test_identical_texts_score_100_and_empty_predictions_score_0():
    assert item_scores(REFERENCE_A, REFERENCE_A) == {"rouge1": 100.0, "rouge2": 100.0, "rougeL": 100.0}
    for empty in ("", "   ", "\n\n"):
        assert item_scores(empty, REFERENCE_A) == {"rouge1": 0.0, "rouge2": 0.0, "rougeL": 0.0}
    assert item_scores(REFERENCE_A, "") == {"rouge1": 0.0, "rouge2": 0.0, "rougeL": 0.0}


def test_bleu_of_one_pair_by_hand():
    metrics = corpus_metrics([HYPOTHESIS_A], [REFERENCE_A], [False], n_samples=10)
    # words: hypothesis 5, reference 9 -> brevity penalty exp(1 - 9/5) = exp(-0.8)
    #   matches: 1-grams 3/5, 2-grams 1/4, 3-grams 0/3, 4-grams 0/2; sacrebleu's exp smoothing
    #   gives a zero count 1/(2^k * total) for the k-th zero order: 3-grams 1/(2*3), 4-grams 1/(4*2)
    word_bleu = 100 * math.exp(-0.8) * (3 / 5 * 1 / 4 * 1 / 6 * 1 / 8) ** (1 / 4)
    # characters: hypothesis 11, reference 16 -> brevity penalty exp(1 - 16/11)
    #   1-grams 9/11 (all but 应 该), 2-grams 7/10 (高血 血压 压患 患者 低盐 盐饮 饮食),
    #   3-grams 5/9 (高血压 血压患 压患者 低盐饮 盐饮食), 4-grams 3/8 (高血压患 血压患者 低盐饮食)
    char_bleu = 100 * math.exp(1 - 16 / 11) * (9 / 11 * 7 / 10 * 5 / 9 * 3 / 8) ** (1 / 4)
    assert metrics["bleu4_word"]["value"] == pytest.approx(word_bleu)  # 10.62
    assert metrics["bleu4_char"]["value"] == pytest.approx(char_bleu)  # 37.31


PREDICTIONS = [HYPOTHESIS_A, HYPOTHESIS_B, "", "建议到心血管内科就诊，监测血压。", "多喝水"]
REFERENCES = [REFERENCE_A, REFERENCE_B, "饭后不要立即平卧。", "建议心内科就诊并每天测量血压。", "多喝水，多休息。"]


def test_bleu_point_estimates_are_sacrebleus_corpus_bleu():
    metrics = corpus_metrics(PREDICTIONS, REFERENCES, [False] * 5, n_samples=50)
    characters = sacrebleu.corpus_bleu(PREDICTIONS, [REFERENCES], tokenize="zh").score
    word_text = [[" ".join(words(t)) for t in texts] for texts in (PREDICTIONS, REFERENCES)]
    word = sacrebleu.corpus_bleu(word_text[0], [word_text[1]], tokenize="none").score
    assert metrics["bleu4_char"]["value"] == pytest.approx(characters) and characters > 0
    assert metrics["bleu4_word"]["value"] == pytest.approx(word) and word > 0
    for name in ("bleu4_char", "bleu4_word"):
        assert metrics[name]["ci_low"] <= metrics[name]["value"] <= metrics[name]["ci_high"]


def test_rouge_is_the_mean_of_item_scores_with_lib_stats_bootstrap():
    metrics = corpus_metrics(PREDICTIONS, REFERENCES, [False] * 5, n_samples=200, seed=3)
    per_item = [item_scores(p, r)["rougeL"] for p, r in zip(PREDICTIONS, REFERENCES)]
    assert metrics["rougeL"] == bootstrap(per_item, n_samples=200, seed=3)
    assert metrics["rougeL"]["n"] == 5 and metrics["rougeL"]["ci_low"] < metrics["rougeL"]["ci_high"]


def test_rouge_scores_the_caller_has_are_used_not_recomputed():
    computed = corpus_metrics(PREDICTIONS, REFERENCES, [False] * 5, n_samples=50)
    given = [{**item_scores(p, r), "loss": 1.0} for p, r in zip(PREDICTIONS, REFERENCES)]  # predictions.jsonl scores
    assert corpus_metrics(PREDICTIONS, REFERENCES, [False] * 5, n_samples=50, item_rouge=given) == computed
    made_up = [dict.fromkeys(("rouge1", "rouge2", "rougeL"), float(i)) for i in range(5)]
    metrics = corpus_metrics(PREDICTIONS, REFERENCES, [False] * 5, n_samples=50, item_rouge=made_up)
    assert metrics["rougeL"]["value"] == 2.0  # the mean of 0..4: taken as given
    with pytest.raises(ValueError, match="5 predictions, 4 items of ROUGE scores"):
        corpus_metrics(PREDICTIONS, REFERENCES, [False] * 5, item_rouge=made_up[:4])


def test_distinct_n_by_hand():
    # 建议 | 多喝水 and 建议 | 多 | 休息: 5 words, 4 distinct -> 80; bigrams 建议 多喝水, 建议 多,
    # 多 休息: 3 of 3 distinct -> 100 (no bigram across the two answers)
    predictions = ["建议多喝水", "建议多休息"]
    assert [words(p) for p in predictions] == [["建议", "多喝水"], ["建议", "多", "休息"]]
    metrics = corpus_metrics(predictions, ["多喝水", "多休息"], [False, False], n_samples=100)
    assert metrics["distinct1"]["value"] == pytest.approx(80.0)
    assert metrics["distinct2"]["value"] == pytest.approx(100.0)


def test_distinct_interval_is_centred_on_the_estimate():
    # resamples repeat answers and so lower distinct-n; the recentred interval still holds it
    predictions = [f"患者第{i}天出现{symptom}，建议{advice}。" for i, (symptom, advice) in
                   enumerate([("头痛", "休息"), ("发热", "多喝水"), ("咳嗽", "复查"), ("腹泻", "补液")] * 10)]
    metrics = corpus_metrics(predictions, predictions, [False] * 40, n_samples=300)
    for name in ("distinct1", "distinct2"):
        assert metrics[name]["ci_low"] < metrics[name]["value"] < metrics[name]["ci_high"]


def test_lengths_empty_and_truncated_rates():
    metrics = corpus_metrics(["  多喝水 ", "", "注意休息"], ["a", "b", "c"], [True, False, False], n_samples=50)
    assert metrics["answer_chars"]["value"] == pytest.approx((3 + 0 + 4) / 3)
    assert metrics["empty_rate"]["value"] == pytest.approx(100 / 3)
    assert metrics["truncated_rate"]["value"] == pytest.approx(100 / 3)


def test_all_empty_predictions_do_not_crash_and_leave_distinct_out():
    metrics = corpus_metrics(["", " ", "\n"], REFERENCES[:3], [False, True, False], n_samples=50)
    assert {name: metrics[name]["value"] for name in ("rouge1", "rouge2", "rougeL", "bleu4_char", "bleu4_word")} == \
        dict.fromkeys(("rouge1", "rouge2", "rougeL", "bleu4_char", "bleu4_word"), 0.0)
    assert "distinct1" not in metrics and "distinct2" not in metrics  # no words: undefined, absent
    assert metrics["empty_rate"]["value"] == 100.0 and metrics["answer_chars"]["value"] == 0.0
    assert corpus_metrics([], [], []) == {}


def test_the_same_seed_gives_the_same_intervals():
    first = corpus_metrics(PREDICTIONS, REFERENCES, [False] * 5, n_samples=100, seed=7)
    assert first == corpus_metrics(PREDICTIONS, REFERENCES, [False] * 5, n_samples=100, seed=7)
    assert first != corpus_metrics(PREDICTIONS, REFERENCES, [False] * 5, n_samples=100, seed=8)


# --- the registry ---------------------------------------------------------------------------------


def test_every_registered_metric_has_its_own_macro_name_and_labels():
    names = [macro_name(name) for name in METRICS]
    assert len(set(names)) == len(METRICS) and all(name == metric.name for name, metric in METRICS.items())
    assert all(metric.chinese and metric.english and metric.decimals >= 0 for metric in METRICS.values())
    # a metric without a compute function says where it comes from
    assert all(metric.compute or metric.computed_in != "lib/evaluate/metrics.py" for metric in METRICS.values())


def test_corpus_metrics_computes_every_registered_metric_of_generated_text():
    results = corpus_metrics([HYPOTHESIS_A, HYPOTHESIS_B], [REFERENCE_A, REFERENCE_B], [False, True], n_samples=50)
    assert list(results) == [name for name, metric in METRICS.items() if metric.compute]


def answer_words(answers) -> dict:
    """Mean jieba words per answer: the metric a newcomer registers in the test below."""
    return answers.interval([len(w) for w in answers.prediction_words])


def test_one_registry_entry_carries_a_new_metric_into_eval_json_the_summary_and_the_report(tmp_path, monkeypatch):
    monkeypatch.setitem(METRICS, "answer_words", Metric(
        "answer_words", "答案词数", "answer length (words)", 1, None, WORDS, MEAN_OVER_ITEMS, answer_words))
    runs, results, out = tmp_path / "runs", tmp_path / "results", tmp_path / "generated"
    answers = {"base": [HYPOTHESIS_A, HYPOTHESIS_A], "lora-1k": [REFERENCE_A, HYPOTHESIS_B]}
    for run, predictions in answers.items():
        metrics = corpus_metrics(predictions, [REFERENCE_A, REFERENCE_B], [False, False], n_samples=50)
        write_run(runs, run, [3.0, 2.0] if run == "base" else [2.0, 1.0], metrics=metrics)
    # HYPOTHESIS_A has 5 words; REFERENCE_A 9 and HYPOTHESIS_B 7 (the segmentations pinned above)
    eval_json = json.loads((runs / "lora-1k" / "eval.json").read_text(encoding="utf-8"))
    assert eval_json["metrics"]["answer_words"]["value"] == 8.0

    grid = ["--profile", "demo", "--methods", "lora", "--sizes", "1k", "--seeds", "42"]
    main(["summarize", "--runs", str(runs), "--out", str(results), *grid])
    with (results / "summary.csv").open(encoding="utf-8") as handle:
        rows = {row["run"]: row for row in csv.DictReader(handle)}
    assert float(rows["base"]["answer_words"]) == 5.0 and float(rows["lora-1k"]["answer_words"]) == 8.0
    assert rows["lora-1k"]["answer_words_ci_low"] != ""
    summary_md = (results / "summary.md").read_text(encoding="utf-8")
    assert "| answer_words |" in summary_md and "5.00 [5.00, 5.00]" in summary_md
    assert "| answer_words | answer length (words) | - | jieba words |" in summary_md

    main(["report", "--results", str(results), "--runs", str(runs), "--data", str(tmp_path / "data"),
          "--out", str(out), *grid])
    macros = read_macros(out)
    assert macros["BaseAnswerWords"] == "5.0" and macros["BestAnswerWords"] == "8.0"
    assert macros["BestGainAnswerWords"] == "3.0" and macros["LoraLargestAnswerWords"] == "8.0"
    assert macros["BestAnswerWordsLow"] == format_number(float(rows["lora-1k"]["answer_words_ci_low"]), 1)
    results_table = (out / "tables" / "results.tex").read_text(encoding="utf-8")
    assert "答案词数" in results_table and r"\ValueCI{8.0}" in results_table


def test_the_summary_and_the_report_start_without_the_text_metric_libraries():
    # the registry lives beside the metrics; reading it must not load what computing them needs
    code = ("import sys, lib.summarize, lib.report.write, lib.figures; "
            "print(sorted(m for m in ('jieba', 'rouge_chinese', 'sacrebleu', 'scipy') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
