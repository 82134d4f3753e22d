"""Train one cell of the grid: LoRA or QLoRA on one nested train subset, with TRL's SFTTrainer.

    python -m lib train --profile demo --method qlora --size 100 --seed 42 \\
        --data data/processed/demo --out results/demo/runs/qlora-100       (make train-qlora-100 PROFILE=demo)

Several GPUs or nodes run the same command under a launcher (make ... LAUNCH=accelerate or
LAUNCH=torchrun): each process loads its own copy of the model and the batch arithmetic keeps
the effective batch, so a run on 1 GPU and on 4 takes the same optimizer steps.

What happens, in order:
  1. the configuration is resolved and checked before anything heavy is loaded;
  2. the tokenizer and base model load (4-bit NF4 for QLoRA), LoRA adapters go on top;
  3. SFTTrainer renders each example's `messages` with the model's own chat template and trains
     on the assistant tokens only (<|im_end|> included, so the model learns to stop);
  4. the dev loss is measured every eval_steps; a checkpoint is kept every save_steps, and a run
     that was interrupted resumes from the last complete one with its optimizer, scheduler,
     data order and step;
  5. the adapter, config.json (with the inputs it was trained from and the sha256 of the
     adapter) and train_metrics.json are written, and train.done last.

A run that has finished training on the same inputs (settings, cell, seed, the sha256 of its train
and dev splits) is not trained again: make REDO=1 runs this command on a finished run, and only
what changed is redone.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from lib.config import Config, parse_count
from lib.errors import UserError
from lib.io import atomic_write, exclusive, provenance, read_json, sha256_file, shown, write_json
from lib.model import dtype_name, import_bitsandbytes_only_for_4bit, model_origin
from lib.prompts import assistant_tokens, conversations, loss_template
from lib.runs import ADAPTER_FILES, DONE_MARKER, RUN_LOCK, adapter_digest, readable_run_files


@dataclass(frozen=True)
class RunSpec:
    """Which cell of the grid a run is."""
    name: str
    profile: str
    method: str
    size: str
    examples: int
    seed: int


@dataclass(frozen=True)
class BatchPlan:
    """per_device x accumulation x processes = effective batch (examples per optimizer step)."""
    per_device: int
    accumulation: int
    processes: int

    @property
    def effective(self) -> int:
        return self.per_device * self.accumulation * self.processes


def plan_batches(effective: int, per_device: int, processes: int) -> BatchPlan:
    """The layout that keeps exactly `effective` examples per optimizer step on `processes`: each
    process takes effective / processes examples a step, in micro-batches of the largest size up to
    `per_device` that divides them, accumulated. 16 with 8 per device: 1 process -> 8 x 2, 2 -> 8 x 1,
    4 -> 4 x 1; 16 with 6 per device on 1 process -> 4 x 4. Only a process count that does not divide
    the effective batch has no layout (16 over 3 processes)."""
    if effective % processes:
        counts = ", ".join(str(n) for n in range(1, effective + 1) if effective % n == 0)
        raise UserError(f"train.effective_batch_size={effective} examples per step cannot be split evenly over "
                        f"{processes} processes; launch {counts} processes, or set an effective batch size "
                        f"that {processes} divides")
    per_process = effective // processes
    micro = max(size for size in range(1, min(per_device, per_process) + 1) if per_process % size == 0)
    return BatchPlan(micro, per_process // micro, processes)


# --- checks before loading anything ---------------------------------------------------------------


def check_hardware(config: Config) -> None:
    import torch

    if config.train.require_gpu and not torch.cuda.is_available():
        raise UserError(f"this profile trains {config.model.name_or_path} and needs a GPU, but none is visible; "
                        "use PROFILE=demo for the CPU demo (or set train.require_gpu=false to try anyway)")


def split_path(data_dir: Path, name: str) -> Path:
    path = data_dir / name
    if not path.is_file():
        sizes = sorted(p.stem.removeprefix("train-") for p in data_dir.glob("train-*.jsonl"))
        have = f" (train sizes there: {', '.join(sizes)})" if sizes else ""
        raise UserError(f"{shown(path)}: no such split{have}; `make data` writes it "
                        f"(with SIZES=\"...\" listing the size you need)")
    return path


def read_conversations(path: Path) -> list[list[dict]]:
    """The `messages` of every record of a split, checked."""
    conversations_of_split = [record["messages"] for _, record in conversations(path)]
    if not conversations_of_split:
        raise UserError(f"{shown(path)}: no records")
    return conversations_of_split


def tokenized(conversations_of_split: list[list[dict]], tokenizer, max_length: int, name: str, lengths: bool = True):
    """A split as the trainer takes it: token ids rendered with the training template and their
    loss mask (lib.prompts.assistant_tokens, the very tokens the test loss scores), cut to
    max_length from the start as TRL would, with each example's `length` for the sampler (training
    splits only: PaddingMeter counts what carries one). An example whose answer starts beyond
    max_length has no token to learn: it is left out, counted."""
    from datasets import Dataset

    template = loss_template(tokenizer)
    rows, dropped = [], 0
    for messages in conversations_of_split:
        ids, mask = assistant_tokens(tokenizer, messages, max_length, template)
        if any(mask):
            rows.append({"input_ids": ids, "assistant_masks": mask} | ({"length": len(ids)} if lengths else {}))
        else:
            dropped += 1
    if dropped:
        print(f"train: {name}: {dropped} of {len(conversations_of_split)} examples have no answer token within "
              f"train.max_length={max_length} and are left out")
    return Dataset.from_list(rows)


def batching(config: Config) -> str:
    """padding_free or padded: `auto` is padding-free where the attention kernel takes a row of
    concatenated examples as separate sequences (flash attention reads their boundaries from the
    position ids); sdpa would turn such a row into one dense mask over all its tokens, so there
    micro-batches are padded instead, of examples grouped by length (little padding either way)."""
    from lib.model import attention_kernel

    if config.train.batching != "auto":
        return config.train.batching
    return ("padding_free" if attention_kernel(config.model.attn_implementation).startswith("flash_attention")
            else "padded")


def gradient_checkpointing(config: Config, batch: BatchPlan, dtype) -> bool:
    """train.gradient_checkpointing, auto resolved by the memory plan of one micro-batch of
    max_length examples on this device: on a GPU its whole memory (the CUDA context aside), on a
    CPU the memory available now (this process's present size aside)."""
    setting = config.train.gradient_checkpointing
    if setting != "auto":
        return setting
    import psutil
    import torch
    from transformers import AutoConfig

    from lib.architecture import architecture_of
    from lib.hardware import peak_rss_gb
    from lib.memory import CUDA_CONTEXT_GB, checkpointing_needed, training_setting
    from lib.model import model_location

    arch = architecture_of(AutoConfig.from_pretrained(model_location(config.model.name_or_path)))
    device = "cuda" if torch.cuda.is_available() else "cpu"
    plan = training_setting(config, batch.per_device, config.train.max_length, dtype_name(dtype), device)
    if device == "cuda":
        return checkpointing_needed(arch, plan, torch.cuda.mem_get_info()[1] / 2**30, CUDA_CONTEXT_GB)
    return checkpointing_needed(arch, plan, psutil.virtual_memory().available / 2**30, peak_rss_gb())


# --- wall-clock time across interruptions -------------------------------------------------------


def make_wall_clock(resumed_seconds: float):
    """A callback that carries the training time of earlier sessions through checkpoints.

    Its state is saved inside the checkpoint's trainer_state.json (the file the Trainer writes
    last), so a resumed run reports the time of all sessions, not just the last one.
    """
    from transformers import TrainerCallback
    from transformers.trainer_callback import ExportableState

    class WallClock(TrainerCallback, ExportableState):
        def __init__(self):
            self.earlier = resumed_seconds
            self.started = None

        def on_train_begin(self, args, state, control, **kwargs):
            self.started = time.perf_counter()

        @property
        def total_seconds(self) -> float:
            return self.earlier + (0.0 if self.started is None else time.perf_counter() - self.started)

        def tokens_per_second(self, state) -> float | None:
            """Real tokens of every session over their time (the trainer's state carries the
            earlier sessions' tokens as this clock carries their seconds)."""
            return state.num_input_tokens_seen / self.total_seconds if self.total_seconds > 0 else None

        def state(self) -> dict:
            return {"args": {}, "attributes": {"seconds": self.total_seconds}}

    return WallClock()


# --- checkpoints belong to the inputs that made them ----------------------------------------------

INPUTS_FILE = "inputs.json"  # beside the checkpoints: what they were trained from
# Settings that decide only what is logged or saved, not the weights: a run resumed with another
# value of these is still the same run.
NOT_IN_THE_WEIGHTS = ("report_to", "logging_steps", "eval_steps", "save_steps")


def training_inputs(config: Config, spec: RunSpec, train_file: Path, dev_file: Path) -> dict:
    """Everything the adapter's weights depend on: the resolved settings (evaluation's aside),
    the run's cell and seed, and the digests of its train and dev splits."""
    settings = config.to_dict()
    settings.pop("eval")
    for key in NOT_IN_THE_WEIGHTS:
        settings["train"].pop(key)
    return {"run": {"method": spec.method, "size": spec.size, "examples": spec.examples, "seed": spec.seed},
            "settings": settings,
            "data": {path.name: sha256_file(path) for path in (train_file, dev_file)}}


def trained_on(out: Path, inputs: dict) -> bool:
    """The run folder holds a finished training (train.done, the adapter) of exactly these inputs."""
    finished = (out / DONE_MARKER).is_file() and all((out / "adapter" / name).is_file() for name in ADAPTER_FILES)
    return finished and readable_run_files(out, ("config.json",)).get("config.json", {}).get("inputs") == inputs


def keep_matching_checkpoints(folder: Path, inputs: dict, run: str) -> None:
    """Delete checkpoints made from other inputs (saying so), so that a changed run trains afresh
    instead of "resuming" from another run's weights; record the inputs for the next session."""
    recorded = folder / INPUTS_FILE
    if folder.is_dir() and any(folder.glob("checkpoint-*")):
        before = read_json(recorded) if recorded.is_file() else None
        if before == inputs:
            return
        changed = sorted(key for key in inputs if before is None or before.get(key) != inputs[key])
        print(f"train: {run}: discarding {shown(folder)}, made from other inputs "
              f"({', '.join(changed)} changed); training from the start")
        shutil.rmtree(folder)
    write_json(recorded, inputs)


def last_complete_checkpoint(folder: Path) -> Path | None:
    """The newest checkpoint that has trainer_state.json, which the Trainer writes last."""
    complete = [p for p in folder.glob("checkpoint-*") if (p / "trainer_state.json").is_file()]
    return max(complete, key=lambda p: int(p.name.split("-")[1]), default=None)


def resumed_seconds(checkpoint: Path | None) -> float:
    if checkpoint is None:
        return 0.0
    callbacks = read_json(checkpoint / "trainer_state.json").get("stateful_callbacks", {})
    return float(callbacks.get("WallClock", {}).get("attributes", {}).get("seconds", 0.0))


# --- the trainer ---------------------------------------------------------------------------------


def sft_config(config: Config, spec: RunSpec, batch: BatchPlan, dtype, out: Path, **overrides):
    """The study's SFTConfig; `overrides` replace single settings (bench-gpu: fixed steps, no evaluation)."""
    import torch
    from trl import SFTConfig

    train = config.train
    layout = batching(config)
    settings = dict(
        output_dir=str(out / "checkpoints"),
        seed=spec.seed,
        num_train_epochs=train.epochs,
        per_device_train_batch_size=batch.per_device,
        per_device_eval_batch_size=batch.per_device,
        gradient_accumulation_steps=batch.accumulation,
        learning_rate=train.learning_rate,
        lr_scheduler_type=train.lr_scheduler,
        warmup_steps=train.warmup_ratio,  # a float below 1 is a share of the total steps
        weight_decay=train.weight_decay,
        max_grad_norm=train.max_grad_norm,
        # the examples come tokenized and cut to train.max_length (`tokenized`), their loss mask beside
        # them, from which TRL builds the labels: so no length to enforce and no template to render
        max_length=None,
        assistant_only_loss=False,
        padding_free=layout == "padding_free",
        # padded micro-batches of examples of similar length: transformers' LengthGroupedSampler
        # sorts random megabatches of 50 steps by the `length` column (`tokenized`)
        train_sampling_strategy="group_by_length" if layout == "padded" else "random",
        remove_unused_columns=False,  # the collator reads `length` to tell training batches (PaddingMeter)
        pad_to_multiple_of=train.pad_to_multiple_of,
        **checkpointing_settings(gradient_checkpointing(config, batch, dtype)),
        bf16=dtype == torch.bfloat16,
        fp16=dtype == torch.float16,
        use_cpu=not torch.cuda.is_available(),
        eval_strategy="steps",
        eval_steps=train.eval_steps,
        eval_on_start=True,  # the dev loss of the untrained adapter anchors the loss curve
        save_strategy="steps",
        save_steps=train.save_steps,
        save_total_limit=1,
        logging_steps=train.logging_steps,
        logging_first_step=True,
        report_to=train.report_to,
        run_name=spec.name,
        include_num_input_tokens_seen="non_padding",
        ddp_find_unused_parameters=False,
        disable_tqdm=False,
    )
    return SFTConfig(**(settings | overrides))


def checkpointing_argument() -> str:
    """TrainingArguments' name for activation (gradient) checkpointing in the installed transformers:
    activation_checkpointing from 5.23, which keeps gradient_checkpointing as a deprecated alias;
    gradient_checkpointing alone before (5.17 to 5.22, lib.versions.OLDEST_SUPPORTED)."""
    from dataclasses import fields

    from transformers import TrainingArguments

    names = {field.name for field in fields(TrainingArguments)}
    return "activation_checkpointing" if "activation_checkpointing" in names else "gradient_checkpointing"


def checkpointing_settings(enabled: bool) -> dict:
    """SFTConfig's checkpointing settings under that name; non-reentrant checkpointing, which lets
    gradients reach the adapters while the frozen base's inputs need none."""
    name = checkpointing_argument()
    return {name: enabled, f"{name}_kwargs": {"use_reentrant": False}}


def lora_config(config: Config):
    from peft import LoraConfig

    lora = config.lora
    return LoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=lora.target_modules,
        task_type="CAUSAL_LM",
    )


def build_trainer(config: Config, spec: RunSpec, data_dir: Path, out: Path, batch: BatchPlan, **overrides):
    """The study's SFTTrainer for one run; `overrides` replace single SFTConfig settings (the
    benchmarks turn off evaluation and saving, which they do not time)."""
    from lib.model import compute_dtype, load_model, load_tokenizer

    # the splits first: a missing or malformed one fails before a model is loaded
    train_file, dev_file = split_path(data_dir, f"train-{spec.size}.jsonl"), split_path(data_dir, "dev.jsonl")
    train_conversations, dev_conversations = read_conversations(train_file), read_conversations(dev_file)
    dtype = compute_dtype(config.model.dtype)
    tokenizer = load_tokenizer(config)
    train_dataset = tokenized(train_conversations, tokenizer, config.train.max_length, train_file.name)
    eval_dataset = tokenized(dev_conversations, tokenizer, config.train.max_length, dev_file.name, lengths=False)
    trainer = lora_trainer(config, load_model(config, dtype), sft_config(config, spec, batch, dtype, out, **overrides),
                           train_dataset=train_dataset, eval_dataset=eval_dataset, processing_class=tokenizer)
    return trainer, dtype


def lora_trainer(config: Config, model, args, **inputs):
    """SFTTrainer attaching the configured LoRA adapters to a loaded `model`, with the two
    work-arounds below; `inputs` are the datasets and the processing class."""
    from trl import SFTTrainer

    keep_4bit_layers_trainable_after_eval(model)
    try:
        trainer = SFTTrainer(model=model, args=args, peft_config=lora_config(config), **inputs)
    except ValueError as err:
        if not matches_no_module(err):
            raise
        raise UserError(f"lora.target_modules={config.lora.target_modules!r} matches no module of "
                        f"{config.model.name_or_path}; its linear layers are {', '.join(linear_layer_names(model))} "
                        "(or all-linear: every one but the output layer)") from None
    keep_adapters_in_fp32(trainer.model)
    trainer.padding_meter = trainer.data_collator = PaddingMeter(trainer.data_collator)
    return trainer


def matches_no_module(err: ValueError) -> bool:
    """PEFT's error for target modules that match nothing (a ValueError; a class of its own in newer PEFT)."""
    import peft

    no_match = getattr(peft, "NoMatchingPeftModuleError", None)
    return isinstance(err, no_match) if no_match else "not found in the base model" in str(err)


def linear_layer_names(model) -> list[str]:
    """The names LoRA can target: of the model's linear layers (4-bit ones included), q_proj, ..."""
    import torch

    return sorted({name.rsplit(".", 1)[-1] for name, module in model.named_modules()
                   if isinstance(module, torch.nn.Linear)})


class PaddingMeter:
    """The trainer's collator, counting the share of the token positions of the training
    micro-batches that are padding (computed for nothing). Training examples carry a `length` for
    the length-grouping sampler; the dev set's do not, so evaluation batches are not counted."""

    def __init__(self, collate):
        self.collate = collate
        self.tokens = self.positions = 0

    def __call__(self, examples):
        batch = self.collate(examples)
        if "length" in examples[0]:
            self.tokens += sum(example["length"] for example in examples)
            self.positions += batch["input_ids"].numel()
        return batch

    @property
    def fraction(self) -> float | None:
        return 1 - self.tokens / self.positions if self.positions else None


def keep_adapters_in_fp32(model) -> None:
    """Trainable parameters, and so their gradients and AdamW's moments, in fp32 for LoRA and
    QLoRA alike, on every device. PEFT keeps plain LoRA's adapters in fp32, but TRL casts a 4-bit
    model's adapters to bf16, where late updates are lost: at a learning rate of 2e-5 near the end
    of the cosine schedule, a weight of 0.02 moves by 2e-5 x ~1 = 2e-5, below half of bf16's spacing
    at 0.02 (2^-6 x 2^-7 = 1.2e-4), so 0.02 - 2e-5 rounds back to 0.02. "QLoRA - LoRA" would then
    mix the 4-bit base with lost updates. The matrix products still run in the compute dtype (the
    Trainer's autocast)."""
    for parameter in model.parameters():
        if parameter.requires_grad:
            parameter.data = parameter.data.float()


def adapter_dtype(model) -> str:
    """The dtype of the trainable parameters (one for all of them), as configs spell dtypes."""
    dtypes = {dtype_name(p.dtype) for p in model.parameters() if p.requires_grad}
    return dtypes.pop() if len(dtypes) == 1 else "/".join(sorted(dtypes))


def keep_4bit_layers_trainable_after_eval(model) -> None:
    """On CPUs with AVX512-BF16, bitsandbytes repacks 4-bit weights for faster inference the first
    time a layer runs in eval mode, and does not unpack them when training resumes; the next
    training step then fails in the biased q/k/v projections ("a view of a leaf Variable that
    requires grad is being used in an in-place operation"). The dev-loss evaluations inside
    training would trigger it, so training keeps the training layout throughout."""
    for module in model.modules():
        if hasattr(module, "support_avx512bf16_for_cpu"):
            module.support_avx512bf16_for_cpu = False


# --- accounting ----------------------------------------------------------------------------------


def train_metrics(trainer, spec: RunSpec, clock, batch: BatchPlan, dtype, record: dict) -> dict:
    import torch

    from lib.hardware import MFU_FORMULA, mfu, peak_memory

    state = trainer.state
    model = trainer.model
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(_stored_parameter_count(p) for p in model.parameters())
    tokens_per_s = clock.tokens_per_second(state)
    dev_losses = [entry["eval_loss"] for entry in state.log_history if "eval_loss" in entry]
    train_losses = [entry["loss"] for entry in state.log_history if "loss" in entry]
    dtype_text = dtype_name(dtype)
    device_name = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    return {
        "run": spec.name,
        "examples": spec.examples,
        "epochs": state.num_train_epochs,
        "steps": state.global_step,  # optimizer steps
        "effective_batch_size": batch.effective,
        "examples_per_step": batch.effective,
        "train_tokens": state.num_input_tokens_seen,  # real tokens, padding excluded, all processes
        "tokens_per_step": state.num_input_tokens_seen / state.global_step if state.global_step else None,
        "wall_time_s": clock.total_seconds,
        "tokens_per_s": tokens_per_s,
        **peak_memory(),
        "trainable_params": trainable,
        "total_params": total,
        "final_train_loss": train_losses[-1] if train_losses else None,
        "best_dev_loss": min(dev_losses) if dev_losses else None,
        "device": device_name,
        "dtype": dtype_text,
        "adapter_dtype": adapter_dtype(model),
        "attention": model.config._attn_implementation,  # the kernel it ran with (model.attn_implementation: auto)
        "gradient_checkpointing": getattr(trainer.args, checkpointing_argument()),  # as the setting resolved
        # of this process's training micro-batches since the run (re)started: positions that were padding
        "padding_fraction": trainer.padding_meter.fraction,
        "processes": batch.processes,
        "mfu": mfu(tokens_per_s, total, trainable, batch.processes, device_name, dtype_text) if tokens_per_s else None,
        "mfu_formula": MFU_FORMULA,
        "log_history": state.log_history,
        "provenance": record,
    }


def _stored_parameter_count(parameter) -> int:
    """Parameters of the model, counting a 4-bit packed tensor (two weights per byte) as its weights."""
    quant_state = getattr(parameter, "quant_state", None)
    return math.prod(quant_state.shape) if quant_state is not None else parameter.numel()


def resolved_config(config: Config, spec: RunSpec, batch: BatchPlan, dtype) -> dict:
    return {
        "run": asdict(spec),
        **config.to_dict(),
        "resolved": {
            "dtype": dtype_name(dtype),
            "processes": batch.processes,
            "gradient_accumulation_steps": batch.accumulation,
            "batching": batching(config),
            "model_origin": model_origin(config.model.name_or_path),  # the hub commit `make model` fetched
        },
    }


# --- the run ---------------------------------------------------------------------------------------


def train(config: Config, spec: RunSpec, data_dir: Path, out: Path) -> dict | None:
    """Train (or resume) one run; returns its metrics on the main process, None elsewhere and
    where the run is already trained on these inputs."""
    from lib.model import process_state

    check_hardware(config)  # the first thing a user on the wrong machine must hear
    inputs = training_inputs(config, spec, split_path(data_dir, f"train-{spec.size}.jsonl"),
                             split_path(data_dir, "dev.jsonl"))
    if trained_on(out, inputs):
        if int(os.environ.get("RANK", "0")) == 0:
            print(f"train: {spec.name} is already trained on these data and settings ({shown(out)}); nothing to redo")
        return None
    state = process_state()
    batch = plan_batches(config.train.effective_batch_size, config.train.per_device_batch_size, state.num_processes)
    os.environ.setdefault("TENSORBOARD_LOGGING_DIR", str(out / "tensorboard"))
    with state.main_process_first():  # the others wait, then find only checkpoints of these inputs
        if state.is_main_process:
            keep_matching_checkpoints(out / "checkpoints", inputs, spec.name)
    trainer, dtype = build_trainer(config, spec, data_dir, out, batch)
    checkpoint = last_complete_checkpoint(out / "checkpoints")
    clock = make_wall_clock(resumed_seconds(checkpoint))
    trainer.add_callback(clock)
    if checkpoint is not None and trainer.is_world_process_zero():
        print(f"train: resuming {spec.name} from {shown(checkpoint)}")
    trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)

    if not trainer.is_world_process_zero():
        return None
    config_dict = resolved_config(config, spec, batch, dtype)
    record = provenance(config_dict, spec.seed)
    trainer.save_model(str(out / "adapter"))
    write_json(out / "config.json", {**config_dict, "inputs": inputs, "adapter_sha256": adapter_digest(out),
                                     "provenance": {**record, "config": None}})
    metrics = train_metrics(trainer, spec, clock, batch, dtype, record)
    write_json(out / "train_metrics.json", metrics)
    with atomic_write(out / DONE_MARKER) as handle:
        handle.write(f"{metrics['steps']} steps\n")
    return metrics


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from lib.arguments import add_config_arguments

    add_config_arguments(parser)
    parser.add_argument("--size", required=True, help="train subset label, e.g. 10k (data/.../train-10k.jsonl)")
    parser.add_argument("--seed", type=int, required=True, help="training seed (data order, adapter init, dropout)")
    parser.add_argument("--data", type=Path, required=True, help="folder of the processed splits")
    parser.add_argument("--out", type=Path, required=True, help="the run folder, results/<profile>/runs/<run>")
    parser.add_argument("--check-layout", type=int, metavar="PROCESSES",
                        help="only check that the effective batch splits over PROCESSES processes, and exit "
                             "(the Makefile asks before starting a launcher, "
                             "so a bad NPROC is one line, not one per process)")


def run(args: argparse.Namespace) -> None:
    from lib.arguments import config_from_args

    if args.method is None:
        raise UserError("train needs --method (lora or qlora)")
    config = config_from_args(args)
    if args.check_layout is not None:
        batch = plan_batches(config.train.effective_batch_size, config.train.per_device_batch_size, args.check_layout)
        print(f"train: {batch.effective} examples per step = {batch.per_device} per device x "
              f"{batch.accumulation} accumulated x {batch.processes} processes")
        return
    if args.own_process:
        import_bitsandbytes_only_for_4bit(config)
    spec = RunSpec(name=args.out.name, profile=args.profile, method=args.method, size=args.size,
                   examples=parse_count(args.size), seed=args.seed)
    # Under torchrun or accelerate every process runs this; the first holds the run's lock (its
    # launcher stops the others if it cannot).
    first_process = int(os.environ.get("RANK", "0")) == 0
    with exclusive(args.out / RUN_LOCK, f"training {spec.name}") if first_process else contextlib.nullcontext():
        metrics = train(config, spec, args.data, args.out)
    if metrics is not None:
        print(f"train: {spec.name} done: {metrics['steps']} steps, {metrics['train_tokens']:,} tokens, "
              f"{metrics['wall_time_s']:.0f} s, best dev loss {metrics['best_dev_loss']:.4f}")
