"""`python -m lib gpu-check`: is this GPU machine ready for the study, and how fast is it? (`make gpu-check`)

    python -m lib gpu-check                        (one H100/H200: under 8 minutes)
    python -m lib gpu-check --profile demo         (a CPU, the tiny architecture: seconds)

One script that a cluster's users run on a new machine before the study. It needs only CUDA torch,
transformers, peft and accelerate, so it also runs without this project's virtual environment
(`python3 -m lib gpu-check` in a checkout); a check that needs more (trl, datasets, bitsandbytes,
flash-attn, vLLM) is skipped with the reason. Every check ends as "ok", "failed: <reason>" or
"skipped: <reason>", and one failing never stops the others:

- environment: GPU, driver, CUDA, the library versions (lib.bench.gpu.machine_description).
- padding-free loss: on a small random Qwen2, the loss of a few variable-length examples in one row
  whose position ids restart at each example (train.batching=padding_free) equals their loss one
  by one, for each attention kernel here (sdpa; flash_attention_2 where installed): 1e-5 in fp32,
  2e-2 in bf16 (bf16 rounds each logit to 3 significant digits).
- adapters in fp32: a LoRA model built by PEFT on the small model in bf16, after lib.train's
  keep_adapters_in_fp32, trains fp32 adapters (lib.train.adapter_dtype); so do the speed checks' runs.
- training speed: LoRA and QLoRA tokens/s, peak memory and MFU of the random-init Qwen2.5-3B
  architecture (the demo: the tiny one), gradient checkpointing on and off, measured by bench-gpu's
  code (lib.bench.gpu.measure_variant) for a few steps each within --time-budget.
- generation speed: greedy tokens/s of the study's base model (from models/) at two batch sizes.
- vLLM agrees: transformers and vLLM give identical greedy answers to the same prompts.

Writes gpu-check.json and gpu-check.md under --out (results/bench).
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path

from lib.architecture import ARCHITECTURES, Architecture, default_architecture, qwen2_config, tiny_architecture
from lib.bench import write_benchmark
from lib.bench.gpu import (
    REQUIRED_PACKAGES,
    Lengths,
    Variant,
    error_line,
    example_lengths,
    flash_attention_missing,
    installed,
    machine_description,
    measure_variant,
    measured_fields,
    method_missing,
    save_random_model,
    variant_config,
)
from lib.config import Grid, load_config, load_grid
from lib.errors import UserError
from lib.hardware import free_memory
from lib.io import library_versions, provenance

# The check must fit in 8 minutes on one H100/H200: speed measurements still waiting when this much
# time has gone are skipped (and recorded as skipped).
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


class Skipped(Exception):
    """The check cannot run here; the message says why."""


class CheckFailed(Exception):
    """The check ran and found something wrong; `details` holds what it measured."""

    def __init__(self, reason: str, details: dict):
        super().__init__(reason)
        self.details = details


def run_check(name: str, check) -> dict:
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
    record = {"name": name, "status": status, "seconds": round(time.perf_counter() - started, 2), "details": details}
    print(f"gpu-check: {name}: {status}", flush=True)
    return record


def device_name() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def require(*modules: str) -> None:
    missing = [module for module in modules if not installed(module)]
    if missing:
        raise Skipped(f"{', '.join(missing)} not installed")


# --- environment -----------------------------------------------------------------------------------


def environment() -> dict:
    import torch

    return {**machine_description(), "torch": torch.__version__, "versions": library_versions()}


# --- padding-free loss -----------------------------------------------------------------------------


def small_model(dtype, attention: str):
    """A random-init model of the demo's tiny architecture on this machine's device."""
    import torch
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(qwen2_config(tiny_architecture()), dtype=dtype,
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


def padding_free_loss(dtype_text: str, attention: str) -> dict:
    """Mean token loss of PACKED_LENGTHS examples packed in one row vs one by one."""
    import torch

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


def adapters_in_fp32(config) -> dict:
    """PEFT's LoRA on a bf16 model, then lib.train's keep_adapters_in_fp32: the adapters train in fp32."""
    import torch

    require("peft")
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


# --- training speed --------------------------------------------------------------------------------


def speed_variants(methods: tuple[str, ...]) -> list[tuple[Variant, bool]]:
    """Padding-free batching (the study's) with the fastest attention here, checkpointing on and off."""
    attention = "flash_attention_2" if flash_attention_missing() is None else "sdpa"
    return [(Variant(method, "padding_free", attention), checkpointing)
            for method in methods for checkpointing in (True, False)]


@dataclass(frozen=True)
class SpeedBench:
    """What every speed check shares: the command's options, the saved random model, the lengths."""
    args: argparse.Namespace
    grid: Grid
    arch: Architecture
    lengths: Lengths
    model_dir: Path
    started: float  # time.perf_counter() when the command started, for --time-budget

    def measure(self, variant: Variant, checkpointing: bool) -> dict:
        args = self.args
        if time.perf_counter() - self.started > args.time_budget:
            raise Skipped(f"time budget of {args.time_budget:.0f} s spent")
        if method_missing(variant.method):
            raise Skipped(method_missing(variant.method))
        overrides = [*args.overrides, f"train.gradient_checkpointing={str(checkpointing).lower()}"]
        config = variant_config(args.profile, variant, self.model_dir, tuple(args.variant), overrides)
        scratch = self.model_dir.parent / f"{variant.name}-{'checkpointing' if checkpointing else 'no-checkpointing'}"
        measured = measure_variant(config, variant, self.lengths, self.arch.vocab_size, args.warmup, args.steps,
                                   self.grid.default_seed, scratch)
        return {"architecture": self.arch.name, "attention": variant.attention,
                "adapter_dtype": measured["metrics"]["adapter_dtype"],
                **measured_fields(measured, config, self.lengths, self.grid.sizes)}


def speed_checks(args: argparse.Namespace, base, grid: Grid, started: float) -> list[dict]:
    """One check per speed variant; all skipped (or failed) alike when the random model cannot be had."""
    variants = speed_variants(grid.methods)
    names = [speed_name(variant, checkpointing) for variant, checkpointing in variants]
    arch = default_architecture(base, args.model_config)
    why_not = speed_unavailable(args, arch, started)
    if why_not:
        return [run_check(name, partial(skip, why_not)) for name in names]
    from lib.model import compute_dtype

    with tempfile.TemporaryDirectory(prefix="gpu-check-") as scratch:
        try:
            lengths = example_lengths(base, Path("data/processed") / args.profile)
            model_dir = save_random_model(arch, compute_dtype(base.model.dtype), Path(scratch) / "model")
        except Exception as err:  # no model, no speed; the checks after these still run
            return [run_check(name, partial(fail, f"random {arch.name} model not built: {error_line(err)}"))
                    for name in names]
        bench = SpeedBench(args, grid, arch, lengths, model_dir, started)
        return [run_check(name, partial(bench.measure, variant, checkpointing))
                for (variant, checkpointing), name in zip(variants, names)]


def speed_unavailable(args: argparse.Namespace, arch: Architecture, started: float) -> str | None:
    """Why no speed can be measured here, before the random model is built, or None."""
    import torch

    missing = [distribution for module, distribution in REQUIRED_PACKAGES if not installed(module)]
    if missing:
        return f"{', '.join(missing)} not installed"
    if arch.name != "tiny" and not torch.cuda.is_available():
        return f"the {arch.name} architecture needs a GPU"
    if time.perf_counter() - started > args.time_budget:
        return f"time budget of {args.time_budget:.0f} s spent"
    return None


def speed_name(variant: Variant, checkpointing: bool) -> str:
    return f"training speed {variant.method}, checkpointing {'on' if checkpointing else 'off'}"


def skip(reason: str):
    raise Skipped(reason)


def fail(reason: str):
    raise CheckFailed(reason, {})


# --- generation ------------------------------------------------------------------------------------


def study_model(config):
    """(tokenizer, model) of the study's base model, when it is on disk (make model)."""
    import torch

    from lib.model import load_for_inference, local_copy

    if config.train.require_gpu and not torch.cuda.is_available():
        raise Skipped(f"{config.model.name_or_path} generates on a GPU (train.require_gpu); none is visible")
    if not local_copy(config.model.name_or_path).is_dir():
        raise Skipped(f"{config.model.name_or_path} is not on disk (make model)")
    return load_for_inference(config)


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


def generation_speed(config, prompt_count: int, new_tokens: int) -> dict:
    from lib.evaluate.generate import TransformersGenerator

    tokenizer, model = study_model(config)
    decoding = short_decoding(config, tokenizer, model, new_tokens)
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
    return {"model": config.model.name_or_path, "prompts": len(prompts), "max_new_tokens": decoding.max_new_tokens,
            "batch_sizes": speeds}


def vllm_agrees(config, prompt_count: int, new_tokens: int) -> dict:
    """Identical greedy answers from transformers and vLLM (lib.evaluate.generate's two backends)."""
    import torch

    require("vllm")
    if not torch.cuda.is_available():
        raise Skipped("vLLM needs a CUDA GPU")
    from lib.evaluate.generate import TransformersGenerator, VllmGenerator
    from lib.model import compute_dtype, dtype_name, model_location

    tokenizer, model = study_model(config)
    decoding = short_decoding(config, tokenizer, model, new_tokens)
    prompts = check_prompts(tokenizer, prompt_count)
    reference = TransformersGenerator(model, tokenizer, decoding).generate(prompts, prompt_count, progress=False)
    del model
    free_memory()
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


# --- the command -----------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from lib.cli import add_config_arguments

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
                        help=f"seconds after which waiting speed checks are skipped (default {DEFAULT_TIME_BUDGET_S})")


def run(args: argparse.Namespace) -> None:
    if min(args.steps, args.warmup, args.prompts, args.new_tokens) < 1:
        raise UserError("--steps, --warmup, --prompts and --new-tokens must be at least 1")
    started = time.perf_counter()
    grid = load_grid(args.profile)
    base = load_config(args.profile, grid.methods[0], tuple(args.variant), args.overrides)

    checks = [run_check("environment", environment)]
    for dtype_text, attention, why_not in padding_free_cases():
        padding_free = partial(skip, why_not) if why_not else partial(padding_free_loss, dtype_text, attention)
        checks.append(run_check(f"padding-free loss, {attention} {dtype_text}", padding_free))
    checks.append(run_check("adapters in fp32 (PEFT + lib.train)", partial(adapters_in_fp32, base)))
    speed = speed_checks(args, base, grid, started)
    checks += speed
    checks.append(run_check("adapters in fp32 (speed checks' training)", partial(trained_adapters_in_fp32, speed)))
    checks.append(run_check("generation speed (transformers)", partial(generation_speed, base, args.prompts,
                                                                        args.new_tokens)))
    # last: vLLM keeps most of the GPU's memory until the process ends
    checks.append(run_check("greedy answers: transformers = vLLM", partial(vllm_agrees, base, args.prompts,
                                                                            args.new_tokens)))

    result = {
        "profile": args.profile,
        "checks": checks,
        "failed": sum(c["status"].startswith("failed") for c in checks),
        "machine": checks[0]["details"],
        "seconds": time.perf_counter() - started,
        "provenance": provenance({"profile": args.profile, "variants": args.variant, "overrides": args.overrides,
                                  "steps": args.steps, "warmup": args.warmup, "prompts": args.prompts,
                                  "new_tokens": args.new_tokens},
                                 grid.default_seed),
    }
    write_benchmark(args.out, "gpu-check", result, markdown(result))


def markdown(result: dict) -> str:
    m = result["machine"]
    gpu = (f"{m['gpu']} ({m['gpu_memory_gb']:.0f} GiB, driver {m['driver']}, CUDA {m['torch_cuda']})"
           if m.get("gpu") else "no GPU")
    packages = ", ".join(f"{name} {version or 'missing'}" for name, version in m.get("packages", {}).items())
    lines = [
        f"# GPU check, profile {result['profile']}",
        "",
        f"Machine: {gpu}; torch {m.get('torch')}; {packages}. {result['seconds']:.0f} s in all; "
        f"{result['failed']} failed.",
        "",
        "| check | status | measured | seconds |",
        "|---|---|---|---:|",
    ]
    lines += [f"| {c['name']} | {c['status']} | {headline(c)} | {c['seconds']:.1f} |" for c in result["checks"]]
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
    if "study_adapter_dtype" in d:
        return f"PEFT {d['peft_adapter_dtype']}, study {d['study_adapter_dtype']}"
    if "adapter_dtypes" in d:
        return ", ".join(sorted(set(d["adapter_dtypes"].values()))) + f" in {len(d['adapter_dtypes'])} runs"
    if "differing" in d:
        return f"{d['prompts'] - len(d['differing'])} of {d['prompts']} identical"
    return ""
