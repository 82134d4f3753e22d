"""`python -m lib plan`: the peak memory of LoRA and QLoRA training for the grid, estimated without a
GPU, and what the grid costs in GPU hours, the extended grid's cells apart.

    python -m lib plan --profile paper --model-config qwen2.5-3b --batch 8 --seq 256 --seq 1024
    python -m lib plan --profile paper --batch 1 --seq 1024 --out results/bench     (plan-paper.json + .md)
    python -m lib plan --profile paper --grid extended                              (the extended grid planned)
    python -m lib plan --profile demo --model-config tiny                           (CPU: the demo's model)

For each method of the grid and each --seq, the estimate of lib.memory by component (weights,
adapters, activations, loss head, backward, overhead), and which cards each method fits (a T4
trains in fp16, the others in bf16). Every memory number is in GiB (2^30 bytes), as torch reports
them. Where bench-gpu (--bench, default results/bench/gpu-<profile>.json, used only when it
measured the same architecture) or a finished run (--runs, default
results/<profile>/runs/*/train_metrics.json) measured a peak, the table shows it next to the
estimate at the same shape and on the same device (bench-gpu's on CUDA, a run's where it trained),
with the ratio measured / estimated.

The cost: a run's hours are its training, examples x epochs x tokens per example / tokens per
second (lib.bench.gpu.projected_hours), and its evaluation, the same for every size; the untuned
rows are evaluated only. The speeds come from what was measured: bench-gpu's fastest variant of
each method, else the finished runs (train_metrics.json's tokens/s, eval.json's generation time);
else, on a GPU, the GPU check's targets on an H100 (lib.bench.gpu_check: its MFU targets, its
minutes to evaluate the test set), which the plan names as assumed. Tokens per example: those of
the prepared data, else the real lengths shipped with bench-gpu. The extended grid's cells
(GRID=extended: experiments/grid.yaml) are shown apart, with their share of the hours.

It reads what bench-gpu (lib.bench.gpu), gpu-check and the runs measured, and writes beside
bench-gpu's results (lib.bench.write_benchmark).
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
from lib.bench.gpu import example_lengths, projected_hours
from lib.bench.gpu_check import EVALUATION_MINUTES_TARGET, MFU_TARGETS
from lib.config import GRIDS, Config, load_config, load_grid, loads_in_4bit, parse_count
from lib.hardware import model_flops_per_token, peak_flops
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
from lib.runs import readable_run_files

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
            "tokens_per_s": variant.get("tokens_per_s"),
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
            "tokens_per_s": metrics.get("tokens_per_s"),
        })
    return measured


def measured_allocator_slack(measured: list[dict]) -> tuple[float, str] | None:
    """The largest reserved / allocated - 1 among the measurements, and the one it comes from."""
    ratios = [(m["reserved_gb"] / m["peak_gb"] - 1, m["source"])
              for m in measured if m.get("reserved_gb") and m["peak_gb"]]
    return max(ratios) if ratios else None


# --- what the grid costs ---------------------------------------------------------------------------

# Without a measurement on a GPU, a run is taken to go as fast as the GPU check's targets on this card.
REFERENCE_CARD = "H100"
# What the extended grid's cells may add to the default grid's hours: more points for the fit for little cost.
EXTENDED_SHARE_TARGET = 0.10


def training_speed(method: str, config: Config, arch: Architecture, measured: list[dict],
                   device: str) -> tuple[float | None, str]:
    """Training tokens/s of a method on the plan's device, and where the number comes from: the
    fastest measurement of the method there (bench-gpu's variants, finished runs), else on a GPU
    the GPU check's MFU target on an H100: tokens/s = MFU x peak FLOP/s / FLOPs per token."""
    speeds = [m for m in measured if m["method"] == method and m["device"] == device and m.get("tokens_per_s")]
    if speeds:
        fastest = max(speeds, key=lambda m: m["tokens_per_s"])
        return fastest["tokens_per_s"], f"measured: {fastest['source']}"
    target = MFU_TARGETS.get("qlora" if loads_in_4bit(method) else "lora")
    if device != "cuda" or target is None:
        return None, "not measured: no bench-gpu result or finished run of it on this device"
    counts = parameter_counts(arch)
    trainable = lora_parameter_count(arch, config.lora.r, lora_targets(config.lora.target_modules))
    flops = model_flops_per_token(counts.total, trainable)
    return (target * peak_flops(REFERENCE_CARD, "bfloat16") / flops,
            f"assumed: the GPU check's MFU target of {target:.0%} on an {REFERENCE_CARD} (bf16)")


def evaluation_hours(gpu_check: Path, profile: str, runs_dir: Path, device: str) -> tuple[float | None, str]:
    """Hours to evaluate one run and where the number comes from: the GPU check's measured minutes
    for this profile, else the mean generation time of the finished runs' eval.json, else on a GPU
    the GPU check's target (minutes to answer the test set: a bound, generation dominates)."""
    if gpu_check.is_file():
        result = read_json(gpu_check)
        check = next((c for c in result.get("checks", []) if c.get("name") == "evaluation time"), {})
        minutes = (check.get("details") or {}).get("minutes")
        if result.get("profile") == profile and minutes is not None:
            return minutes / 60, f"measured: {shown(gpu_check)}"
    evaluations = [readable_run_files(path.parent, ("eval.json",)).get("eval.json") or {}  # a damaged one is left out
                   for path in sorted(runs_dir.glob("*/eval.json"))]
    seconds = [s for s in (e.get("generation", {}).get("seconds") for e in evaluations) if s]
    if seconds:
        return (sum(seconds) / len(seconds) / 3600,
                f"measured: generation time of {len(seconds)} runs in {shown(runs_dir)}")
    if device != "cuda":
        return None, "not measured: no gpu-check result or evaluated run"
    return (EVALUATION_MINUTES_TARGET / 60,
            f"assumed: the GPU check's target of {EVALUATION_MINUTES_TARGET:g} minutes on an H100/H200")


def grid_cost(profile: str, grid_name: str, configs: dict[str, Config], arch: Architecture, measured: list[dict],
              device: str, gpu_check: Path, runs_dir: Path, data_dir: Path) -> dict:
    """Hours of every cell of the extended grid (those of the default grid and those it adds), the
    default grid's total with its untuned rows, what the extended cells add and their share."""
    default, extended = load_grid(profile), load_grid(profile, "extended")
    first = configs[default.methods[0]]
    lengths = example_lengths(first, data_dir)
    speeds = {method: training_speed(method, configs[method], arch, measured, device) for method in default.methods}
    evaluation, evaluation_source = evaluation_hours(gpu_check, profile, runs_dir, device)
    cells = []
    for size in extended.sizes:
        hours = {}
        for method in default.methods:
            training = projected_hours(speeds[method][0], configs[method], lengths, [size])
            hours[method] = None if training is None or evaluation is None else training[size] + evaluation
        cells.append({"size": size, "examples": parse_count(size), "added_by_extended": size not in default.sizes,
                      "hours": hours})
    seeds = len(default.seeds)
    untuned = 1 + any(loads_in_4bit(method) for method in default.methods)  # base, and base-nf4 for QLoRA

    def total(added: bool) -> float | None:
        hours = [h for cell in cells if cell["added_by_extended"] == added for h in cell["hours"].values()]
        return None if None in hours else seeds * sum(hours)

    default_hours, extra_hours = total(False), total(True)
    if default_hours is not None:
        default_hours += untuned * evaluation
    examples = {added: seeds * sum(cell["examples"] for cell in cells if cell["added_by_extended"] == added)
                for added in (False, True)}
    return {
        "planned": grid_name, "default_sizes": list(default.sizes),
        "extended_sizes": [cell["size"] for cell in cells if cell["added_by_extended"]],
        "seeds": seeds, "untuned_runs": untuned, "epochs": first.train.epochs,
        "tokens_per_example": lengths.mean_tokens(first.train.max_length), "lengths": lengths.source,
        "speeds": {method: {"tokens_per_s": speed, "source": source} for method, (speed, source) in speeds.items()},
        "evaluation_hours": evaluation, "evaluation_source": evaluation_source,
        "cells": cells, "default_hours": default_hours, "extra_hours": extra_hours,
        # what the extended cells add, as a share of the default grid's hours and of the extended grid's
        "extra_share_of_default": None if default_hours is None else extra_hours / default_hours,
        "extra_share_of_extended": None if default_hours is None else extra_hours / (default_hours + extra_hours),
        # the same in training examples alone: what the evaluations, a fixed cost per run, add to it
        "extra_examples_share": examples[True] / examples[False],
    }


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
    parser.add_argument("--gpu-check", type=Path, default=None,
                        help="gpu-check's measurements (default: gpu-check.json beside --bench's file)")
    parser.add_argument("--data", type=Path, default=None,
                        help="prepared data whose lengths the examples follow (default: data/processed/<profile>)")
    parser.add_argument("--grid", choices=GRIDS, default="default",
                        help="the grid planned: default, or extended (adds grid.yaml's extended sizes)")
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
    grid = load_grid(args.profile, args.grid)
    configs = {method: load_config(args.profile, method, tuple(args.variant), args.overrides)
               for method in grid.methods}
    first = configs[grid.methods[0]]
    arch = default_architecture(first, args.model_config)
    device = args.device or ("cuda" if first.train.require_gpu else "cpu")
    dtype = args.dtype or (first.model.dtype if first.model.dtype != "auto" else
                           "bfloat16" if device == "cuda" else "float32")
    batch = args.batch or first.train.per_device_batch_size
    seqs = args.seq or [first.train.max_length]

    bench = args.bench or Path("results/bench") / f"gpu-{args.profile}.json"
    measured, notes = bench_gpu_measurements(bench, arch)
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
        "cost": grid_cost(args.profile, args.grid, configs, arch, measured, device,
                          args.gpu_check or bench.parent / "gpu-check.json", runs_dir,
                          args.data or Path("data/processed") / args.profile),
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
    lines += cost_markdown(result["cost"], settings["device"])
    if result["notes"]:
        lines += ["", "Notes:", ""] + [f"- {note}" for note in result["notes"]]
    return "\n".join(lines) + "\n"


def hours_text(hours: float | None) -> str:
    return "unknown" if hours is None else f"{hours:.2f}"


def cost_markdown(cost: dict, device: str) -> list[str]:
    """The hours of each size's runs, the default grid's, what GRID=extended adds and its share."""
    unit = "GPU hours" if device == "cuda" else "hours on this device"
    methods = list(cost["speeds"])
    lines = ["", f"## What the grid costs ({unit}; planned: the {cost['planned']} grid)", "",
             "| size | grid | " + " | ".join(methods) + " |", "|---|---|" + "---:|" * len(methods)]
    for cell in cost["cells"]:
        lines.append(f"| {cell['size']} | {'extended' if cell['added_by_extended'] else 'default'} | "
                     + " | ".join(hours_text(cell["hours"][method]) for method in methods) + " |")
    speeds = "; ".join(f"{method} {'unknown' if s['tokens_per_s'] is None else format(s['tokens_per_s'], ',.0f')} "
                       f"tokens/s ({s['source']})" for method, s in cost["speeds"].items())
    evaluation = ("unknown" if cost["evaluation_hours"] is None else f"{60 * cost['evaluation_hours']:.1f} minutes")
    lines += ["", f"A run: training, examples x {cost['epochs']:g} epochs x {cost['tokens_per_example']:.0f} tokens "
              f"per example ({cost['lengths']}) / tokens per second, then its evaluation, {evaluation} "
              f"({cost['evaluation_source']}). Training speeds: {speeds}.", ""]
    extended = ", ".join(cost["extended_sizes"])
    if cost["default_hours"] is None:
        lines.append(f"Hours unknown without a measured speed. GRID=extended adds {extended}: "
                     f"{cost['extra_examples_share']:.1%} of the default grid's training examples.")
        return lines
    within = cost["extra_share_of_default"] < EXTENDED_SHARE_TARGET
    lines.append(f"The default grid ({', '.join(cost['default_sizes'])} x {len(methods)} methods x {cost['seeds']} "
                 f"seed(s), and {cost['untuned_runs']} untuned rows evaluated): {cost['default_hours']:.2f} h. "
                 f"GRID=extended adds {extended}: **{cost['extra_hours']:.2f} h, {cost['extra_share_of_default']:.1%} "
                 f"of the default grid's hours** ({cost['extra_share_of_extended']:.1%} of the extended grid's): "
                 f"{'within' if within else 'over'} the {EXTENDED_SHARE_TARGET:.0%} it is meant to cost "
                 f"{'✓' if within else '✗'}. In training examples alone they add {cost['extra_examples_share']:.1%} "
                 "to the default grid's; the rest is their evaluations, the same for every size.")
    return lines
