"""The memory model of LoRA and QLoRA training: the peak memory of one micro-batch, estimated
without a GPU. `python -m lib plan` (lib.plan) tabulates it for the grid; lib.train asks it whether
gradient checkpointing is needed (train.gradient_checkpointing: auto).

For one micro-batch of `batch` rows of `seq` tokens it adds up:

    weights       16-bit, or for a 4-bit method (quantization.load_in_4bit, QLoRA) the linear layers
                  in NF4 with double quantisation (embeddings, norms and biases stay 16-bit, as
                  bitsandbytes leaves them)
    adapters      the LoRA matrices, their gradients and AdamW's two moments
    activations   what autograd keeps from the forward pass for the backward pass, per layer
                  (formula below), all layers or, with gradient checkpointing, one layer's input
                  each plus one layer recomputed during the backward pass
    loss head     TRL's fused LM head: the logits are computed in tiles of 4,096 tokens x 32,768
                  vocabulary entries and never held whole (B x L x V fp32 would be 4.6 GiB at
                  8 x 1024 x 151,936; plan-<profile>.md shows that figure for comparison)
    backward      gradients alive at once while one layer is back-propagated
    overhead      GPU: the CUDA context and the caching allocator's slack (outside
                  torch.cuda.max_memory_allocated); CPU: the resident size of the training stack
                  before any model is loaded, measured in a subprocess

Every memory number is in GiB (2^30 bytes), as torch reports them. The shapes and parameter counts
it starts from are lib.architecture's.
"""

from __future__ import annotations

import functools
import subprocess
import sys
from dataclasses import dataclass, replace

from lib.architecture import Architecture, linear_shapes, lora_parameter_count, lora_targets, parameter_counts
from lib.config import Config
from lib.io import REPO_ROOT

GIB = 2**30

# --- precision -------------------------------------------------------------------------------------

DTYPE_BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}

# NF4 with double quantisation (Dettmers et al. 2023, QLoRA, section 3): 4 bits per weight, one
# 8-bit absmax per block of 64 weights, one fp32 constant per 256 such blocks:
# 4 + 8/64 + 32/(64 x 256) = 4.127 bits per weight.
NF4_BITS_PER_WEIGHT = 4 + 8 / 64 + 32 / (64 * 256)


# lib.train keeps the adapters of both methods in fp32 on every device (lib.train.keep_adapters_in_fp32).
ADAPTER_BYTES = 4


# --- activations -------------------------------------------------------------------------------------

# TRL's fused LM head (trl/kernels/chunked_logprob.py): logits in tiles of this many tokens x this
# many vocabulary entries, one tile buffer in the training dtype.
HEAD_TOKEN_TILE = 4_096
HEAD_VOCAB_TILE = 32_768
# On a CPU (no Triton) the tile is folded in torch: the backward holds y, z, log p, p, the gradient
# and two temporaries, plus the tile buffer: 8 fp32 tiles (trl/kernels/chunked_logprob.py _backward_tile).
CPU_HEAD_BACKWARD_TILES = 8


@dataclass(frozen=True)
class TrainingSetting:
    """Everything the estimate depends on besides the architecture."""
    load_in_4bit: bool  # the base's linear layers in NF4 (quantization.load_in_4bit: QLoRA)
    batch: int  # rows of one micro-batch (1 padding-free: all its examples in one row)
    seq: int  # tokens per row
    dtype: str  # training dtype: bfloat16 | float16 | float32
    device: str  # cuda | cpu
    lora_r: int
    lora_targets: tuple[str, ...]
    lora_dropout: float
    gradient_checkpointing: bool
    # sdpa gets an explicit mask (padding, or a padding-free row's block-diagonal one) and repeats the kv heads;
    # flash_attention_2 runs on the unpadded sequences and needs neither
    masked: bool = True

    @property
    def tokens(self) -> int:
        return self.batch * self.seq

    @property
    def autocast(self) -> bool:
        """fp32 adapters on a 16-bit model run under autocast, which keeps 16-bit copies of them."""
        return ADAPTER_BYTES > DTYPE_BYTES[self.dtype]


def layer_activation_bytes(arch: Architecture, setting: TrainingSetting) -> float:
    """Bytes autograd keeps per token for one decoder layer, counted tensor by tensor.

    Korthikanti et al. 2022 ("Reducing Activation Recomputation in Large Transformer Models",
    section 4.1) count 34 s b h + 5 a s^2 b bytes for a GPT layer in 16-bit; a Qwen2 layer under
    LoRA differs: no dropout outside LoRA, fused attention (no s^2 scores), RMSNorm in fp32,
    grouped-query attention, a SwiGLU MLP of width I, and frozen projections that keep no input.
    With p = bytes of the training dtype, per token:

        2 RMSNorms           2 x (4 h + 4)          fp32 copy of the input + 1/rms
        each adapted proj.   (p + m) x in_features  LoRA's (dropped-out) input + dropout mask,
                             + p x r                 and A's output
        attention            p x (2 h + 2 k) + 4 a  q, k, v after RoPE, output, fp32 logsumexp;
                                                     k = h when sdpa repeats the kv heads (it does
                                                     with a mask), else kv_heads x head_dim
        attention mask       p x s                   sdpa's B x s x s mask, converted to the dtype per layer
                                                     (padding-free: s is the whole row)
        SwiGLU MLP           3 p x I                 gate, silu(gate), up

    m = 1 byte on a GPU (a bool dropout mask), on a CPU the dropout's scaled noise in the adapter
    dtype. Qwen2.5-3B, bf16 on a GPU, all-linear, sdpa: 169,000 + 2 s bytes per token per layer,
    6.1 MB per token for 36 layers. tests/test_memory.py checks this formula against the tensors autograd saves.
    """
    p = DTYPE_BYTES[setting.dtype]
    h, inter, heads = arch.hidden_size, arch.intermediate_size, arch.num_attention_heads
    mask = 0 if setting.lora_dropout == 0 else 1 if setting.device == "cuda" else ADAPTER_BYTES
    shapes = linear_shapes(arch)
    norms = 2 * (4 * h + 4)
    adapters = sum((p + mask) * shapes[name][0] + p * setting.lora_r for name in setting.lora_targets)
    kv = h if setting.masked else arch.kv_size
    attention = p * (2 * h + 2 * kv) + 4 * heads
    attention_mask = p * setting.seq if setting.masked else 0
    mlp = 3 * p * inter
    return norms + adapters + attention + attention_mask + mlp


def backward_working_bytes(arch: Architecture, setting: TrainingSetting) -> float:
    """Gradients alive at once while one layer is back-propagated, per token (measured on a CPU with
    torch.profiler for several h and I): the MLP's, I wide, in the training dtype; under autocast
    two fp32 ones through LoRA's cast and dropout, as wide as the widest adapted input (I with
    down_proj adapted); and a few h wide."""
    p = DTYPE_BYTES[setting.dtype]
    h, inter = arch.hidden_size, arch.intermediate_size
    widest_adapted = max(linear_shapes(arch)[name][0] for name in setting.lora_targets)
    fp32_path = 2 * 4 * widest_adapted if setting.autocast else 0
    return p * inter + fp32_path + (2 * p + 4) * h


def loss_head_bytes(arch: Architecture, setting: TrainingSetting) -> dict:
    """TRL's fused LM head: what it keeps for backward (per scored token) and its backward working set.

    On a GPU only the tokens with a label are scored (all of them in this estimate: an upper bound);
    the tile buffer is allocated full width. On a CPU every position is scored, and the CPU tile
    holds only the vocabulary (the pages beyond it are never touched)."""
    p = DTYPE_BYTES[setting.dtype]
    h, scored = arch.hidden_size, setting.tokens
    tile_rows = min(scored, HEAD_TOKEN_TILE)
    if setting.device == "cuda":
        tiles = tile_rows * HEAD_VOCAB_TILE * p
    else:
        tiles = CPU_HEAD_BACKWARD_TILES * tile_rows * min(arch.vocab_size, HEAD_VOCAB_TILE) * 4
    return {
        "saved": scored * (p * h + 8 + 8 + 4 * 2),  # the hidden states, targets, indices, log Z, entropy
        "backward": tiles + scored * (4 + p) * h,  # tiles + the fp32 gradient of the hidden states and its cast
        "unfused_logits": setting.tokens * arch.vocab_size * 4,  # what a plain fp32 cross-entropy would hold
    }


# --- the estimate ----------------------------------------------------------------------------------

# A CUDA context with cuBLAS/cuDNN loaded takes about 0.5 GiB outside PyTorch's allocator.
CUDA_CONTEXT_GB = 0.5
# The caching allocator reserves more than it hands out; a measured reserved / allocated
# ratio (bench-gpu or a finished run, on CUDA) replaces this share where it exists.
DEFAULT_ALLOCATOR_SLACK = 0.10


@dataclass(frozen=True)
class MemoryEstimate:
    """Peak memory in GiB, by component; `allocated` compares with torch.cuda.max_memory_allocated
    (or, on a CPU, with the training's share of the process's peak resident size)."""
    weights: float
    adapters: float  # parameters + gradients + AdamW moments (+ autocast's 16-bit copies)
    activations: float  # saved for backward at the end of the forward pass
    activations_without_checkpointing: float
    activations_with_checkpointing: float
    loss_head: float  # the fused head's saved tensors and backward working set
    backward: float  # the larger of the head's and one layer's backward working set
    allocated: float
    overhead: float
    total: float
    unfused_logits: float


def estimate_memory(arch: Architecture, setting: TrainingSetting, overhead_gb: float,
                    allocator_slack: float = 0.0) -> MemoryEstimate:
    """Peak memory of training `arch` in `setting`, by component; the total adds `overhead_gb` (the
    runtime's) and, on CUDA, `allocator_slack` as a share of what is allocated."""
    p = DTYPE_BYTES[setting.dtype]
    counts = parameter_counts(arch)
    # weights: Qwen2.5-3B in bf16 = 3.086e9 x 2 B = 5.75 GiB; QLoRA = 2.775e9 x 4.127 / 8 B in NF4
    # + 0.311e9 x 2 B 16-bit = 1.91 GiB
    if setting.load_in_4bit:
        weights = counts.linear * NF4_BITS_PER_WEIGHT / 8 + (counts.total - counts.linear) * p
    else:
        weights = counts.total * p
    # adapters: parameter + gradient + two AdamW moments, all in the adapter dtype (torch's AdamW
    # keeps its moments in the parameter's dtype): 29.9M x 4 x 4 B = 0.45 GiB for fp32 LoRA
    trainable = lora_parameter_count(arch, setting.lora_r, setting.lora_targets)
    adapter_state = trainable * 4 * ADAPTER_BYTES
    layers = arch.num_hidden_layers
    autocast_copies = trainable * p if setting.autocast else 0  # kept for backward, all layers or one
    per_layer = layer_activation_bytes(arch, setting) * setting.tokens
    outside = setting.tokens * (4 * arch.hidden_size + 4 + 2 * p * arch.head_dim)  # final norm, RoPE cos/sin
    head = loss_head_bytes(arch, setting)
    without_checkpointing = layers * per_layer + outside + head["saved"]
    # with checkpointing each layer keeps only its input, p x h per token (Korthikanti et al.,
    # section 4.2, "full recomputation"), and one layer is recomputed at a time in backward
    with_checkpointing = layers * p * arch.hidden_size * setting.tokens + outside + head["saved"]
    layer_backward = backward_working_bytes(arch, setting) * setting.tokens
    if setting.gradient_checkpointing:
        activations = with_checkpointing
        layer_backward += per_layer + autocast_copies / layers
    else:
        activations = without_checkpointing
        adapter_state += autocast_copies
    backward = max(head["backward"], layer_backward)
    allocated = weights + adapter_state + activations + backward
    if setting.device == "cuda":
        overhead = overhead_gb * GIB + allocator_slack * allocated
    else:
        overhead = overhead_gb * GIB
    return MemoryEstimate(
        weights=weights / GIB,
        adapters=adapter_state / GIB,
        activations=activations / GIB,
        activations_without_checkpointing=without_checkpointing / GIB,
        activations_with_checkpointing=with_checkpointing / GIB,
        loss_head=(head["saved"] + head["backward"]) / GIB,
        backward=backward / GIB,
        allocated=allocated / GIB,
        overhead=overhead / GIB,
        total=(allocated + overhead) / GIB,
        unfused_logits=head["unfused_logits"] / GIB,
    )


def training_setting(config: Config, batch: int, seq: int, dtype: str, device: str,
                     masked: bool | None = None) -> TrainingSetting:
    """The configured quantisation, LoRA and checkpointing; `masked` defaults to the configured
    attention (auto is planned as sdpa, the kernel every machine has)."""
    if masked is None:
        masked = not config.model.attn_implementation.startswith("flash_attention")
    return TrainingSetting(load_in_4bit=config.quantization.load_in_4bit, batch=batch, seq=seq, dtype=dtype,
                           device=device, lora_r=config.lora.r, lora_targets=lora_targets(config.lora.target_modules),
                           lora_dropout=config.lora.dropout,
                           # auto is planned with checkpointing: where it is needed, it is on
                           gradient_checkpointing=config.train.gradient_checkpointing is not False, masked=masked)


CHECKPOINTING_HEADROOM = 0.1  # auto keeps checkpointing on unless 10% of the memory stays free without it


def checkpointing_needed(arch: Architecture, setting: TrainingSetting, usable_gb: float, overhead_gb: float) -> bool:
    """Whether training `setting` without gradient checkpointing would leave less than
    CHECKPOINTING_HEADROOM of `usable_gb` free (train.gradient_checkpointing: auto)."""
    without = replace(setting, gradient_checkpointing=False)
    slack = DEFAULT_ALLOCATOR_SLACK if setting.device == "cuda" else 0.0
    return estimate_memory(arch, without, overhead_gb, slack).total > (1 - CHECKPOINTING_HEADROOM) * usable_gb


# --- overhead ----------------------------------------------------------------------------------------

# What a training process has imported before it loads a model.
TRAINING_STACK = ("torch", "transformers", "peft", "trl", "datasets")


@functools.cache
def cpu_runtime_baseline_gb() -> float:
    """Peak resident size of a fresh Python that has imported the training stack, GiB."""
    code = f"import {', '.join(TRAINING_STACK)}; from lib.hardware import peak_rss_gb; print(peak_rss_gb())"
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True)
    return float(result.stdout.split()[-1])


def runtime_overhead_gb(device: str) -> float:
    """Memory outside the estimate's tensors: the CUDA context, or on a CPU the runtime itself."""
    return CUDA_CONTEXT_GB if device == "cuda" else cpu_runtime_baseline_gb()
