"""Talk to a run in the terminal: the answer streams token by token as it is generated.

    python -m lib chat --profile demo --method lora --run-dir results/demo/runs/lora-100
    make chat EXP=lora-100 PROFILE=demo          (EXP=base for the untuned model, EXP=base-nf4 in NF4)

Same chat template, system prompt and greedy decoding as the evaluation, so what you read is
what the metrics scored. The conversation is kept across turns; /reset forgets it. Ctrl-C or
end of input (Ctrl-D) leaves.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lib.config import UNTUNED_RUNS
from lib.errors import UserError


def reply(model, tokenizer, messages: list[dict], decoding) -> str:
    """Generate one answer, printing it as it streams; returns the full text."""
    import torch
    from transformers import TextStreamer

    from lib.prompts import render_prompt

    inputs = tokenizer(render_prompt(tokenizer, messages), return_tensors="pt", add_special_tokens=False)
    streamer = TextStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)
    with torch.inference_mode():
        output = model.generate(**inputs.to(model.device), generation_config=decoding.generation_config(),
                                streamer=streamer)
    new_tokens = output[0, inputs["input_ids"].shape[1]:]
    return tokenizer.decode(new_tokens, skip_special_tokens=True).strip()


def chat(config, run_dir: Path) -> None:
    from lib.evaluate.generate import study_decoding
    from lib.model import load_for_inference
    from lib.runs import adapter_to_load

    adapter_dir = adapter_to_load(run_dir, config.quantization.load_in_4bit)
    tokenizer, model = load_for_inference(config, adapter_dir)
    decoding = study_decoding(config, tokenizer, model)
    system = [{"role": "system", "content": config.data.system_prompt}]
    messages = list(system)
    interactive = sys.stdin.isatty()
    print(f"chat with {run_dir.name} ({config.model.name_or_path}); /reset forgets the conversation, "
          "Ctrl-D or Ctrl-C leaves", flush=True)
    while True:
        try:
            question = input("你: " if interactive else "").strip()
        except EOFError:
            break
        if not question:
            continue
        if question == "/reset":
            messages = list(system)
            continue
        if not interactive:
            print(f"你: {question}")
        print("助手: ", end="", flush=True)
        answer = reply(model, tokenizer, messages + [{"role": "user", "content": question}], decoding)
        messages += [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
    print()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from lib.cli import add_config_arguments

    add_config_arguments(parser)
    parser.add_argument("--run-dir", type=Path, required=True,
                        help="results/<profile>/runs/<run>, or .../base for the untuned model")


def run(args: argparse.Namespace) -> None:
    from lib.cli import config_from_args

    if args.run_dir.name not in UNTUNED_RUNS and args.method is None:
        raise UserError("chat needs --method for a trained run (EXP=base for the untuned model)")
    try:
        chat(config_from_args(args), args.run_dir)
    except KeyboardInterrupt:
        print()  # Ctrl-C leaves quietly, like end of input
