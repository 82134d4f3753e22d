"""The memory planner (lib.bench.memory, `python -m lib plan`): QLoRA's weights, the activation
formula against autograd, the tiny model's estimate against a measured training run, the 3B table
and the measured peaks beside it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace

import pytest
import torch

from builders import REPO_ROOT
from lib.architecture import QWEN2_5_3B, lora_parameter_count, qwen2_config, tiny_architecture
from lib.config import load_config
from lib.memory import GIB, cpu_runtime_baseline_gb, estimate_memory, layer_activation_bytes, training_setting


def test_qlora_weights_are_nf4_linear_layers_and_16_bit_rest():
    config = load_config("paper", "qlora")
    setting = training_setting(config, "qlora", 8, 256, "bfloat16", "cuda")
    # 36 layers x (2 x 2048^2 + 2 x 2048 x 256 + 3 x 2048 x 11008) weights at 4 + 8/64 + 32/(64 x 256)
    # bits, and embedding + biases + norms at 2 bytes
    linear = 36 * (2 * 2048**2 + 2 * 2048 * 256 + 3 * 2048 * 11008)
    rest = 3_085_938_688 - linear
    expected = (linear * 4.126953125 / 8 + rest * 2) / GIB
    assert estimate_memory(QWEN2_5_3B, setting, 0.5).weights == pytest.approx(expected)
    assert expected == pytest.approx(1.91, abs=0.01)
    lora = training_setting(load_config("paper", "lora"), "lora", 8, 256, "bfloat16", "cuda")
    assert estimate_memory(QWEN2_5_3B, lora, 0.5).weights == pytest.approx(3_085_938_688 * 2 / GIB)


def saved_bytes(arch, config, dtype) -> int:
    """Bytes of the tensors autograd keeps from one forward pass of a LoRA model (parameters excluded)."""
    from peft import get_peft_model
    from transformers import Qwen2ForCausalLM

    from lib.train import lora_config

    torch.manual_seed(0)
    model = get_peft_model(Qwen2ForCausalLM(qwen2_config(arch)).to(dtype), lora_config(config))
    model.train()
    ids = torch.randint(1, arch.vocab_size, (2, 64))
    mask = torch.ones_like(ids)
    mask[0, -1] = 0  # one padded position, as in the study's batches
    parameters = {p.untyped_storage().data_ptr() for p in model.parameters()}
    saved = {}

    def keep(tensor):
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in parameters:
            saved[storage.data_ptr()] = storage.nbytes()
        return tensor

    with (torch.autograd.graph.saved_tensors_hooks(keep, lambda tensor: tensor),
          torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == torch.bfloat16)):
        model.base_model.model.model(input_ids=ids, attention_mask=mask)
    return sum(saved.values())


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_layer_formula_is_what_autograd_saves(dtype):
    """One layer more adds exactly the formula's bytes per token (on a CPU: dropout keeps its noise)."""
    config = load_config("demo", "lora")
    tiny = replace(tiny_architecture(), vocab_size=500)
    one, two = (replace(tiny, num_hidden_layers=layers) for layers in (1, 2))
    torch_dtype = getattr(torch, dtype)
    measured = saved_bytes(two, config, torch_dtype) - saved_bytes(one, config, torch_dtype)
    setting = training_setting(config, "lora", 2, 64, dtype, "cpu")
    # under autocast the 16-bit copies of the fp32 adapters are kept too
    copies = lora_parameter_count(one, config.lora.r, setting.lora_targets) * 2 if setting.autocast else 0
    assert measured == layer_activation_bytes(tiny, setting) * 2 * 64 + copies


MEASURE_TRAINING_RSS = """
import json, resource, sys, tempfile
from pathlib import Path
import torch
from lib.architecture import tiny_architecture
from lib.bench.gpu import Lengths, Variant, measure_variant, save_random_model, variant_config
from lib.model import process_state

seq = int(sys.argv[1])
process_state()
scratch = Path(tempfile.mkdtemp())
tiny = tiny_architecture()
variant = Variant("lora", batching="padded", attention="sdpa")
config = variant_config("demo", variant, save_random_model(tiny, torch.float32, scratch / "model"), (), [])
# rows of seq tokens, one a token shorter: every micro-batch is a padded 8 x seq
lengths = Lengths(((seq, seq // 2),) * 7 + ((seq - 1, seq // 2),), "fixed")
measured = measure_variant(config, variant, lengths, tiny.vocab_size, 1, 1, 0, scratch / "run")
print(json.dumps({"peak_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
                  "largest": measured["largest_batch"]}))
"""


@pytest.mark.slow
def test_tiny_estimate_is_within_30_percent_of_a_measured_training_run():
    config = load_config("demo", "lora")
    seq = config.train.max_length
    training = subprocess.Popen([sys.executable, "-c", MEASURE_TRAINING_RSS, str(seq)], cwd=REPO_ROOT,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    baseline_gb = cpu_runtime_baseline_gb()  # its own subprocess, while the training runs
    stdout, stderr = training.communicate(timeout=300)
    assert training.returncode == 0, stderr[-3000:]
    measured = json.loads(stdout.strip().splitlines()[-1])
    assert measured["largest"]["rows"] == config.train.per_device_batch_size and measured["largest"]["length"] == seq

    setting = training_setting(config, "lora", config.train.per_device_batch_size, seq, "float32", "cpu")
    estimated = estimate_memory(tiny_architecture(), setting, baseline_gb)
    # The estimate counts live tensors; glibc keeps some freed blocks in its heap, so the
    # process's peak resident size runs 10-20% above it here.
    assert measured["peak_gb"] / estimated.total == pytest.approx(1.0, abs=0.3)
    # the training itself, not only the runtime, is counted (22% of the total for 8 x 256 tokens of the tiny model)
    assert estimated.allocated > 0.2 * estimated.total


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
    setting = training_setting(load_config("paper", "lora"), "lora", 8, 512, "bfloat16", "cuda")
    assert comparison["ratio"] == pytest.approx(8.0 / estimate_memory(QWEN2_5_3B, setting, 0.5).allocated)
    # the measured reserved / allocated ratio replaces the assumed allocator slack
    assert result["settings"]["allocator_slack"] == pytest.approx(0.1)
    assert result["settings"]["allocator_slack_source"].startswith("measured")
    assert "| lora | 8 x 512 | 8.00 |" in table


def plan_in_process(monkeypatch, *args) -> dict:
    """memory_plan() as `python -m lib plan ARGS` computes it, with the CPU runtime's size fixed at 1 GiB
    (measuring it imports the training stack in a subprocess: seconds, and not what is tested)."""
    import argparse

    from lib import memory as planner

    monkeypatch.setattr(planner, "cpu_runtime_baseline_gb", lambda: 1.0)
    parser = argparse.ArgumentParser()
    planner.add_arguments(parser)
    return planner.memory_plan(parser.parse_args([str(arg) for arg in args]))


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
        setting = training_setting(lora, "lora", 8, seq, "bfloat16", "cuda")
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
