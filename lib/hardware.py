"""What the hardware did: peak memory and model FLOPs utilisation (MFU), for runs and benchmarks.

MFU counts the FLOPs the model needs, not those the GPU executed (Chowdhery et al. 2022, PaLM,
appendix B). For LoRA, per token:

    forward                              2 N          (N = all parameters, frozen base included)
    backward, gradients of activations   2 N          (needed to reach the adapters)
    backward, gradients of weights       2 N_trainable (only the adapters have weight gradients)
                                   ---------------
    model FLOPs per token              = 4 N + 2 N_trainable

Recomputation by gradient checkpointing and attention score FLOPs are not counted (at ~200
tokens per example, attention adds under 3% for a 3B model), so MFU reads as "how much of the
GPU's dense peak went into the model's own arithmetic".
"""

from __future__ import annotations

import resource
import sys

MFU_FORMULA = ("mfu = tokens_per_s * (4 * total_params + 2 * trainable_params) / (processes * peak_flops); "
               "peak_flops = the GPU's dense peak in the training dtype")

# Dense (no sparsity) peak TFLOP/s by GPU name and dtype, from the vendors' datasheets. Checked
# in this order, so that a name is matched by its most specific entry ("H100 PCIe" before "H100",
# "A100" before "A10", "L40S" and "L40" before "L4").
PEAK_TFLOPS = (
    ("H200", {"bfloat16": 989.0, "float16": 989.0, "float32": 67.0}),
    ("H100 PCIe", {"bfloat16": 756.0, "float16": 756.0, "float32": 51.0}),
    ("H100", {"bfloat16": 989.0, "float16": 989.0, "float32": 67.0}),  # SXM
    ("A100", {"bfloat16": 312.0, "float16": 312.0, "float32": 19.5}),
    ("L40S", {"bfloat16": 362.0, "float16": 362.0, "float32": 91.6}),
    ("L40", {"bfloat16": 181.0, "float16": 181.0, "float32": 90.5}),
    ("A10", {"bfloat16": 125.0, "float16": 125.0, "float32": 31.2}),
    ("L4", {"bfloat16": 121.0, "float16": 121.0, "float32": 30.3}),
    ("RTX 4090", {"bfloat16": 165.2, "float16": 165.2, "float32": 82.6}),
    ("RTX 3090", {"bfloat16": 71.0, "float16": 71.0, "float32": 35.6}),
    ("V100", {"float16": 125.0, "float32": 15.7}),
    ("T4", {"float16": 65.0, "float32": 8.1}),
    ("P100", {"float16": 18.7, "float32": 9.3}),
)


def peak_flops(device_name: str, dtype_name: str) -> float | None:
    """The datasheet peak in FLOP/s for a GPU name such as 'NVIDIA H100 80GB HBM3', or None."""
    for model, peaks in PEAK_TFLOPS:
        if model in device_name:
            return peaks[dtype_name] * 1e12 if dtype_name in peaks else None
    return None


def model_flops_per_token(total_params: int, trainable_params: int) -> int:
    return 4 * total_params + 2 * trainable_params


def mfu(tokens_per_s: float, total_params: int, trainable_params: int, processes: int,
        device_name: str, dtype_name: str) -> float | None:
    peak = peak_flops(device_name, dtype_name)
    if peak is None:
        return None
    return tokens_per_s * model_flops_per_token(total_params, trainable_params) / (processes * peak)


def free_memory() -> None:
    """Hand memory held by dropped tensors back: to Python, and the GPU's cache to the driver."""
    import gc

    gc.collect()
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()


def reset_peak_memory() -> None:
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()


def peak_memory() -> dict:
    """GPU allocator peak (allocated and reserved) on a GPU, else the process's peak RSS."""
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        return {
            "peak_memory_gb": torch.cuda.max_memory_allocated() / 2**30,
            "peak_memory_reserved_gb": torch.cuda.max_memory_reserved() / 2**30,
            "peak_memory_kind": "cuda_max_allocated",
        }
    return {"peak_memory_gb": peak_rss_gb(), "peak_memory_kind": "process_rss"}


def peak_rss_gb() -> float:
    """Peak resident memory of this process, GiB."""
    scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss is in KiB on Linux, bytes on macOS
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**30
