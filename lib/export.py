"""Export a trained run as one model that transformers and vLLM load without PEFT, with its card.

    python -m lib export --profile demo --method lora --run-dir results/demo/runs/lora-600 \\
        --data data/processed/demo --out results/demo/export/lora-600
    make export EXP=lora-600 PROFILE=demo

The folder results/<profile>/export/<run>/ holds the adapter merged into the base
(model.safetensors, config.json), the tokenizer with its chat template, generation_config.json,
README.md (the model card, lib.model_card) and export.json (what it was made from and how it was
checked). The adapter's own card is written to results/<profile>/runs/<run>/adapter/README.md.

- Merging: the base is loaded unquantised in the compute dtype (bf16/fp16 on a GPU, fp32 on a
  CPU) and PEFT adds the adapter to its weights (merge_and_unload). A QLoRA run is merged the
  same way, into the dequantised 16-bit base: merging into 4-bit weights would round most of the
  adapter's small update away.
- generation_config.json is the study's greedy decoding (lib.evaluate.generate.Decoding), every
  value explicit, so that `generate()` with no arguments answers as the evaluation did; never the
  base model's own file (Qwen2.5-3B-Instruct's samples at temperature 0.7).
- The check: the written folder is loaded back with AutoModelForCausalLM alone, and its greedy
  answers to the first --check-prompts test questions are compared with the adapter's as it was
  evaluated (the base as trained, 4-bit for QLoRA, with the adapter attached). A LoRA run merged
  in fp32 on a CPU must agree on every prompt (the merged weights compute the same function up
  to rounding); elsewhere (16-bit weights, or QLoRA's 4-bit base against the merged 16-bit one)
  the agreement rate is recorded in export.json and quoted by the card.
- Atomic: everything is written into a temporary folder that replaces the export only once it
  is complete and checked. Because the folder is replaced whole, an export folder holding files the
  export did not write (a user's notes, a converted model) is refused with one line naming them,
  never deleted. Two exports of one run at a time: the second stops with one line.
- Trusted only when whole: export.json records the size and SHA-256 of every file written. An
  export whose inputs (adapter, run files, base evaluation, data manifest) have not changed and
  whose files are all as written is left as it is; a missing, truncated or changed file makes it
  exported again. Hashing is the price: SHA-256 ran at ~390 MiB/s on a busy 2-core machine here,
  so the 3B model's 6.2 GB take ~15 s at each `make serve`.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from lib.config import BASE_RUN
from lib.errors import UserError
from lib.io import atomic_folder, exclusive, provenance, read_json, sha256_file, shown, write_json
from lib.model_card import ADAPTER, MERGED, card_inputs, write_card
from lib.runs import ADAPTER_FILES, run_status

RECORD = "export.json"
DEFAULT_CHECK_PROMPTS = 8


# --- which runs can be exported ----------------------------------------------------------------------


def check_trained(run_dir: Path) -> None:
    """A run that finished training and still has its adapter, else one line saying what to do."""
    if run_dir.name == BASE_RUN:
        raise UserError("EXP=base: the untuned model has no adapter to merge or push; "
                        "`make serve EXP=base` serves it as it is")
    status, note = run_status(run_dir)
    if status == "missing":
        runs = sorted(p.name for p in run_dir.parent.glob("*") if p.is_dir() and p.name != BASE_RUN)
        known = f"runs there: {', '.join(runs)}" if runs else "no run is there yet"
        raise UserError(f"{shown(run_dir)}: no such run ({known}); `make exp-{run_dir.name}` trains it")
    if status == "training":
        raise UserError(f"{shown(run_dir)}: training has not finished (no train.done); "
                        f"`make exp-{run_dir.name}` trains it (resuming from its last checkpoint)")
    if status in ("incomplete", "corrupt"):
        raise UserError(note)


# --- merging -----------------------------------------------------------------------------------------


def unquantised(config):
    """The run's configuration with its base loaded in 16 bits: QLoRA's adapter is merged into the
    dequantised base, never into 4-bit weights."""
    return dataclasses.replace(config, quantization=dataclasses.replace(config.quantization, load_in_4bit=False))


def inference_device():
    import torch

    return {"": 0} if torch.cuda.is_available() else None


def write_merged(config, adapter_dir: Path, out: Path) -> str:
    """The adapter merged into the 16-bit base, its tokenizer and the study's greedy decoding,
    saved in `out`; returns the dtype of the weights."""
    from peft import PeftModel

    from lib.evaluate.generate import study_decoding
    from lib.model import check_adapter_base, compute_dtype, dtype_name, load_model, load_tokenizer

    check_adapter_base(adapter_dir, config.model.name_or_path)
    dtype = compute_dtype(config.model.dtype)
    tokenizer = load_tokenizer(config)
    base = load_model(unquantised(config), dtype, device_map=inference_device())
    model = PeftModel.from_pretrained(base, str(adapter_dir)).merge_and_unload()
    model.generation_config = study_decoding(config, tokenizer, model).generation_config()
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return dtype_name(dtype)


# --- the check ---------------------------------------------------------------------------------------


def first_test_questions(test_file: Path, count: int) -> list[tuple[str, list[dict]]]:
    """(id, prompt messages) of the first `count` test questions."""
    from lib.prompts import conversations, prompt_messages

    prompts = []
    for line_number, record in conversations(test_file):
        if len(prompts) == count:
            break
        where = f"{shown(test_file)}:{line_number}"
        prompts.append((str(record.get("id", where)), prompt_messages(record["messages"], where)))
    if not prompts:
        raise UserError(f"{shown(test_file)}: no test questions to check the export with; `make data` writes them")
    return prompts


def greedy_answers(config, tokenizer, model, prompts: list[tuple[str, list[dict]]]) -> list[str]:
    """The study's greedy answers (lib.evaluate.generate) to the prompts."""
    from lib.evaluate.generate import TransformersGenerator, study_decoding
    from lib.prompts import render_prompt

    generator = TransformersGenerator(model, tokenizer, study_decoding(config, tokenizer, model))
    texts = [render_prompt(tokenizer, messages) for _, messages in prompts]
    return [answer.text for answer in generator.generate(texts, config.eval.batch_size, progress=False)]


def load_exported(folder: Path):
    """(tokenizer, model) of an export, as any user loads it: transformers alone, no PEFT."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype="auto", use_safetensors=True,
                                                 device_map=inference_device())
    return tokenizer, model.eval()


def compare_with_adapter(config, adapter_dir: Path, merged_dir: Path, prompts, dtype: str) -> dict:
    """How many of the merged model's answers equal the adapter's (as evaluated)."""
    import torch

    from lib.model import load_for_inference

    adapter = greedy_answers(config, *load_for_inference(config, adapter_dir), prompts)
    merged = greedy_answers(config, *load_exported(merged_dir), prompts)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    differing = [item for (item, _), a, m in zip(prompts, adapter, merged) if a != m]
    return {"prompts": len(prompts), "agreeing": len(prompts) - len(differing),
            "agreement": (len(prompts) - len(differing)) / len(prompts), "differing_ids": differing,
            "device": device, "dtype": dtype,
            "exact_required": device == "cpu" and dtype == "float32" and not config.quantization.load_in_4bit}


# --- the export --------------------------------------------------------------------------------------


def export_inputs(config, run_dir: Path, data_dir: Path, check_prompts: int) -> dict:
    """What the export is made from: when none of it changed, the export stands."""
    files = [run_dir / "adapter" / name for name in ADAPTER_FILES] + [
        run_dir / "config.json", run_dir / "eval.json", run_dir.parent / BASE_RUN / "eval.json",
        data_dir / "manifest.json", data_dir / "test.jsonl"]
    return {"base_model": config.model.name_or_path, "dtype_setting": config.model.dtype,
            "check_prompts": check_prompts,
            "files": {shown(path): sha256_file(path) if path.is_file() else None for path in files}}


def output_files(folder: Path) -> dict:
    """{file: {bytes, sha256}} of what the export wrote into `folder`, export.json aside."""
    return {path.relative_to(folder).as_posix(): {"bytes": path.stat().st_size, "sha256": sha256_file(path)}
            for path in sorted(folder.rglob("*")) if path.is_file() and path.name != RECORD}


def recorded(out: Path) -> dict | None:
    """export.json of the export in `out`, or None where there is none or it cannot be read."""
    try:
        record = read_json(out / RECORD)
    except UserError:
        return None
    return record if isinstance(record, dict) else None


def damage(out: Path, outputs) -> str | None:
    """What differs from the files the export recorded (sizes first: they are cheap), or None."""
    if not isinstance(outputs, dict) or not outputs:
        return f"{RECORD} records no output files (an export by an earlier version)"
    for name, expected in outputs.items():
        path = out / name
        if not path.is_file():
            return f"{name} is missing"
        if path.stat().st_size != expected.get("bytes"):
            return f"{name} has {path.stat().st_size} bytes, not the {expected.get('bytes')} written"
    for name, expected in outputs.items():
        if sha256_file(out / name) != expected.get("sha256"):
            return f"{name} changed since it was written (its SHA-256 differs)"
    return None


def why_stale(out: Path, inputs: dict) -> str | None:
    """Why the export in `out` must be made again, or None when it stands."""
    record = recorded(out)
    if record is None:
        return f"no readable {RECORD}"
    if record.get("inputs") != inputs:
        return "its inputs changed"
    return damage(out, record.get("outputs"))


def written_names(record: dict | None) -> set[str]:
    """The names in the export folder that an export wrote, as its record lists them."""
    outputs = (record or {}).get("outputs")
    return {RECORD} | ({name.split("/")[0] for name in outputs} if isinstance(outputs, dict) else set())


def check_nothing_else(out: Path, ours: set[str]) -> None:
    """`out` is replaced whole: refuse while it holds anything the export did not write."""
    if out.exists() and not out.is_dir():
        raise UserError(f"{shown(out)}: a file is in the way of the export folder; move it elsewhere")
    others = sorted(entry.name for entry in out.iterdir() if entry.name not in ours) if out.is_dir() else []
    if others:
        listed = ", ".join(others[:5]) + (f" and {len(others) - 5} more" if len(others) > 5 else "")
        raise UserError(f"{shown(out)}: holds {listed}, which the export did not write; the export replaces "
                        "this folder whole, so move them elsewhere and run it again")


def export(config, run_dir: Path, data_dir: Path, out: Path, check_prompts: int = DEFAULT_CHECK_PROMPTS) -> dict:
    """Merge, save, check and document one run into `out`; returns export.json's record."""
    check_trained(run_dir)
    inputs = export_inputs(config, run_dir, data_dir, check_prompts)
    if why_stale(out, inputs) is None:  # only read: an export in a read-only folder still serves
        return standing(out)
    with exclusive(out.parent / f".{out.name}.lock", f"an export of {run_dir.name}"):
        stale = why_stale(out, inputs)  # again, now alone: an export that held the lock may have made it
        if stale is None:
            return standing(out)
        previous = recorded(out)
        # A folder without export.json is no export's: anything in it is in the way. Where export.json
        # lists no files (unreadable, or by an earlier version), the export's own are known once this
        # one has written them: checked again before the folder is replaced.
        if not (out / RECORD).exists() or (previous and "outputs" in previous):
            check_nothing_else(out, written_names(previous))
        if out.exists():
            print(f"export: {shown(out)}: {stale}; exporting again")
        return write_export(config, run_dir, data_dir, out, inputs, previous)


def standing(out: Path) -> dict:
    print(f"export: {shown(out)} is up to date")
    return read_json(out / RECORD)


def write_export(config, run_dir: Path, data_dir: Path, out: Path, inputs: dict, previous: dict | None) -> dict:
    adapter_dir = run_dir / "adapter"
    prompts = first_test_questions(data_dir / "test.jsonl", inputs["check_prompts"])
    with atomic_folder(out) as work:
        dtype = write_merged(config, adapter_dir, work)
        check = compare_with_adapter(config, adapter_dir, work, prompts, dtype)
        if check["exact_required"] and check["differing_ids"]:
            raise RuntimeError(f"the merged model's greedy answers differ from the adapter's on "
                               f"{', '.join(check['differing_ids'])}: merging changed the model")
        record = {"run": run_dir.name, "base_model": config.model.name_or_path,
                  "method": "qlora" if config.quantization.load_in_4bit else "lora",
                  "merged_into": "the dequantised 16-bit base" if config.quantization.load_in_4bit else "the base",
                  "dtype": dtype, "check": check, "inputs": inputs, "provenance": provenance()}
        card = card_inputs(run_dir, data_dir)
        write_card(work, dataclasses.replace(card, export=record), MERGED)
        write_card(adapter_dir, card, ADAPTER)
        record["outputs"] = output_files(work)
        write_json(work / RECORD, record)  # last: the record of a whole export
        check_nothing_else(out, written_names(record) | written_names(previous))
    print(f"export: {shown(out)}: {run_dir.name} merged into {config.model.name_or_path} ({dtype}); "
          f"greedy answers equal the adapter's on {check['agreeing']} of {check['prompts']} test prompts")
    return record


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from lib.arguments import add_config_arguments

    add_config_arguments(parser)
    parser.add_argument("--run-dir", type=Path, required=True, help="results/<profile>/runs/<run>")
    parser.add_argument("--data", type=Path, required=True, help="the processed data (test.jsonl, manifest.json)")
    parser.add_argument("--out", type=Path, required=True, help="results/<profile>/export/<run>")
    parser.add_argument("--check-prompts", type=int, default=DEFAULT_CHECK_PROMPTS,
                        help=f"test questions answered by both the merged model and the adapter "
                             f"(default {DEFAULT_CHECK_PROMPTS})")


def run(args: argparse.Namespace) -> None:
    from lib.arguments import config_from_args

    check_trained(args.run_dir)  # before --method, so that EXP=base gets its own message
    if args.method is None:
        raise UserError("export needs --method (lora or qlora)")
    if args.check_prompts < 1:
        raise UserError(f"--check-prompts {args.check_prompts}: at least 1 test question must check the export")
    export(config_from_args(args), args.run_dir, args.data, args.out, args.check_prompts)
