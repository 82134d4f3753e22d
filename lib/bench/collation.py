"""`python -m lib bench-collation`: what padding every example to 512 tokens costs in training.

    python -m lib bench-collation --model models/tiny-qwen2 --out results/bench     (make bench-collation)

The seed study padded every example to 512 tokens; this project's collation (TRL's) pads each
batch only to its longest example. Both train the same tiny model on the same generated
examples with the same settings, one after the other in one process, and the benchmark reports
for each: real (non-padding) tokens per second, the share of padding among the tokens computed,
and the ratio of the two speeds. Only training is timed: the dev evaluations and checkpoints of a
study run are turned off. Writes collation.json and collation.md under --out.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from lib.bench import write_benchmark
from lib.config import load_config
from lib.hardware import machine
from lib.io import provenance

SEED_STUDY_LENGTH = 512
EXAMPLES = "500"  # 63 steps of 8: long enough to time, short enough for a benchmark


def padding_share(trainer) -> dict:
    """Real and computed tokens over one pass of the trainer's batches (what the model sees)."""
    real = computed = 0
    for batch in trainer.get_train_dataloader():
        computed += batch["input_ids"].numel()
        real += int(batch["attention_mask"].sum()) if "attention_mask" in batch else batch["input_ids"].numel()
    return {"real_tokens": real, "computed_tokens": computed, "padding_share": 1 - real / computed}


def measure(config, data_dir: Path, out: Path, label: str) -> dict:
    from lib.train import RunSpec, build_trainer, plan_batches

    spec = RunSpec(name=label, profile="demo", method="lora", size=EXAMPLES, examples=int(EXAMPLES), seed=0)
    batch = plan_batches(config.train.effective_batch_size, config.train.per_device_batch_size, 1)
    trainer, _ = build_trainer(config, spec, data_dir, out / label, batch,
                               eval_strategy="no", eval_on_start=False, save_strategy="no")
    shares = padding_share(trainer)
    started = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - started
    return {"label": label, "steps": trainer.state.global_step, "seconds": seconds,
            "real_tokens_per_s": trainer.state.num_input_tokens_seen / seconds, **shares}


def run_benchmark(model: Path, scratch: Path) -> dict:
    from lib.data.prepare import prepare

    base = ["data.synthetic_size=2000", "data.test_size=50", "data.dev_size=50", f"model.name_or_path={model}",
            "train.report_to=none", f"train.max_length={SEED_STUDY_LENGTH}"]
    ours = load_config("demo", "lora", overrides=base)
    padded = load_config("demo", "lora", overrides=[*base, f"train.pad_to_multiple_of={SEED_STUDY_LENGTH}"])
    prepare(ours, scratch / "raw", scratch / "processed", [EXAMPLES])
    results = [measure(ours, scratch / "processed", scratch, "pad to the batch's longest (ours)"),
               measure(padded, scratch / "processed", scratch, f"pad every example to {SEED_STUDY_LENGTH}")]
    speedup = results[0]["real_tokens_per_s"] / results[1]["real_tokens_per_s"]
    return {
        "variants": results,
        "speedup": speedup,
        "headline": [{"measure": f"training real tokens/s, ours vs padding to {SEED_STUDY_LENGTH}",
                      "value": round(speedup, 2), "unit": "x"}],
        "machine": machine(),
        "provenance": provenance(ours.to_dict()),
    }


def markdown(result: dict) -> str:
    lines = ["# Training collation: padding to the batch's longest vs to 512 tokens", "",
             "Tiny model, the same 500 generated examples, batch 8, one epoch each, one process.", "",
             "| collation | steps | seconds | real tokens/s | padding share |", "|---|---:|---:|---:|---:|"]
    lines += [f"| {v['label']} | {v['steps']} | {v['seconds']:.1f} | {v['real_tokens_per_s']:.0f} | "
              f"{100 * v['padding_share']:.1f}% |" for v in result["variants"]]
    lines += ["", f"Real tokens per second: **{result['speedup']:.2f}x** with this project's collation.", ""]
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", type=Path, required=True, help="the tiny model (make tiny-model)")
    parser.add_argument("--out", type=Path, default=Path("results/bench"))


def run(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        result = run_benchmark(args.model, Path(scratch))
    write_benchmark(args.out, "collation", result, markdown(result))
