"""The machine, and what its hardware did: peak memory and model FLOPs utilisation (MFU), for runs
and benchmarks.

    machine()              platform, CPU count, GPU names: in every result's provenance (lib.io.provenance)
    machine_description()  that, with the CPU's and GPU's models, the driver, CUDA and the packages
                           training uses: where a benchmark or gpu-check ran

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

import os
import platform
import resource
import shutil
import subprocess
import sys
from pathlib import Path

# --- the machine -----------------------------------------------------------------------------------


def machine() -> dict:
    """The platform, the CPU count and, where torch is already loaded, the GPUs' names."""
    info = {"platform": platform.platform(), "cpu_count": os.cpu_count()}
    torch = sys.modules.get("torch")  # only describe GPUs when torch is already loaded
    if torch is not None and torch.cuda.is_available():
        info["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return info


def machine_description() -> dict:
    """Where a benchmark ran: platform, CPU, GPU and driver, and the versions of the packages training uses."""
    import torch

    from lib.versions import versions_used

    info = {**machine(), "cpu": cpu_name(), "torch_cuda": torch.version.cuda}
    if torch.cuda.is_available():
        properties = torch.cuda.get_device_properties(0)
        info |= {"gpu": properties.name, "gpu_memory_gb": properties.total_memory / 2**30,
                 "compute_capability": f"{properties.major}.{properties.minor}", "driver": nvidia_driver_version()}
    else:
        info |= {"gpu": None, "gpu_memory_gb": None, "compute_capability": None, "driver": None}
    info["packages"] = versions_used()
    return info


def cpu_name() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def nvidia_driver_version() -> str | None:
    if shutil.which("nvidia-smi") is None:
        return None
    result = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                            check=False, capture_output=True, text=True)
    return result.stdout.strip().splitlines()[0] if result.returncode == 0 and result.stdout.strip() else None


# --- model FLOPs utilisation ---------------------------------------------------------------------

MFU_FORMULA = ("mfu = tokens_per_s * (4 * total_params + 2 * trainable_params) / (processes * peak_flops); "
               "peak_flops = the GPU's dense peak in the training dtype")

# Dense (no sparsity) peak TFLOP/s by GPU name and dtype: tensor-core bf16/fp16 without
# structured sparsity (datasheets print "with sparsity" figures at twice these), fp32 without tensor
# cores. A name is matched by the first entry it contains, so more specific names come first:
# "H100 NVL" and "H100 PCIe" before "H100", "H200 NVL" before "H200", and "H200" before "H20" (which
# "H200" contains), "A100" before "A10", "L40S" and "L40" before "L4".
PEAK_TFLOPS = (
    # NVIDIA H200 Tensor Core GPU datasheet (2024), NVL column: 1,671 sparse bf16/fp16, 60 fp32
    ("H200 NVL", {"bfloat16": 835.5, "float16": 835.5, "float32": 60.0}),
    # the same datasheet, SXM column: 1,979 sparse bf16/fp16, 67 fp32
    ("H200", {"bfloat16": 989.5, "float16": 989.5, "float32": 67.0}),
    # NVIDIA H20 (China) product brief: 148 bf16/fp16 dense, 44 fp32
    ("H20", {"bfloat16": 148.0, "float16": 148.0, "float32": 44.0}),
    # NVIDIA H100 Tensor Core GPU datasheet (2023), H100 NVL column: 1,671 sparse bf16/fp16, 60 fp32
    ("H100 NVL", {"bfloat16": 835.5, "float16": 835.5, "float32": 60.0}),
    # the same datasheet, H100 PCIe column: 1,513 sparse bf16/fp16, 51 fp32
    ("H100 PCIe", {"bfloat16": 756.5, "float16": 756.5, "float32": 51.0}),
    # the same datasheet, H100 SXM column: 1,979 sparse bf16/fp16, 67 fp32
    ("H100", {"bfloat16": 989.5, "float16": 989.5, "float32": 67.0}),
    # NVIDIA H800 datasheet, PCIe column: H100 PCIe's compute (1,513 sparse bf16/fp16, 51 fp32)
    ("H800 PCIe", {"bfloat16": 756.5, "float16": 756.5, "float32": 51.0}),
    # NVIDIA H800 datasheet, SXM column: H100 SXM's compute (1,979 sparse bf16/fp16, 67 fp32)
    ("H800", {"bfloat16": 989.5, "float16": 989.5, "float32": 67.0}),
    # NVIDIA A100 Tensor Core GPU datasheet: 312 bf16/fp16 dense, 19.5 fp32 (SXM and PCIe alike)
    ("A100", {"bfloat16": 312.0, "float16": 312.0, "float32": 19.5}),
    # NVIDIA A800 datasheet: A100's compute (312 bf16/fp16 dense, 19.5 fp32), less NVLink bandwidth
    ("A800", {"bfloat16": 312.0, "float16": 312.0, "float32": 19.5}),
    # NVIDIA L40S datasheet: 733 sparse bf16/fp16 (362.05 dense), 91.6 fp32
    ("L40S", {"bfloat16": 362.05, "float16": 362.05, "float32": 91.6}),
    # NVIDIA L40 datasheet: 362.1 sparse bf16/fp16 (181.05 dense), 90.5 fp32
    ("L40", {"bfloat16": 181.05, "float16": 181.05, "float32": 90.5}),
    # NVIDIA A10 datasheet: 125 bf16/fp16 dense, 31.2 fp32
    ("A10", {"bfloat16": 125.0, "float16": 125.0, "float32": 31.2}),
    # NVIDIA L4 datasheet: 242 sparse bf16/fp16 (121 dense), 30.3 fp32
    ("L4", {"bfloat16": 121.0, "float16": 121.0, "float32": 30.3}),
    # NVIDIA Ada Lovelace architecture whitepaper (RTX 4090): 165.2 dense fp16 tensor (fp32 accumulate), 82.6 fp32
    ("RTX 4090", {"bfloat16": 165.2, "float16": 165.2, "float32": 82.6}),
    # NVIDIA Ampere GA102 whitepaper (RTX 3090): 71 dense fp16 tensor (fp32 accumulate), 35.6 fp32
    ("RTX 3090", {"bfloat16": 71.0, "float16": 71.0, "float32": 35.6}),
    # NVIDIA V100 datasheet (SXM2): 125 fp16 tensor, 15.7 fp32; no bf16 on Volta
    ("V100", {"float16": 125.0, "float32": 15.7}),
    # NVIDIA T4 datasheet: 65 fp16 tensor, 8.1 fp32; no bf16 on Turing
    ("T4", {"float16": 65.0, "float32": 8.1}),
    # NVIDIA Tesla P100 datasheet (SXM2): 18.7 fp16, 9.3 fp32; no tensor cores
    ("P100", {"float16": 18.7, "float32": 9.3}),
)


def datasheet_model(device_name: str) -> str | None:
    """The PEAK_TFLOPS entry of a GPU name such as 'NVIDIA H100 80GB HBM3' ('H100'), or None."""
    return next((model for model, _ in PEAK_TFLOPS if model in device_name), None)


def peak_flops(device_name: str, dtype_name: str) -> float | None:
    """The datasheet peak in FLOP/s for a GPU name such as 'NVIDIA H100 80GB HBM3', or None."""
    model = datasheet_model(device_name)
    peaks = dict(PEAK_TFLOPS).get(model, {})
    return peaks[dtype_name] * 1e12 if dtype_name in peaks else None


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
    """Peak resident memory of this process, GiB.

    On Linux, VmHWM of /proc/self/status: ru_maxrss survives exec, so a process started by a large
    one (pytest after many tests, make plan from a notebook) would report its parent's peak.
    """
    try:
        with open("/proc/self/status") as status:
            kib = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
        return kib / 2**20
    except (OSError, StopIteration):
        scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss is in KiB on Linux, bytes on macOS
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**30
