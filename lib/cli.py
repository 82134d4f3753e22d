"""The one command-line entry point: `python -m lib <command> ...` (installed as `medqa`).

Each command lives in the module named below, which provides `add_arguments(parser)` and
`run(args)` (the options several commands share are lib.arguments'). Modules are imported only
when their command runs, so `--help` stays fast and a command that needs no torch never loads it.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import logging
import sys
import warnings

from lib.errors import UserError

COMMANDS = {
    "config": ("lib.config_cli", "print the resolved configuration of a run as YAML"),
    "check-variables": ("lib.make_variables", "check the variables given to make: one line names the first wrong one"),
    "data": ("lib.data.prepare",
             "get the raw data (hub, generated or a file), clean it, write test/dev and nested train splits"),
    "mcq-data": ("lib.data.mcq",
                 "get the knowledge track's multiple-choice items (hub, generated or a file) into mcq.jsonl"),
    "tiny-model": ("lib.tiny_model", "build and pretrain the demo's tiny Qwen2 model and its tokenizer"),
    "model": ("lib.model", "fetch the base model into models/ and check that it loads"),
    "train": ("lib.train", "train one run (LoRA or QLoRA on one train subset) with TRL's SFTTrainer"),
    "evaluate": ("lib.evaluate.run", "evaluate a run or the base model: test loss, generated answers, metrics, MCQ"),
    "on-free-gpu": ("lib.gpus", "run a command on GPU ids no other job of this machine holds (make -jN GPUS=...)"),
    "submit": ("lib.slurm", "submit the unfinished runs as a Slurm job array and a report job after it (make submit)"),
    "chat": ("lib.chat", "chat with a run (or the base model) in the terminal, streaming the answer"),
    "export": ("lib.export", "merge a run's adapter into the 16-bit base, check its answers, write its model card"),
    "push": ("lib.push", "upload a run's adapter (or its merged export) to a Hugging Face Hub model repository"),
    "serve": ("lib.serve",
              "serve a run or the base model behind an OpenAI-compatible API (vLLM or transformers serve)"),
    "summarize": ("lib.summarize", "collect the runs into summary.csv/.md, fit the data-scaling curves (scaling.json)"),
    "figures": ("lib.figures", "draw the figures of a summary as PDF (paper) and PNG (README)"),
    "report": ("lib.report.write", "write the report's generated LaTeX: numbers as macros, tables, what is missing"),
    "review": ("lib.review.command",
               "blind side-by-side rating of the runs' answers in a browser; invite, export, analyse votes"),
    "paper": ("lib.paper",
              "compile paper/report.tex against one generated folder into a PDF; --check: can TeX build it here"),
    "plan": ("lib.plan",
             "estimate the peak memory of LoRA and QLoRA training (weights, adapters, activations) without a GPU"),
    "bench-data": ("lib.bench.data", "time the data pipeline on 100k generated records (records/s per stage)"),
    "bench-collation": ("lib.bench.collation",
                        "training tokens/s of this project's collation vs padding every example to 512"),
    "bench-generation": ("lib.bench.generation", "batched vs one-by-one greedy generation on the tiny model"),
    "bench-demo": ("lib.bench.demo", "time every stage of make demo from scratch"),
    "bench-gpu": ("lib.bench.gpu",
                  "time LoRA/QLoRA training steps of the 3B architecture on a GPU: tokens/s, peak memory, MFU"),
    "gpu-check": ("lib.bench.gpu_check",
                  "is this GPU machine ready: padding-free loss, fp32 adapters, vLLM, training and generation speed"),
    "bench-summary": ("lib.bench.summary", "gather the benchmarks' headlines into results/bench/README.md"),
    "wheelhouse": ("lib.wheelhouse",
                   "every pinned package as wheels for a machine without internet (make wheelhouse; --check DIR)"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m lib", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", metavar="<command>", required=True)
    for name, (_, help_text) in COMMANDS.items():
        commands.add_parser(name, help=help_text, add_help=False)
    return parser


def quiet_known_noise() -> None:
    """Warnings the user can do nothing about. bitsandbytes warns at every import on a CPU that an
    optional kernel, fetched from the Hugging Face hub at run time, is missing (the 4-bit layers
    work without it); peft reads transformers' deprecated `is_gradient_checkpointing` at every
    adapter load."""
    logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning)


# A folder or disk the command cannot write to: the user's environment, not a bug.
NOT_WRITABLE = (errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT)


def not_writable(err: OSError) -> str:
    """One line for an OSError of NOT_WRITABLE: the file, why, and what to do."""
    from lib.io import shown

    where = shown(err.filename) if err.filename else "a file"
    if err.errno in (errno.ENOSPC, errno.EDQUOT):
        return f"cannot write {where}: {err.strerror}; free some space, or write elsewhere (DATA_DIR=, RESULTS_DIR=)"
    return (f"cannot write {where}: {err.strerror}; make its folder writable, or write elsewhere "
            "(DATA_DIR=, RESULTS_DIR=)")


def main(argv: list[str] | None = None) -> None:
    """Run one command. Without `argv` (python -m lib, medqa) this process is the command's own, and
    the command may leave out of it what it will not use (args.own_process); a caller's process,
    which may run other commands after this one, passes `argv`."""
    own_process = argv is None
    argv = sys.argv[1:] if argv is None else argv
    quiet_known_noise()
    if not argv or argv[0] not in COMMANDS:
        build_parser().parse_args(argv)  # prints usage (and exits) for --help or an unknown command
        return
    name, rest = argv[0], argv[1:]
    module_name, help_text = COMMANDS[name]
    module = importlib.import_module(module_name)
    parser = argparse.ArgumentParser(prog=f"python -m lib {name}", description=help_text)
    module.add_arguments(parser)
    parser.set_defaults(own_process=own_process)
    args = parser.parse_args(rest)
    try:
        module.run(args)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    except OSError as err:
        if err.errno not in NOT_WRITABLE:
            raise
        print(f"error: {not_writable(err)}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print(f"\n{name}: interrupted; run the same command again to resume", file=sys.stderr)
        sys.exit(130)
