"""`python -m lib plan` (lib/plan.py): the 3B table for the paper's settings, the cards it fits, and
the measured peaks of bench-gpu and finished runs beside the estimate.
"""

from __future__ import annotations

import json

import pytest

from lib.architecture import QWEN2_5_3B
from lib.config import load_config
from lib.memory import GIB, estimate_memory, training_setting


def plan(run_cli, tmp_path, profile, *args):
    out = tmp_path / "plan"
    done = run_cli("plan", "--out", out, "--runs", tmp_path / "no-runs", "--profile", profile, *args)
    assert done.returncode == 0, done.stderr[-3000:]
    return (json.loads((out / f"plan-{profile}.json").read_text()), (out / f"plan-{profile}.md").read_text(),
            done.stdout)


def test_plan_prints_the_3b_table_for_the_paper_settings(run_cli, tmp_path):
    result, table, printed = plan(run_cli, tmp_path, "paper", "--seq", "256", "--seq", "1024",
                                  "--bench", tmp_path / "none.json")
    rows = {(row["method"], row["seq"]): row for row in result["estimates"]}
    assert result["settings"]["dtype"] == "bfloat16" and result["settings"]["device"] == "cuda"
    for seq in (256, 1024):
        lora, qlora = rows["lora", seq], rows["qlora", seq]
        assert qlora["total"] < lora["total"] and qlora["weights"] < lora["weights"] / 2.5
        # checkpointing keeps one 2 x 2048-byte input per token per layer instead of ~169 kB
        assert lora["activations_with_checkpointing"] < lora["activations_without_checkpointing"] / 20
        assert lora["total"] == pytest.approx(lora["allocated"] * 1.1 + 0.5)  # assumed slack + CUDA context
        assert qlora["fits"]["T4 16 GB"]
    # the logits the fused head never holds: 8 x 1024 x 151,936 fp32
    assert rows["lora", 1024]["unfused_logits"] == pytest.approx(8 * 1024 * 151_936 * 4 / GIB)
    assert "| lora | 8 x 1024 |" in table and "| qlora | 8 x 256 |" in table and printed == table


def test_plan_puts_measured_peaks_next_to_the_estimate(run_cli, tmp_path):
    from lib.bench.gpu import Variant, variant_record

    measured = variant_record(Variant("lora", False, "sdpa"), dtype="bfloat16", peak_memory_allocated_gb=8.0,
                              peak_memory_reserved_gb=8.8,
                              largest_batch={"rows": 8, "length": 512, "labelled_tokens": 2000})
    bench = tmp_path / "gpu.json"
    bench.write_text(json.dumps({"architecture": "qwen2.5-3b", "variants": [measured]}))
    result, table, _ = plan(run_cli, tmp_path, "paper", "--bench", bench)
    comparison, = result["measured"]
    setting = training_setting(load_config("paper", "lora"), 8, 512, "bfloat16", "cuda")
    assert comparison["ratio"] == pytest.approx(8.0 / estimate_memory(QWEN2_5_3B, setting, 0.5).allocated)
    # the measured reserved / allocated ratio replaces the assumed allocator slack
    assert result["settings"]["allocator_slack"] == pytest.approx(0.1)
    assert result["settings"]["allocator_slack_source"].startswith("measured")
    assert "| lora | 8 x 512 | 8.00 |" in table


def plan_in_process(monkeypatch, *args) -> dict:
    """memory_plan() as `python -m lib plan ARGS` computes it, with the CPU runtime's size fixed at 1 GiB
    (measuring it imports the training stack in a subprocess: seconds, and not what is tested)."""
    import argparse

    import lib.memory
    import lib.plan

    monkeypatch.setattr(lib.memory, "cpu_runtime_baseline_gb", lambda: 1.0)
    parser = argparse.ArgumentParser()
    lib.plan.add_arguments(parser)
    return lib.plan.memory_plan(parser.parse_args([str(arg) for arg in args]))


def bench_file(path, architecture: str, *variants) -> str:
    from lib.bench.gpu import Variant, variant_record

    records = [variant_record(Variant(method, "padded", "sdpa"), dtype="bfloat16", peak_memory_allocated_gb=allocated,
                              peak_memory_reserved_gb=reserved,
                              largest_batch={"rows": 8, "length": 512, "labelled_tokens": 2000})
               for method, allocated, reserved in variants]
    path.write_text(json.dumps({"architecture": architecture, "variants": records}))
    return path


def test_measurements_are_estimated_where_they_were_made(monkeypatch, tmp_path):
    # a CPU plan of the 3B model; bench-gpu and a run measured on CUDA; one method outside the grid
    bench = bench_file(tmp_path / "gpu-paper.json", "qwen2.5-3b", ("lora", 8.0, 8.8), ("dora", 9.0, 9.0))
    run = tmp_path / "runs" / "lora-10k"
    run.mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({
        "run": {"method": "lora"}, "train": {"per_device_batch_size": 8, "max_length": 1024},
        "model": {"attn_implementation": "sdpa"}}))
    (run / "train_metrics.json").write_text(json.dumps({
        "peak_memory_gb": 10.0, "peak_memory_reserved_gb": 12.0, "peak_memory_kind": "cuda_max_allocated",
        "dtype": "bfloat16"}))
    result = plan_in_process(monkeypatch, "--profile", "paper", "--device", "cpu", "--dtype", "float32",
                             "--bench", bench, "--runs", tmp_path / "runs")
    assert result["settings"]["device"] == "cpu" and result["settings"]["overhead_gb"] == 1.0
    lora = load_config("paper", "lora")
    for measured, seq, peak in zip(result["measured"], (512, 1024), (8.0, 10.0)):
        assert measured["device"] == "cuda"  # not the plan's cpu
        setting = training_setting(lora, 8, seq, "bfloat16", "cuda")
        assert measured["ratio"] == pytest.approx(peak / estimate_memory(QWEN2_5_3B, setting, 0.5).allocated)
    assert len(result["measured"]) == 2
    assert result["notes"] == [f"{bench}: dora-sdpa-padded: method 'dora' is not in the grid (lora, qlora): left out"]
    # the slack is the largest measured reserved / allocated (12 / 10), named by its source
    assert result["settings"]["allocator_slack"] == pytest.approx(0.2)
    assert (result["settings"]["allocator_slack_source"]
            == f"measured: reserved / allocated of {run / 'train_metrics.json'}")


def test_bench_results_of_another_architecture_are_left_out(monkeypatch, tmp_path):
    bench = bench_file(tmp_path / "gpu-demo.json", "tiny", ("lora", 0.5, 0.6))
    result = plan_in_process(monkeypatch, "--profile", "paper", "--bench", bench, "--runs", tmp_path / "no-runs")
    assert result["measured"] == []
    assert result["notes"] == [f"{bench}: measured 'tiny', not 'qwen2.5-3b': left out"]
    assert result["settings"]["allocator_slack_source"] == "assumed"
