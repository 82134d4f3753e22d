"""`python -m lib plan`: the peak memory of LoRA and QLoRA training for the grid, estimated without a GPU.

    python -m lib plan --profile paper --model-config qwen2.5-3b --batch 8 --seq 256 --seq 1024
    python -m lib plan --profile paper --batch 1 --seq 1024 --out results/bench     (plan-paper.json + .md)
    python -m lib plan --profile demo --model-config tiny                           (CPU: the demo's model)

For each method of the grid and each --seq, the estimate of lib.memory by component (weights,
adapters, activations, loss head, backward, overhead), and which cards each method fits (a T4
trains in fp16, the others in bf16). Every memory number is in GiB (2^30 bytes), as torch reports
them. Where bench-gpu (--bench, default results/bench/gpu-<profile>.json, used only when it
measured the same architecture) or a finished run (--runs, default
results/<profile>/runs/*/train_metrics.json) measured a peak, the table shows it next to the
estimate at the same shape and on the same device (bench-gpu's on CUDA, a run's where it trained),
with the ratio measured / estimated.

It reads what bench-gpu (lib.bench.gpu) and the runs measured, and writes beside bench-gpu's
results (lib.bench.write_benchmark).
"""

from __future__ import annotations

import argparse
from dataclasses import asdict, replace
from pathlib import Path

from lib.architecture import (
    ARCHITECTURES,
    Architecture,
    default_architecture,
    lora_parameter_count,
    lora_targets,
    parameter_counts,
)
from lib.arguments import add_config_arguments
from lib.bench import write_benchmark
from lib.config import load_config, load_grid
from lib.io import provenance, read_json, shown
from lib.memory import (
    CUDA_CONTEXT_GB,
    DEFAULT_ALLOCATOR_SLACK,
    DTYPE_BYTES,
    TRAINING_STACK,
    TrainingSetting,
    estimate_memory,
    runtime_overhead_gb,
    training_setting,
)

CHECKPOINTING_WORDS = {True: "on", False: "off", "auto": "auto (planned on; a run turns it off where it fits without)"}

# --- cards -----------------------------------------------------------------------------------------

# Memory usable by a process, GiB, and the dtype the card trains in (no bf16 before Ampere).
CARDS = (
    ("T4 16 GB", 15.0, "float16"),  # nvidia-smi: 15,360 MiB
    ("24 GB (A10, L4, RTX 4090)", 22.5, "bfloat16"),  # A10: 23,028 MiB
    ("A100 40 GB", 40.0, "bfloat16"),
    ("80 GB (A100, H100)", 80.0, "bfloat16"),
)


def card_fits(arch: Architecture, setting: TrainingSetting, allocator_slack: float) -> dict[str, bool]:
    """Whether the estimate (at the card's own dtype, CUDA context and slack included) fits each card."""
    fits = {}
    for name, usable_gb, dtype in CARDS:
        on_card = replace(setting, dtype=dtype, device="cuda")
        fits[name] = estimate_memory(arch, on_card, CUDA_CONTEXT_GB, allocator_slack).total <= usable_gb
    return fits


# --- measurements to compare with -------------------------------------------------------------------


def bench_gpu_measurements(path: Path, arch: Architecture) -> tuple[list[dict], list[str]]:
    """Measured peaks of bench-gpu's variants with the shape of their largest micro-batch (only
    CUDA's allocator statistics are kept: a variant run on a CPU has none), and a note where the
    file measured another architecture, whose peaks say nothing of this one."""
    if not path.is_file():
        return [], []
    result = read_json(path)
    if result.get("architecture") != arch.name:
        return [], [f"{shown(path)}: measured {result.get('architecture')!r}, not {arch.name!r}: left out"]
    measured = []
    for variant in result.get("variants", []):
        largest = variant.get("largest_batch")
        if variant.get("status") != "ok" or not largest or variant.get("peak_memory_allocated_gb") is None:
            continue
        measured.append({
            "source": f"{shown(path)}: {variant['name']}",
            "method": variant["method"],
            "batch": largest["rows"],
            "seq": largest["length"],
            "dtype": variant["dtype"],
            "device": "cuda",
            "masked": variant["attention"] != "flash_attention_2",
            "peak_gb": variant["peak_memory_allocated_gb"],
            "reserved_gb": variant.get("peak_memory_reserved_gb"),
            "kind": "cuda_max_allocated",
        })
    return measured, []


def finished_run_measurements(runs_dir: Path) -> list[dict]:
    """Measured peaks of finished runs, compared at per_device_batch_size x max_length from the run's
    own config.json: over thousands of micro-batches the longest reaches max_length (p99 of real
    examples is ~876 tokens)."""
    measured = []
    for metrics_file in sorted(runs_dir.glob("*/train_metrics.json")):
        config_file = metrics_file.parent / "config.json"
        metrics = read_json(metrics_file)
        if not config_file.is_file() or metrics.get("peak_memory_gb") is None:
            continue
        run_config = read_json(config_file)
        kind = metrics.get("peak_memory_kind", "cuda_max_allocated")
        measured.append({
            "source": shown(metrics_file),
            "method": run_config["run"]["method"],
            "batch": run_config["train"]["per_device_batch_size"],
            "seq": run_config["train"]["max_length"],
            "dtype": metrics.get("dtype"),
            "device": "cuda" if kind == "cuda_max_allocated" else "cpu",  # process_rss: trained on a CPU
            "masked": not metrics.get("attention",
                                      run_config["model"]["attn_implementation"]).startswith("flash_attention"),
            "peak_gb": metrics["peak_memory_gb"],
            "reserved_gb": metrics.get("peak_memory_reserved_gb"),
            "kind": kind,
        })
    return measured


def measured_allocator_slack(measured: list[dict]) -> tuple[float, str] | None:
    """The largest reserved / allocated - 1 among the measurements, and the one it comes from."""
    ratios = [(m["reserved_gb"] / m["peak_gb"] - 1, m["source"])
              for m in measured if m.get("reserved_gb") and m["peak_gb"]]
    return max(ratios) if ratios else None


# --- the command -----------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser, method=False)
    parser.add_argument("--model-config", default=None, choices=sorted(ARCHITECTURES),
                        help="architecture (default: tiny for a profile without a GPU, else qwen2.5-3b)")
    parser.add_argument("--batch", type=int, default=None,
                        help="rows per micro-batch (default: train.per_device_batch_size)")
    parser.add_argument("--seq", type=int, action="append", default=None,
                        help="tokens per row, repeatable (default: train.max_length, the longest batch a run meets)")
    parser.add_argument("--dtype", choices=sorted(DTYPE_BYTES), default=None,
                        help="training dtype (default: model.dtype; auto = bfloat16 on a GPU, float32 on a CPU)")
    parser.add_argument("--device", choices=["cuda", "cpu"], default=None,
                        help="where training runs (default: cpu for a profile without a GPU, else cuda)")
    parser.add_argument("--bench", type=Path, default=None,
                        help="bench-gpu's measurements (default: results/bench/gpu-<profile>.json)")
    parser.add_argument("--runs", type=Path, default=None,
                        help="folder of finished runs (default: results/<profile>/runs)")
    parser.add_argument("--out", type=Path, default=None, help="write plan-<profile>.json and plan-<profile>.md here")


def run(args: argparse.Namespace) -> None:
    result = memory_plan(args)
    text = markdown(result)
    if args.out is None:
        print(text, end="")
    else:
        write_benchmark(args.out, f"plan-{args.profile}", result, text)


def memory_plan(args: argparse.Namespace) -> dict:
    """What plan-<profile>.json holds: every method of the grid at each --seq, the cards it fits,
    and the measured peaks next to the estimate at their own shape."""
    grid = load_grid(args.profile)
    configs = {method: load_config(args.profile, method, tuple(args.variant), args.overrides)
               for method in grid.methods}
    first = configs[grid.methods[0]]
    arch = default_architecture(first, args.model_config)
    device = args.device or ("cuda" if first.train.require_gpu else "cpu")
    dtype = args.dtype or (first.model.dtype if first.model.dtype != "auto" else
                           "bfloat16" if device == "cuda" else "float32")
    batch = args.batch or first.train.per_device_batch_size
    seqs = args.seq or [first.train.max_length]

    measured, notes = bench_gpu_measurements(args.bench or Path("results/bench") / f"gpu-{args.profile}.json", arch)
    runs_dir = args.runs or Path("results") / args.profile / "runs"
    measured += finished_run_measurements(runs_dir) if runs_dir.is_dir() else []
    notes += [f"{m['source']}: method {m['method']!r} is not in the grid ({', '.join(grid.methods)}): left out"
              for m in measured if m["method"] not in configs]
    measured = [m for m in measured if m["method"] in configs]
    slack_measured = measured_allocator_slack(measured)
    if slack_measured is None:
        slack, slack_source = DEFAULT_ALLOCATOR_SLACK, "assumed"
    else:
        slack, source = slack_measured
        slack_source = f"measured: reserved / allocated of {source}"

    rows = []
    for method in grid.methods:
        for seq in seqs:
            setting = training_setting(configs[method], batch, seq, dtype, device)
            rows.append({"method": method, "batch": batch, "seq": seq,
                         **asdict(estimate_memory(arch, setting, runtime_overhead_gb(device), slack)),
                         "fits": card_fits(arch, setting, slack) if device == "cuda" else None})
    comparisons = []
    for measurement in measured:
        method = measurement["method"]
        setting = training_setting(configs[method], measurement["batch"], measurement["seq"],
                                   measurement["dtype"] or dtype, measurement["device"], masked=measurement["masked"])
        estimated = estimate_memory(arch, setting, runtime_overhead_gb(measurement["device"]), slack)
        # the CUDA allocator's peak leaves out the context; a process's resident size holds everything
        compared = estimated.allocated if measurement["kind"] == "cuda_max_allocated" else estimated.total
        comparisons.append({**measurement, "estimated_gb": compared, "ratio": measurement["peak_gb"] / compared})

    counts = parameter_counts(arch)
    return {
        "architecture": asdict(arch),
        "parameters": {**asdict(counts), "total": counts.total},
        "trainable": {method: lora_parameter_count(arch, configs[method].lora.r,
                                                   lora_targets(configs[method].lora.target_modules))
                      for method in grid.methods},
        "settings": {"profile": args.profile, "device": device, "dtype": dtype, "batch": batch, "seqs": seqs,
                     "gradient_checkpointing": first.train.gradient_checkpointing,
                     "overhead_gb": runtime_overhead_gb(device), "overhead": "CUDA context" if device == "cuda" else
                     "measured resident size of Python with " + ", ".join(TRAINING_STACK),
                     "allocator_slack": slack, "allocator_slack_source": slack_source},
        "grid": {"methods": list(grid.methods), "sizes": list(grid.sizes)},
        "estimates": rows,
        "measured": comparisons,
        "notes": notes,
        "cards": [{"name": name, "usable_gb": usable, "dtype": card_dtype} for name, usable, card_dtype in CARDS],
        "provenance": provenance({"profile": args.profile, "variants": args.variant, "overrides": args.overrides}),
    }


def markdown(result: dict) -> str:
    arch, settings = result["architecture"], result["settings"]
    lines = [
        f"# Memory plan: {arch['name']}, {settings['dtype']} on {settings['device']}",
        "",
        f"{result['parameters']['total'] / 1e9:.3f}B parameters; LoRA trains "
        + ", ".join(f"{method} {n / 1e6:.2f}M" for method, n in result["trainable"].items())
        + f"; gradient checkpointing {CHECKPOINTING_WORDS[settings['gradient_checkpointing']]}. "
        f"Memory in GiB; overhead {settings['overhead_gb']:.2f} GiB ({settings['overhead']})"
        + (f", allocator slack {settings['allocator_slack']:.0%} ({settings['allocator_slack_source']})"
           if settings["device"] == "cuda" else "") + ".",
        "",
        "| method | batch x seq | weights | adapters+optim | activations (ckpt / none) | loss head | backward "
        "| allocated | total | unfused logits |",
        "|---|---|---:|---:|---|---:|---:|---:|---:|---:|",
    ]
    for row in result["estimates"]:
        lines.append(
            f"| {row['method']} | {row['batch']} x {row['seq']} | {row['weights']:.2f} | {row['adapters']:.2f} "
            f"| {row['activations_with_checkpointing']:.2f} / {row['activations_without_checkpointing']:.2f} "
            f"| {row['loss_head']:.2f} | {row['backward']:.2f} | {row['allocated']:.2f} | **{row['total']:.2f}** "
            f"| {row['unfused_logits']:.2f} |")
    lines += ["", "Activations: the column used is the configured one; loss head = TRL's fused head "
              "(the unfused column is the B x L x V fp32 logits it avoids)."]
    if settings["device"] == "cuda":
        cards = [card["name"] for card in result["cards"]]
        lines += ["", "Fits (estimate at the card's dtype, CUDA context and slack included; every size of "
                  f"the grid, {', '.join(result['grid']['sizes'])}, needs the same memory):", "",
                  "| method | batch x seq | " + " | ".join(cards) + " |", "|---|---|" + "---|" * len(cards)]
        for row in result["estimates"]:
            lines.append(f"| {row['method']} | {row['batch']} x {row['seq']} | "
                         + " | ".join("yes" if row["fits"][card] else "no" for card in cards) + " |")
    if result["measured"]:
        lines += ["", "Measured peaks against the estimate at the same shape and device:", "",
                  "| source | device | method | batch x seq | measured | estimated | measured / estimated |",
                  "|---|---|---|---|---:|---:|---:|"]
        for m in result["measured"]:
            lines.append(f"| {m['source']} | {m['device']} | {m['method']} | {m['batch']} x {m['seq']} "
                         f"| {m['peak_gb']:.2f} | {m['estimated_gb']:.2f} | {m['ratio']:.2f} |")
    if result["notes"]:
        lines += ["", "Notes:", ""] + [f"- {note}" for note in result["notes"]]
    return "\n".join(lines) + "\n"
