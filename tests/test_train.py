"""Training: the loss mask, learning, saving and reloading, resuming, and two processes.

Everything runs the real code path (lib.train with TRL's SFTTrainer) on the tiny model.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from transformers import AutoTokenizer

from builders import REPO_ROOT, demo_overrides
from lib.config import load_config, parse_count
from lib.errors import UserError
from lib.io import read_json, sha256_file
from lib.prompts import assistant_tokens, loss_template
from lib.train import (
    RunSpec,
    build_trainer,
    keep_4bit_layers_trainable_after_eval,
    plan_batches,
    read_conversations,
    tokenized,
    train,
)

pytestmark = pytest.mark.slow

EXAMPLE = [
    {"role": "system", "content": "你是医学助手。"},
    {"role": "user", "content": "头痛怎么办？"},
    {"role": "assistant", "content": "建议休息，必要时就医。"},
    {"role": "user", "content": "还需要检查吗？"},
    {"role": "assistant", "content": "反复发作应做头颅MRI。"},
]


def config_for(tiny_model: Path, method: str = "lora", *extra: str):
    return load_config("demo", method, overrides=demo_overrides(tiny_model, *extra))


def spec_for(size: str = "64", method: str = "lora", seed: int = 42) -> RunSpec:
    return RunSpec(name=f"{method}-{size}", profile="demo", method=method, size=size, examples=parse_count(size),
                   seed=seed)


def masked_text(tokenizer, ids, mask) -> str:
    return tokenizer.decode([token for token, keep in zip(ids, mask) if keep])


@pytest.fixture(params=["tiny", "qwen2.5"])
def tokenizer_with_template(request, tiny_model):
    """The tiny model's tokenizer with its own template (it has generation markers), and with the
    stock Qwen2.5-Instruct template, which has none and for which TRL swaps in its training copy."""
    from trl.chat_template_utils import qwen2_5_chat_template

    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    if request.param == "qwen2.5":
        tokenizer.chat_template = qwen2_5_chat_template
    return tokenizer


def test_loss_mask_is_the_assistant_turns_with_their_end_of_turn(tokenizer_with_template, tiny_model, tmp_path):
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    tokenizer = tokenizer_with_template
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model)
    trainer = SFTTrainer(model=model, processing_class=tokenizer,
                         train_dataset=Dataset.from_list([{"messages": EXAMPLE}]),
                         args=SFTConfig(output_dir=str(tmp_path), assistant_only_loss=True, report_to="none",
                                        use_cpu=True, bf16=False, activation_checkpointing=False))
    row = trainer.train_dataset[0]
    trainer_mask = [int(label != -100) for label in row["labels"]]
    trained = masked_text(tokenizer, row["input_ids"], trainer_mask)
    # both answers, each with the <|im_end|> that ends the turn (the token the model must learn to
    # emit to stop), and nothing of the system prompt or the questions
    assert trained == "\n建议休息，必要时就医。<|im_end|>\n\n反复发作应做头颅MRI。<|im_end|>\n"

    # the test loss uses the same tokens and the same mask
    ids, mask = assistant_tokens(tokenizer, EXAMPLE, None, loss_template(tokenizer))
    assert ids == list(row["input_ids"]) and mask == trainer_mask


def test_batch_plan_keeps_the_effective_batch_on_every_process_count_that_divides_it():
    assert plan_batches(16, 8, 1).accumulation == 2
    assert plan_batches(16, 8, 2).accumulation == 1
    assert plan_batches(16, 4, 2).effective == 16
    for processes in (1, 2, 4, 8, 16):  # the README's NPROC=4, the 2-node x 8-GPU sbatch example
        layout = plan_batches(16, 8, processes)
        assert layout.effective == 16 and layout.per_device <= 8
    assert (plan_batches(16, 8, 4).per_device, plan_batches(16, 8, 4).accumulation) == (4, 1)
    assert (plan_batches(16, 6, 1).per_device, plan_batches(16, 6, 1).accumulation) == (4, 4)  # 6 does not divide 16
    assert (plan_batches(8, 8, 4).per_device, plan_batches(8, 8, 4).accumulation) == (2, 1)  # the demo on 4 processes
    with pytest.raises(UserError, match=r"effective_batch_size=16 examples per step cannot be split evenly over 3 "
                                        r"processes; launch 1, 2, 4, 8, 16 processes"):
        plan_batches(16, 8, 3)


def summed_loss(model, input_ids, labels, **extra) -> tuple[float, int]:
    """The summed next-token loss over the labelled tokens of one forward pass, and their count."""
    logits = model(input_ids=input_ids, **extra).logits[:, :-1].float()
    targets = labels[:, 1:]
    losses = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1),
                                               ignore_index=-100, reduction="sum")
    return losses.item(), int((targets != -100).sum())


def single_examples(batch) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(input ids, labels) of each example of a micro-batch: the rows of a padded one, the spans
    between restarts of the position ids of a padding-free one."""
    if "position_ids" not in batch:
        return [(ids[mask.bool()], labels[mask.bool()])
                for ids, labels, mask in zip(batch["input_ids"], batch["labels"], batch["attention_mask"])]
    starts = (batch["position_ids"][0] == 0).nonzero().flatten().tolist() + [batch["input_ids"].shape[1]]
    return [(batch["input_ids"][0, a:b], batch["labels"][0, a:b]) for a, b in zip(starts, starts[1:])]


@pytest.mark.parametrize("batching", ["padded", "padding_free"])
def test_a_micro_batch_has_the_loss_of_its_examples_one_by_one(batching, tiny_model, demo_data, tmp_path):
    config = config_for(tiny_model, "lora", f"train.batching={batching}")
    trainer, _ = build_trainer(config, spec_for("64"), demo_data, tmp_path, plan_batches(8, 8, 1))
    batch = next(iter(trainer.get_train_dataloader()))
    model = trainer.model.eval()  # no dropout
    with torch.no_grad():
        together = summed_loss(model, batch["input_ids"], batch["labels"],
                               **{key: batch[key] for key in ("attention_mask", "position_ids") if key in batch})
        alone = [summed_loss(model, ids[None], labels[None]) for ids, labels in single_examples(batch)]
    assert len(alone) == 8 and batch["input_ids"].shape[0] == (1 if batching == "padding_free" else 8)
    assert together[1] == sum(count for _, count in alone)  # no label crosses from one example into the next
    assert together[0] / together[1] == pytest.approx(sum(loss for loss, _ in alone) / together[1], abs=1e-5)


def test_sdpa_gets_padded_micro_batches_of_examples_grouped_by_length(tiny_model, demo_data, tmp_path):
    from transformers.trainer_pt_utils import LengthGroupedSampler

    config = config_for(tiny_model)  # batching auto, attention auto: sdpa on a CPU
    trainer, _ = build_trainer(config, spec_for("64"), demo_data, tmp_path, plan_batches(8, 8, 1))
    assert trainer.model.config._attn_implementation == "sdpa"
    assert isinstance(trainer._get_train_sampler(), LengthGroupedSampler)
    batches = list(trainer.get_train_dataloader())
    assert all(batch["input_ids"].shape[0] == 8 and "position_ids" not in batch for batch in batches)
    # grouped by length, the micro-batches are mostly tokens; the meter counts them as they are built
    padding = 1 - sum(int(b["attention_mask"].sum()) for b in batches) / sum(b["input_ids"].numel() for b in batches)
    assert trainer.padding_meter.fraction == pytest.approx(padding) and padding < 0.2


def test_checkpointing_auto_follows_the_memory_plan(tiny_model, monkeypatch):
    import psutil

    from lib import train as training

    config = config_for(tiny_model, "lora", "train.gradient_checkpointing=auto")
    batch = plan_batches(8, 8, 1)
    # the tiny model's micro-batch takes some MiB: plenty of memory turns checkpointing off, a few MiB on
    for available_gb, expected in ((64.0, False), (0.001, True)):
        memory = type("Memory", (), {"available": available_gb * 2**30})
        monkeypatch.setattr(psutil, "virtual_memory", lambda memory=memory: memory)
        monkeypatch.setattr("lib.hardware.peak_rss_gb", lambda: 0.0)
        assert training.gradient_checkpointing(config, batch, torch.float32) is expected
    assert training.gradient_checkpointing(config_for(tiny_model, "lora", "train.gradient_checkpointing=true"),
                                           batch, torch.float32) is True


def test_paper_profile_refuses_a_machine_without_gpu(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(UserError, match="needs a GPU.*PROFILE=demo"):
        train(load_config("paper", "qlora"), spec_for(), tmp_path, tmp_path / "run")


def test_missing_split_names_make_data(tiny_model, demo_data, tmp_path):
    with pytest.raises(UserError, match=r"train-9k.jsonl: no such split \(train sizes there: 128, 64\).*make data"):
        train(config_for(tiny_model), spec_for("9k"), demo_data, tmp_path / "run")


def test_a_short_run_learns(tiny_model, demo_data, tmp_path):
    out = tmp_path / "lora-128"
    metrics = train(config_for(tiny_model, "lora", "train.learning_rate=5e-3"), spec_for("128"), demo_data, out)

    for name in ("adapter/adapter_model.safetensors", "config.json", "train_metrics.json", "train.done"):
        assert (out / name).is_file(), name
    dev_losses = [entry["eval_loss"] for entry in metrics["log_history"] if "eval_loss" in entry]
    assert dev_losses[0] - metrics["best_dev_loss"] > 0.5  # the untrained adapter's dev loss comes first
    assert metrics["steps"] == 16  # 128 examples / 8 per step, 1 epoch
    assert metrics["train_tokens"] > 128 * 20  # real tokens, no padding
    assert metrics["trainable_params"] < metrics["total_params"] / 5
    assert metrics["examples_per_step"] == 8 and metrics["tokens_per_step"] == metrics["train_tokens"] / 16
    assert metrics["attention"] == "sdpa" and 0 <= metrics["padding_fraction"] < 0.2
    assert metrics["gradient_checkpointing"] is False  # the demo profile's setting
    config = read_json(out / "config.json")
    assert config["resolved"]["gradient_accumulation_steps"] == 1
    # what the weights were made from, and the weights' digest: what the summary's staleness compares
    splits = ("train-128.jsonl", "dev.jsonl")
    assert config["inputs"]["data"] == {name: sha256_file(demo_data / name) for name in splits}
    assert config["adapter_sha256"] == sha256_file(out / "adapter" / "adapter_model.safetensors")
    # the same inputs again: nothing is trained, nothing is written
    stamps = {path: path.stat().st_mtime_ns for path in out.rglob("*") if path.is_file()}
    assert train(config_for(tiny_model, "lora", "train.learning_rate=5e-3"), spec_for("128"), demo_data, out) is None
    assert {path: path.stat().st_mtime_ns for path in out.rglob("*") if path.is_file()} == stamps


def test_target_modules_that_match_nothing_are_one_line_naming_the_modules_there(tiny_model, demo_data, tmp_path):
    command = run_train_process(tiny_model, demo_data, tmp_path / "lora-64", sys.executable,
                                extra=["lora.target_modules=[qproj,v_proj_x]"])
    finished = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    assert finished.returncode == 2 and "Traceback" not in finished.stderr, finished.stderr[-2000:]
    assert finished.stderr.splitlines()[-1] == (
        f"error: lora.target_modules=['qproj', 'v_proj_x'] matches no module of {tiny_model}; its linear layers are "
        "down_proj, gate_proj, k_proj, lm_head, o_proj, q_proj, up_proj, v_proj (or all-linear: every one but the "
        "output layer)")


@pytest.mark.parametrize("method", ["lora", "qlora"])
def test_the_saved_adapter_reloads_to_the_trained_logits(method, tiny_model, demo_data, tmp_path):
    from lib.model import load_for_inference

    config = config_for(tiny_model, method, "train.learning_rate=5e-3", "train.epochs=0.5")
    trainer, _ = build_trainer(config, spec_for("64", method), demo_data, tmp_path, plan_batches(8, 8, 1))
    trainer.train()
    trainer.save_model(str(tmp_path / "adapter"))

    tokenizer, reloaded = load_for_inference(config, tmp_path / "adapter")
    # the same 4-bit kernels as in training (bitsandbytes' bf16 CPU inference layout differs by ~0.05)
    keep_4bit_layers_trainable_after_eval(reloaded)
    inputs = tokenizer("头痛怎么办", return_tensors="pt")
    with torch.inference_mode():
        trained = trainer.model.eval()(**inputs).logits
        again = reloaded(**inputs).logits
    assert torch.allclose(trained, again, atol=1e-4)
    with reloaded.disable_adapter(), torch.inference_mode():
        assert not torch.allclose(reloaded(**inputs).logits, again, atol=1e-3)  # the adapter does something


def run_train_process(tiny_model, demo_data, out, *launcher, extra=(), method="lora", size="128"):
    command = [*launcher, "-m", "lib", "train", "--profile", "demo", "--method", method, "--size", size,
               "--seed", "42", "--data", str(demo_data), "--out", str(out)]
    for override in demo_overrides(tiny_model, "train.learning_rate=5e-3", *extra):
        command += ["--set", override]
    return command


# `python -m lib <arguments>` as a process of its own, saying at exit which libraries it imported
RUN_AND_REPORT_IMPORTS = ("import atexit, runpy, sys\n"
                          "imported = lambda name: sys.modules.get(name) is not None\n"
                          "atexit.register(lambda: print('imported:', [n for n in ('torch', 'bitsandbytes') "
                          "if imported(n)]))\n"
                          "runpy.run_module('lib', run_name='__main__', alter_sys=True)")


def run_reporting_imports(*arguments: str) -> tuple[str, str]:
    """(the line that names the libraries imported, stderr) of `python -m lib <arguments>`."""
    done = subprocess.run([sys.executable, "-c", RUN_AND_REPORT_IMPORTS, *arguments], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.splitlines()[-1], done.stderr


def test_only_a_4bit_process_imports_bitsandbytes(tiny_model, demo_data, tmp_path):
    # peft imports bitsandbytes wherever it is installed, and it costs seconds of CPU in every process
    short = ["train.epochs=0.125"]  # 2 steps
    lora_training = run_train_process(tiny_model, demo_data, tmp_path / "lora-128", extra=short)[2:]  # after -m lib
    assert run_reporting_imports(*lora_training)[0] == "imported: ['torch']"
    assert (tmp_path / "lora-128" / "train.done").is_file()
    assert run_reporting_imports("evaluate", "--help")[0] == "imported: []"

    qlora_training = run_train_process(tiny_model, demo_data, tmp_path / "qlora-128", extra=short, method="qlora")[2:]
    imported, stderr = run_reporting_imports(*qlora_training)
    assert imported == "imported: ['torch', 'bitsandbytes']" and (tmp_path / "qlora-128" / "train.done").is_file()
    assert "kernels-community" not in stderr  # an optional CPU kernel bitsandbytes would fetch from the hub


def test_resume_after_a_kill_finishes_at_the_same_step(tiny_model, demo_data, tmp_path):
    out = tmp_path / "lora-128"
    command = run_train_process(tiny_model, demo_data, out, sys.executable)
    process = subprocess.Popen(command, cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    checkpoint = out / "checkpoints" / "checkpoint-8" / "trainer_state.json"
    deadline = time.time() + 180
    while not checkpoint.exists() and process.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    process.kill()  # as a crash or an out-of-memory kill would
    process.wait()
    assert checkpoint.exists(), "the run never reached its step-8 checkpoint"
    assert not (out / "train.done").exists()

    resumed = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resuming lora-128" in resumed.stdout
    metrics = read_json(out / "train_metrics.json")
    assert metrics["steps"] == 16  # as an uninterrupted run (test above)
    logged_steps = [entry["step"] for entry in metrics["log_history"] if "loss" in entry]
    assert logged_steps == sorted(set(logged_steps))  # no step trained twice in the history


def test_two_cpu_processes_take_the_steps_and_examples_of_one(tiny_model, demo_data, tmp_path):
    # the demo's 8 examples a step over 2 processes: 4 each, where 8 per device x 2 used to refuse to start
    out = tmp_path / "lora-64"
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29533"]
    command = run_train_process(tiny_model, demo_data, out, *torchrun, size="64")
    finished = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
                              env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert finished.returncode == 0, finished.stderr[-3000:]
    metrics = read_json(out / "train_metrics.json")
    assert metrics["processes"] == 2 and metrics["examples_per_step"] == 8
    assert metrics["steps"] == 8  # 64 examples / 8 per step, as on one process
    assert read_json(out / "config.json")["resolved"]["gradient_accumulation_steps"] == 1
    # every example of the split was seen once, over all processes: its tokens, no padding, none twice
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    max_length = read_json(out / "config.json")["train"]["max_length"]
    split = tokenized(read_conversations(demo_data / "train-64.jsonl"), tokenizer, max_length, "train-64.jsonl")
    assert metrics["train_tokens"] == sum(split["length"])
    assert (out / "adapter" / "adapter_model.safetensors").is_file()
    assert len(list(out.glob("adapter*"))) == 1
