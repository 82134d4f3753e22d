"""Talk to a run in the terminal: the answer streams token by token as it is generated.

    python -m lib chat --profile demo --method lora --run-dir results/demo/runs/lora-100
    make chat EXP=lora-100 PROFILE=demo          (EXP=base for the untuned model, EXP=base-nf4 in NF4)

Same chat template, system prompt and greedy decoding as the evaluation, so what you read is
what the metrics scored. The conversation is kept across turns; /reset forgets it. Ctrl-C or
end of input (Ctrl-D) leaves. Questions may also be piped in, one a line.

Standard input and output must carry Chinese: a closed input, or a terminal whose encoding has no
Chinese characters (latin-1, ascii), is one line saying so before the model loads, and input that
is not text of the terminal's encoding is one line too.
"""

from __future__ import annotations

import argparse
import os
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


def check_terminal() -> None:
    """Refuse standard streams that cannot carry the conversation (before the model loads)."""
    uses = {"input": "reads questions from a terminal or a pipe (echo 头痛怎么办 | make chat EXP=<run>)",
            "output": "writes the answers there"}
    for name, stream in (("input", sys.stdin), ("output", sys.stdout)):
        if stream is None:
            raise UserError(f"standard {name} is closed; chat {uses[name]}")
        encoding = stream.encoding or "ascii"
        try:
            "你好".encode(encoding)
        except (UnicodeEncodeError, LookupError):
            raise UserError(f"the terminal's {name} encoding is {encoding}, which has no Chinese characters; "
                            "use a UTF-8 terminal (e.g. LANG=C.UTF-8) or set PYTHONIOENCODING=utf-8") from None
    # a rare character a GBK terminal lacks is shown as ?, rather than ending the chat mid-answer
    sys.stdout.reconfigure(errors="replace")


def read_question(interactive: bool) -> str | None:
    """The next question (stripped), or None at the end of input."""
    try:
        return input("你: " if interactive else "").strip()
    except EOFError:
        return None
    except UnicodeDecodeError as err:
        raise UserError(f"standard input is not {sys.stdin.encoding} text (byte {err.object[err.start]:#04x}); "
                        "set the terminal (or PYTHONIOENCODING) to the encoding you type in, e.g. UTF-8") from None


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
    while (question := read_question(interactive)) is not None:
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
    from lib.arguments import add_config_arguments

    add_config_arguments(parser)
    parser.add_argument("--run-dir", type=Path, required=True,
                        help="results/<profile>/runs/<run>, or .../base for the untuned model")


def run(args: argparse.Namespace) -> None:
    from lib.arguments import config_from_args

    if args.run_dir.name not in UNTUNED_RUNS and args.method is None:
        raise UserError("chat needs --method for a trained run (EXP=base for the untuned model)")
    check_terminal()
    try:
        chat(config_from_args(args), args.run_dir)
    except KeyboardInterrupt:
        print()  # Ctrl-C leaves quietly, like end of input
    except BrokenPipeError:  # the reader of the output went away (make chat ... | head): nothing left to do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so that the exit's flush is quiet
