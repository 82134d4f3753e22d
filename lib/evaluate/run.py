"""Evaluate one run (or the untuned base model) on the whole test set and the multiple-choice tracks.

    python -m lib evaluate --profile demo --method qlora --run-dir results/demo/runs/qlora-100 \\
        --data data/processed/demo                                  (make eval-qlora-100 PROFILE=demo)
    python -m lib evaluate --profile demo --run-dir results/demo/runs/base --data data/processed/demo
                                                                    (make eval-base PROFILE=demo)
    python -m lib evaluate --profile demo --method qlora --run-dir results/demo/runs/base-nf4 \\
        --data data/processed/demo                                  (make eval-base-nf4 PROFILE=demo)

The base model is evaluated exactly like a run, as its own row `base` (0 training examples), and
again quantised to NF4 as QLoRA loads it, as the row `base-nf4` (QLoRA's 0-data row: the qlora
configuration without an adapter). A QLoRA run is evaluated on the 4-bit base it was trained
against, with its adapter attached.

Writes into the run folder:
  predictions.jsonl  one line per test item: id, question, reference, prediction, new_tokens,
                     hit_length_limit, scores (rouge1/2/L, loss, ref_tokens)
  eval.json          every metric with its 95% bootstrap interval over test items, the
                     multiple-choice tracks (mcq: medical knowledge, general: general ability;
                     lib/evaluate/multiple_choice.py), generation settings and provenance (written last)

Generation is the slow part; finished batches are kept in predictions.partial.jsonl, so an
interrupted evaluation continues where it stopped. eval.json records what the scores were made
from (`inputs`: the settings they depend on, the sha256 of the test set, the multiple-choice items
and the adapter); a run already evaluated on the same inputs is not evaluated again (make REDO=1
runs this command on a finished run, and only what changed is redone).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import time
from pathlib import Path

import numpy as np

from lib.config import UNTUNED_RUNS
from lib.errors import UserError
from lib.io import (
    exclusive,
    jsonl_bytes,
    provenance,
    read_jsonl,
    read_log,
    sha256_file,
    shown,
    write_json,
    write_jsonl,
)
from lib.prompts import conversations, prompt_messages, question_of, render_prompt
from lib.runs import DONE_MARKER, MCQ_PREDICTIONS, RUN_LOCK, adapter_digest, adapter_to_load, readable_run_files
from lib.stats import BOOTSTRAP_SEED, bootstrap, token_weighted_loss

PARTIAL = "predictions.partial.jsonl"


def load_test_set(path: Path) -> list[dict]:
    if not path.is_file():
        raise UserError(f"{shown(path)}: no such split; `make data` writes it")
    records = []
    for line_number, record in conversations(path):
        prompt_messages(record["messages"], where=f"{shown(path)}:{line_number}")  # ends with the answer
        records.append(record)
    return records


# --- test loss ----------------------------------------------------------------------------------


def loss_metrics(losses, n_samples: int) -> dict:
    rows = np.array([[item.nll_sum, item.tokens] for item in losses if item.tokens], dtype=float)
    loss = bootstrap(rows, token_weighted_loss, n_samples=n_samples)
    perplexity = {key: math.exp(value) if key in ("value", "ci_low", "ci_high") and value is not None else value
                  for key, value in loss.items()}
    return {"test_loss": loss, "perplexity": perplexity}


# --- generation, resumable ------------------------------------------------------------------------


def generation_key(run_dir: Path, prompts: list[str], settings: dict) -> str:
    """Identifies the questions, model and settings that wrote a partial file: answers are kept
    only for the same prompts from the same weights (another test set or model starts afresh)."""
    adapter = run_dir / "adapter" / "adapter_model.safetensors"
    weights = adapter.stat().st_mtime_ns if adapter.exists() else None
    asked = hashlib.sha256("\n".join(prompts).encode("utf-8")).hexdigest()
    return hashlib.sha256(json.dumps([asked, settings, weights], sort_keys=True).encode()).hexdigest()[:16]


def generate_resumably(generator, prompts: list[str], settings: dict, run_dir: Path) -> list:
    """The generator's answers, keeping each finished batch in predictions.partial.jsonl so that
    an interrupted evaluation continues where it stopped."""
    from lib.evaluate.generate import Answer

    partial = run_dir / PARTIAL
    key = generation_key(run_dir, prompts, settings)
    done: dict[int, Answer] = {}
    lines = read_log(partial)  # a kill may have cut the last line short
    if lines and lines[0].get("key") == key:
        done = {line["index"]: Answer(line["text"], line["new_tokens"], line["hit_length_limit"])
                for line in lines[1:]}
        print(f"evaluate: {len(done)} of {len(prompts)} answers kept from an interrupted run")
    todo = [i for i in range(len(prompts)) if i not in done]
    if todo:
        with partial.open("wb") as handle:
            handle.write(jsonl_bytes([{"key": key}, *({"index": i, **vars(a)} for i, a in done.items())]))

            def keep(batch, answers):
                handle.write(jsonl_bytes({"index": todo[p], **vars(a)} for p, a in zip(batch, answers)))
                handle.flush()

            fresh = generator.generate([prompts[i] for i in todo], settings["batch_size"], on_batch=keep)
        done.update(zip(todo, fresh))
    return [done[i] for i in range(len(prompts))]


def make_generator(config, backend: str, model, tokenizer, decoding, adapter_dir: Path | None):
    from lib.evaluate.generate import TransformersGenerator, VllmGenerator
    from lib.model import compute_dtype, dtype_name, model_location

    if backend == "vllm":
        return VllmGenerator(model_location(config.model.name_or_path), str(adapter_dir) if adapter_dir else None,
                             decoding, dtype_name(compute_dtype(config.model.dtype)),
                             config.quantization.load_in_4bit, max_lora_rank=config.lora.r)
    return TransformersGenerator(model, tokenizer, decoding)


# --- what the scores are made from ----------------------------------------------------------------


def evaluation_inputs(config, run_dir: Path, data_dir: Path) -> dict:
    """Everything a run's scores depend on: the settings of the model, its loading, decoding and
    scoring (train.max_length cuts the scored answers, data.system_prompt starts the MCQ prompts),
    the sha256 of the test set and the multiple-choice items, and of the adapter's weights."""
    from lib.evaluate.multiple_choice import TRACKS

    settings = config.to_dict()
    return {"settings": {"model": settings["model"], "quantization": settings["quantization"], "eval": settings["eval"],
                         "max_length": config.train.max_length, "system_prompt": config.data.system_prompt},
            "data": {name: sha256_file(data_dir / name) if (data_dir / name).is_file() else None
                     for name in ("test.jsonl", *(filename for filename, _ in TRACKS.values()))},
            "adapter": adapter_digest(run_dir)}


def evaluated_on(run_dir: Path, inputs: dict) -> dict | None:
    """The run's eval.json where it is sound, made from exactly these inputs and beside the per-item
    files the summary resamples, else None."""
    result = readable_run_files(run_dir, ("eval.json",)).get("eval.json")
    if result is None or result.get("inputs") != inputs:
        return None
    per_item = ("predictions.jsonl", *((MCQ_PREDICTIONS,) if result.get("mcq") else ()))
    return result if all((run_dir / name).is_file() for name in per_item) else None


# --- the run -------------------------------------------------------------------------------------


def evaluate(config, run_dir: Path, data_dir: Path) -> dict:
    from lib.evaluate.generate import choose_backend, generation_batch_size, study_decoding
    from lib.evaluate.likelihood import item_losses
    from lib.evaluate.metrics import corpus_metrics, item_scores
    from lib.hardware import free_memory
    from lib.model import load_for_inference, model_origin

    name = run_dir.name
    adapter_dir = adapter_to_load(run_dir, config.quantization.load_in_4bit)
    if adapter_dir is not None and not (run_dir / DONE_MARKER).is_file():
        raise UserError(f"{shown(run_dir)}: the run has not finished training (no train.done); "
                        f"train it first with make exp-{name}")
    test = load_test_set(data_dir / "test.jsonl")
    inputs = evaluation_inputs(config, run_dir, data_dir)
    if (result := evaluated_on(run_dir, inputs)) is not None:
        print(f"evaluate: {name} is already evaluated on these data, weights and settings; nothing to redo")
        os.utime(run_dir / "eval.json")  # up to date: newer than the train.done make compares it with
        return result
    backend = choose_backend(config.eval.backend)
    tokenizer, model = load_for_inference(config, adapter_dir)
    n_samples = config.eval.bootstrap_samples

    # The likelihoods first (test loss, multiple choice): they need the model's own logits.
    losses = item_losses(model, tokenizer, [r["messages"] for r in test], config.train.max_length,
                         config.eval.batch_size)
    knowledge = multiple_choice(config, model, tokenizer, data_dir, run_dir, n_samples)
    decoding = study_decoding(config, tokenizer, model)
    merged = backend == "transformers" and adapter_dir is not None and not config.quantization.load_in_4bit
    if backend == "vllm":
        model = None  # vLLM loads its own copy of the weights: the GPU must not hold two
        free_memory()
    elif merged:
        # generating with W + BA folded into one matrix saves two small matmuls per adapted layer per
        # token; a 4-bit base (QLoRA) keeps its adapter apart, as merging into it would round it away
        model = model.merge_and_unload()

    prompts = [render_prompt(tokenizer, prompt_messages(r["messages"])) for r in test]
    longest_prompt = max(len(tokenizer(prompt, add_special_tokens=False)["input_ids"]) for prompt in prompts)
    batch_size = config.eval.batch_size if model is None else generation_batch_size(config, model, longest_prompt)
    settings = {"decoding": decoding.record(backend), "merged_adapter": merged, "batch_size": batch_size}
    started = time.perf_counter()
    generator = make_generator(config, backend, model, tokenizer, decoding, adapter_dir)
    answers = generate_resumably(generator, prompts, settings, run_dir)
    settings["seconds"] = time.perf_counter() - started

    references = [r["messages"][-1]["content"] for r in test]
    predictions = []
    for record, reference, answer, loss in zip(test, references, answers, losses):
        scores = {**item_scores(answer.text, reference), "loss": loss.loss, "ref_tokens": loss.tokens}
        predictions.append({"id": record["id"], "question": question_of(record["messages"]), "reference": reference,
                            "prediction": answer.text, "new_tokens": answer.new_tokens,
                            "hit_length_limit": answer.hit_length_limit, "scores": scores})

    metrics = {**loss_metrics(losses, n_samples),
               **corpus_metrics([a.text for a in answers], references, [a.hit_length_limit for a in answers],
                                n_samples=n_samples, item_rouge=[p["scores"] for p in predictions])}
    result = {"run": name, "n_items": len(test), "metrics": metrics, "generation": settings,
              "model_origin": model_origin(config.model.name_or_path), "inputs": inputs, **knowledge}
    if config.eval.judge:
        from lib.evaluate.judge import judge_predictions

        result["judge"] = judge_predictions(predictions, run_dir / "judge_cache.jsonl", n_samples=n_samples,
                                            seed=BOOTSTRAP_SEED, concurrency=config.eval.judge_concurrency)
        metrics.update(result["judge"]["metrics"])  # judge_accuracy, judge_helpfulness, judge_safety (1-5)
    result["provenance"] = provenance(config.to_dict(), seed=BOOTSTRAP_SEED)

    write_jsonl(run_dir / "predictions.jsonl", predictions)
    write_json(run_dir / "eval.json", result)
    (run_dir / PARTIAL).unlink(missing_ok=True)
    return result


def multiple_choice(config, model, tokenizer, data_dir: Path, run_dir: Path, n_samples: int) -> dict:
    """The multiple-choice tracks (medical knowledge "mcq", general ability "general"), each scored
    by option letter and by option text; a track whose items file is absent is skipped. Each
    knowledge-track item's answer goes to the run's mcq_predictions.jsonl (the summary's trends
    resample them)."""
    from lib.evaluate.multiple_choice import TRACKS, mcq_summary, score_mcq

    results = {}
    for track, (filename, title) in TRACKS.items():
        path = data_dir / filename
        if not path.is_file():
            print(f"evaluate: {shown(path)} not found, the {title} track is skipped (make data writes it)")
            continue
        per_item = score_mcq(model, tokenizer, list(read_jsonl(path)), config.data.system_prompt,
                             config.eval.batch_size)
        if track == "mcq":
            write_jsonl(run_dir / MCQ_PREDICTIONS, per_item)
        results[track] = mcq_summary(per_item, n_samples=n_samples, seed=BOOTSTRAP_SEED)
    return results


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from lib.arguments import add_config_arguments

    add_config_arguments(parser)
    parser.add_argument("--run-dir", type=Path, required=True,
                        help="the run folder, results/<profile>/runs/<run> (.../base for the untuned model)")
    parser.add_argument("--data", type=Path, required=True, help="folder of the processed splits")


def run(args: argparse.Namespace) -> None:
    from lib.arguments import config_from_args
    from lib.model import import_bitsandbytes_only_for_4bit

    if args.run_dir.name not in UNTUNED_RUNS and args.method is None:
        raise UserError("evaluate needs --method for a trained run (the base model is --run-dir .../base)")
    config = config_from_args(args)
    if args.own_process:
        import_bitsandbytes_only_for_4bit(config)
    if args.run_dir.name not in UNTUNED_RUNS and not args.run_dir.is_dir():
        raise UserError(f"{shown(args.run_dir)}: no such run; `make exp-{args.run_dir.name}` trains and evaluates it")
    with exclusive(args.run_dir / RUN_LOCK, f"evaluating {args.run_dir.name}"):
        result = evaluate(config, args.run_dir, args.data)
    shown_metrics = ", ".join(f"{key} {result['metrics'][key]['value']:.3f}"
                              for key in ("test_loss", "rougeL") if key in result["metrics"])
    print(f"evaluate: {result['run']} on {result['n_items']} items: {shown_metrics}")
