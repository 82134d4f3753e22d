"""`python -m lib bench-generation`: batched versus one-by-one greedy generation.

    python -m lib bench-generation --model models/tiny-qwen2 --out results/bench   (make bench-generation)

The evaluation answers every test item with greedy decoding. This generates answers for the same
generated test questions twice in one process, with the evaluation's batching (left-padded,
length-sorted batches that split as their rows finish) and one prompt at a time, and reports
the speed-up, the seconds per 1,000 test items, and how many answers are identical (greedy decoding
should not depend on batching). The two take turns, batch by batch, so that what else the machine
runs meanwhile slows both alike. Writes generation.json and generation.md under --out. Target: at
least 5x on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from tqdm import tqdm

from lib.bench import write_benchmark
from lib.config import load_config
from lib.hardware import machine
from lib.io import provenance, read_jsonl

TARGET_SPEEDUP = 5.0


def timed(generator, prompts: list[str], batch_size: int) -> tuple[list, float]:
    started = time.perf_counter()
    answers = generator.generate(prompts, batch_size, progress=False)
    return answers, time.perf_counter() - started


def side_by_side(generator, tokenizer, prompts: list[str], batch_size: int) -> dict:
    """Each batch the evaluation makes, then its prompts one at a time: the answers and seconds of both."""
    from lib.evaluate.generate import length_sorted_batches

    lengths = [len(tokenizer(prompt, add_special_tokens=False)["input_ids"]) for prompt in prompts]
    result = {"batched": [None] * len(prompts), "one_by_one": [None] * len(prompts),
              "batched_seconds": 0.0, "one_by_one_seconds": 0.0}
    for batch in tqdm(length_sorted_batches(lengths, batch_size), desc="bench-generation", unit="batch"):
        for way, size in (("batched", batch_size), ("one_by_one", 1)):
            answers, seconds = timed(generator, [prompts[i] for i in batch], size)
            result[f"{way}_seconds"] += seconds
            for index, answer in zip(batch, answers):
                result[way][index] = answer
    return result


def run_benchmark(model: Path, items: int, scratch: Path) -> dict:
    from lib.data.prepare import prepare
    from lib.evaluate.generate import TransformersGenerator, study_decoding
    from lib.model import load_for_inference
    from lib.prompts import prompt_messages, render_prompt

    config = load_config("demo", overrides=[f"model.name_or_path={model}", f"data.test_size={items}",
                                            "data.dev_size=50", "data.synthetic_size=2000"])
    prepare(config, scratch / "raw", scratch / "processed", ["100"])
    test = list(read_jsonl(scratch / "processed" / "test.jsonl"))
    tokenizer, loaded = load_for_inference(config)
    prompts = [render_prompt(tokenizer, prompt_messages(record["messages"])) for record in test]
    generator = TransformersGenerator(loaded, tokenizer, study_decoding(config, tokenizer, loaded))
    new_tokens, batch_size = config.eval.max_new_tokens, config.eval.batch_size

    timings = side_by_side(generator, tokenizer, prompts, batch_size)
    batched, single = timings["batched"], timings["one_by_one"]
    batched_seconds, single_seconds = timings["batched_seconds"], timings["one_by_one_seconds"]
    identical = sum(a.text == b.text for a, b in zip(batched, single))
    speedup = single_seconds / batched_seconds
    per_thousand = batched_seconds / len(prompts) * 1000
    return {
        "items": len(prompts), "max_new_tokens": new_tokens, "batch_size": batch_size,
        "batched_seconds": batched_seconds, "one_by_one_seconds": single_seconds,
        "speedup": speedup, "target_speedup": TARGET_SPEEDUP,
        "seconds_per_1000_items": per_thousand,
        "identical_answers": identical,
        "generated_tokens": sum(a.new_tokens for a in batched),
        "headline": [
            {"measure": f"generation, batched ({batch_size}) vs one by one", "value": round(speedup, 1), "unit": "x"},
            {"measure": "evaluation generation per 1,000 test items (tiny model)", "value": round(per_thousand, 1),
             "unit": "s"},
        ],
        "machine": machine(),
        "provenance": provenance(config.to_dict()),
    }


def markdown(result: dict) -> str:
    return "\n".join([
        "# Generation: batched versus one by one", "",
        f"Tiny model, {result['items']} generated test questions, greedy, at most {result['max_new_tokens']} "
        f"new tokens ({result['generated_tokens']} generated in all).", "",
        "| decoding | seconds | seconds per 1,000 items |", "|---|---:|---:|",
        f"| batches of {result['batch_size']}, length-sorted, left-padded, split as rows finish | "
        f"{result['batched_seconds']:.1f} | "
        f"{result['seconds_per_1000_items']:.1f} |",
        f"| one by one | {result['one_by_one_seconds']:.1f} | "
        f"{result['one_by_one_seconds'] / result['items'] * 1000:.1f} |", "",
        f"Speed-up **{result['speedup']:.1f}x** (target {result['target_speedup']:g}x); "
        f"{result['identical_answers']} of {result['items']} answers identical.", "",
    ])


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", type=Path, required=True, help="the tiny model (make tiny-model)")
    parser.add_argument("--items", type=int, default=200, help="test questions to answer (default 200)")
    parser.add_argument("--out", type=Path, default=Path("results/bench"))


def run(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        result = run_benchmark(args.model, args.items, Path(scratch))
    write_benchmark(args.out, "generation", result, markdown(result))
