"""The memory model (lib/memory.py): QLoRA's weights, the activation formula against autograd, the
tiny model's estimate against a measured training run.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace

import pytest
import torch

from builders import REPO_ROOT
from lib.architecture import QWEN2_5_3B, TINY, lora_parameter_count, qwen2_config
from lib.config import load_config
from lib.memory import GIB, cpu_runtime_baseline_gb, estimate_memory, layer_activation_bytes, training_setting


def test_qlora_weights_are_nf4_linear_layers_and_16_bit_rest():
    config = load_config("paper", "qlora")
    setting = training_setting(config, 8, 256, "bfloat16", "cuda")
    # 36 layers x (2 x 2048^2 + 2 x 2048 x 256 + 3 x 2048 x 11008) weights at 4 + 8/64 + 32/(64 x 256)
    # bits, and embedding + biases + norms at 2 bytes
    linear = 36 * (2 * 2048**2 + 2 * 2048 * 256 + 3 * 2048 * 11008)
    rest = 3_085_938_688 - linear
    expected = (linear * 4.126953125 / 8 + rest * 2) / GIB
    assert estimate_memory(QWEN2_5_3B, setting, 0.5).weights == pytest.approx(expected)
    assert expected == pytest.approx(1.91, abs=0.01)
    lora = training_setting(load_config("paper", "lora"), 8, 256, "bfloat16", "cuda")
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
    tiny = replace(TINY, vocab_size=500)
    one, two = (replace(tiny, num_hidden_layers=layers) for layers in (1, 2))
    torch_dtype = getattr(torch, dtype)
    measured = saved_bytes(two, config, torch_dtype) - saved_bytes(one, config, torch_dtype)
    setting = training_setting(config, 2, 64, dtype, "cpu")
    # under autocast the 16-bit copies of the fp32 adapters are kept too
    copies = lora_parameter_count(one, config.lora.r, setting.lora_targets) * 2 if setting.autocast else 0
    assert measured == layer_activation_bytes(tiny, setting) * 2 * 64 + copies


MEASURE_TRAINING_RSS = """
import json, sys, tempfile
from pathlib import Path
import torch
from lib.architecture import TINY
from lib.bench.gpu import Lengths, Variant, measure_variant, save_random_model, variant_config
from lib.hardware import peak_rss_gb
from lib.model import process_state

seq = int(sys.argv[1])
process_state()
scratch = Path(tempfile.mkdtemp())
variant = Variant("lora", batching="padded", attention="sdpa")
config = variant_config("demo", variant, save_random_model(TINY, torch.float32, scratch / "model"), (), [])
# rows of seq tokens, one a token shorter: every micro-batch is a padded 8 x seq
lengths = Lengths(((seq, seq // 2),) * 7 + ((seq - 1, seq // 2),), "fixed")
measured = measure_variant(config, variant, lengths, TINY.vocab_size, 1, 1, 0, scratch / "run")
print(json.dumps({"peak_gb": peak_rss_gb(),
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

    setting = training_setting(config, config.train.per_device_batch_size, seq, "float32", "cpu")
    estimated = estimate_memory(TINY, setting, baseline_gb)
    # The estimate counts live tensors; glibc keeps some freed blocks in its heap, so the
    # process's peak resident size runs 10-20% above it here.
    assert measured["peak_gb"] / estimated.total == pytest.approx(1.0, abs=0.3)
    # the training itself, not only the runtime, is counted (22% of the total for 8 x 256 tokens of the tiny model)
    assert estimated.allocated > 0.2 * estimated.total


def test_a_child_of_a_large_process_reports_its_own_peak():
    """ru_maxrss survives exec: a child of a 1 GiB process would report 1 GiB before its first import."""
    child = "from lib.hardware import peak_rss_gb; print(peak_rss_gb())"
    ballast = bytearray(2**30)
    ballast[::4096] = b"\1" * len(range(0, 2**30, 4096))  # touch every page: resident, not only reserved
    done = subprocess.run([sys.executable, "-c", child], cwd=REPO_ROOT, capture_output=True, text=True, check=True)
    del ballast
    assert float(done.stdout) < 0.5
