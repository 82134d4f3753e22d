"""LoRA vs QLoRA (lib/summarize/lora_vs_qlora.py): paired differences and cost ratios."""

from __future__ import annotations

import pytest

from builders import SUMMARY_GRID, scaling_of, synthetic_study, write_run
from lib.config import Grid


def test_lora_vs_qlora_differences_and_cost_ratios(tmp_path):
    runs = synthetic_study(tmp_path)
    scaling = scaling_of(runs)
    comparisons = scaling["lora_vs_qlora"]
    assert [c["size"] for c in comparisons] == list(SUMMARY_GRID.sizes)
    first = comparisons[0]
    assert (first["lora_run"], first["qlora_run"], first["examples"]) == ("lora-1k", "qlora-1k", 1000)
    assert first["time_ratio"] == pytest.approx(1.5)        # 150 s / 100 s
    assert first["memory_ratio"] == pytest.approx(0.5)      # 5 GB / 10 GB
    assert first["throughput_ratio"] == pytest.approx(1.0)
    # QLoRA's items were made 0.05 nats worse, and 0.5 ROUGE-L points lower, plus noise
    loss = first["loss_diff"]
    assert loss["ci_low"] <= loss["difference"] <= loss["ci_high"] and loss["n"] == 300
    assert loss["difference"] == pytest.approx(0.05, abs=0.1)
    assert scaling["trends"]["rougeL"]["lora"]["slope_per_doubling"]["value"] == pytest.approx(3.0, abs=0.5)


def test_paired_difference_of_a_constant_shift_is_exact(tmp_path):
    runs = tmp_path / "runs"
    items = [1.0, 2.0, 3.0, 4.0]
    for size in ("1k", "2k"):
        write_run(runs, f"lora-{size}", items, [10.0, 20.0, 30.0, 40.0], cost={"wall_time_s": 10.0})
        write_run(runs, f"qlora-{size}", [x + 0.5 for x in items], [12.0, 22.0, 32.0, 42.0], cost={"wall_time_s": 13.0})
    grid = Grid(methods=("lora", "qlora"), sizes=("1k", "2k"), seeds=(42,))
    comparison = scaling_of(runs, grid)["lora_vs_qlora"][0]
    assert comparison["rougeL_diff"]["difference"] == pytest.approx(2.0)
    assert comparison["rougeL_diff"]["ci_low"] == pytest.approx(2.0) == comparison["rougeL_diff"]["ci_high"]
    assert comparison["loss_diff"]["difference"] == pytest.approx(0.5)
    assert comparison["time_ratio"] == pytest.approx(1.3)
    assert comparison["memory_ratio"] is None  # unknown memory is no ratio, not 0
