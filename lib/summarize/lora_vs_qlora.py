"""LoRA vs QLoRA, size by size: what quantising the base costs or gains in quality, time, memory.

Differences are QLoRA minus LoRA, averaged over the seeds where both are done, by paired bootstrap
over the shared test items (and over the seeds first, where there are several); ratios are
QLoRA / LoRA at the default seed (time_ratio 1.3 = QLoRA takes 30% longer). A p-value only with
several seeds: with one, the difference is between two trained adapters, and an item-only p-value
would claim more about the methods than the study measured.
"""

from __future__ import annotations

import numpy as np

from lib.config import Grid, parse_count, run_name
from lib.stats import BOOTSTRAP_SEED, hierarchical_estimates, is_missing, percentile_interval, sign_change_p_value
from lib.summarize.item_scores import STATISTICS, aligned_items
from lib.summarize.schema import RESAMPLED, Comparison, PairedDifference, SummaryRow

COMPARED = ("lora", "qlora")  # the pair compared run by run; differences are qlora - lora


def ratio(numerator, denominator) -> float | None:
    if is_missing(numerator) or is_missing(denominator) or denominator == 0:
        return None
    return float(numerator) / float(denominator)


def paired_difference(pairs: list[tuple[dict, dict]], metric: str, n_samples: int) -> PairedDifference | None:
    """mean over seeds of statistic(a) - statistic(b), over the items every run scored; `pairs` is
    one (a, b) of per-item scores per training seed. Its interval resamples the seeds, then the
    items, the same for both runs of a pair (lib.stats.hierarchical_estimates; with one seed the
    paired bootstrap over items). A p-value only where there are several
    seeds: with one, the interval says how sure we are about these two trained adapters, not
    about the methods, whose training randomness it leaves out."""
    if not all(scores for pair in pairs for scores in pair):
        return None
    aligned = aligned_items([scores for pair in pairs for scores in pair], metric)
    if not len(aligned[0]):
        return None
    values = np.stack([np.stack(aligned[i:i + 2], axis=1) for i in range(0, len(aligned), 2)])  # (seeds, items, 2, ..)
    statistic = STATISTICS[metric]

    def difference(sample: np.ndarray) -> float:
        return float(np.mean([statistic(seed[:, 0]) - statistic(seed[:, 1]) for seed in sample]))

    differences = hierarchical_estimates(values, difference, n_samples, BOOTSTRAP_SEED)
    low, high = percentile_interval(differences)
    return {"difference": difference(values), "ci_low": low, "ci_high": high,
            "p_value": sign_change_p_value(differences) if len(pairs) > 1 else None,
            "n": len(aligned[0]), "seeds": len(pairs), "resampled": RESAMPLED[len(pairs) > 1]}


def compare_methods(rows: list[SummaryRow], grid: Grid, default_seed: int, item_scores: dict[str, dict],
                    n_samples: int) -> list[Comparison]:
    """QLoRA against LoRA at every size where both default-seed runs are done: quality over the
    seeds where both are done, cost at the default seed."""
    by_run = {row["run"]: row for row in rows}

    def done_pair(size: str, seed: int) -> tuple[dict, dict] | None:
        pair = tuple(by_run.get(run_name(method, size, seed, default_seed)) for method in COMPARED)
        return pair if all(row and row["status"] == "done" for row in pair) else None

    comparisons = []
    for size in grid.sizes:
        default = done_pair(size, default_seed)
        if default is None:
            continue
        lora, qlora = default
        seeds = [pair for seed in grid.seeds if (pair := done_pair(size, seed))]
        scores = [(item_scores.get(q["run"]), item_scores.get(lo["run"])) for lo, q in seeds]  # qlora - lora
        comparisons.append({
            "size": size, "examples": parse_count(size), "lora_run": lora["run"], "qlora_run": qlora["run"],
            "rougeL_diff": paired_difference(scores, "rougeL", n_samples),
            "loss_diff": paired_difference(scores, "test_loss", n_samples),
            "time_ratio": ratio(qlora.get("wall_time_s"), lora.get("wall_time_s")),
            "memory_ratio": ratio(qlora.get("peak_memory_gb"), lora.get("peak_memory_gb")),
            "throughput_ratio": ratio(qlora.get("tokens_per_s"), lora.get("tokens_per_s")),
        })
    return comparisons
