"""gpu-check: the CPU run of the demo profile writes both files with every check's result, the
targets and a last line that says nothing was measured on a GPU; a check that fails or cannot run
is recorded and the others go on; the preflight names what is missing or too old before any model
is built; one time budget skips what would not fit; a run killed midway leaves a valid
gpu-check.json of the checks it finished.

On a CPU the checks that need CUDA or vLLM are skipped with the reason; on a GPU machine the same
command runs them (README, "GPU check"). tests/test_wheelhouse.py runs it from a venv built only
from the offline bundle, with the Qwen2.5 stand-in as its model.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import replace

import pytest

import lib.config
from builders import REPO_ROOT, hide_packages
from lib.architecture import QWEN2_5_3B, architecture_of, parameter_counts
from lib.bench import gpu_check
from lib.bench.gpu import Lengths, Variant
from lib.config import load_config, load_grid

CPU_CHECKS = ["environment", "padding-free loss, sdpa float32", "padding-free loss, flash_attention_2 bfloat16",
              "adapters in fp32 (PEFT + lib.train)", "model for the checks", "training speed lora, checkpointing on",
              "training speed lora, checkpointing off", "training speed qlora, checkpointing on",
              "training speed qlora, checkpointing off", "adapters in fp32 (speed checks' training)",
              "padding fraction (paper profile's training batches)", "generation speed (transformers)",
              "evaluation time", "greedy answers: transformers = vLLM"]


def gpu_check_arguments(out, model, *extra) -> list[str]:
    return ["gpu-check", "--profile", "demo", "--out", str(out), "--set", f"model.name_or_path={model}",
            "--prompts", "2", "--new-tokens", "4", "--steps", "1", "--warmup", "1",
            "--set", "eval.max_new_tokens=8", *map(str, extra)]


def test_demo_run_on_a_cpu_writes_every_check_the_targets_and_says_no_gpu_measured(tmp_path, monkeypatch, capsys):
    from lib.cli import main

    # the speed checks are bench-gpu's measurements (tests/bench/test_gpu.py): estimated beyond the
    # budget here, so that the budget skips them and says why
    monkeypatch.setitem(gpu_check.CPU_ESTIMATES_S, "training speed 16-bit", 10**6)
    monkeypatch.setitem(gpu_check.CPU_ESTIMATES_S, "training speed 4-bit", 10**6)
    out = tmp_path / "bench"
    main(gpu_check_arguments(out, tmp_path / "not-on-disk"))
    printed = capsys.readouterr().out.splitlines()
    result = json.loads((out / "gpu-check.json").read_text())
    table = (out / "gpu-check.md").read_text()
    status = {c["name"]: c["status"] for c in result["checks"]}

    assert [c["name"] for c in result["checks"]] == CPU_CHECKS and result["complete"] is True
    # the preflight first: every version, then the one line of what cannot be used, then the estimates
    assert printed[0].startswith("gpu-check: Python ") and "transformers 5." in printed[0] and "trl 1." in printed[0]
    assert printed[1] == "gpu-check: every package it needs is here, at a supported version"
    assert printed[2].startswith("gpu-check: estimated time of each stage (measured on a 2-core CPU")
    assert "training speed lora 2 x 1000000 s" in printed[2]
    assert status["environment"] == "ok" and result["machine"]["gpu"] is None and result["gpu"] is None
    assert result["machine"]["packages"]["trl"] and result["machine"]["versions"]["transformers"]
    padding_free = next(c for c in result["checks"] if c["name"] == "padding-free loss, sdpa float32")
    assert padding_free["status"] == "ok" and padding_free["details"]["difference"] < 1e-5
    assert status["padding-free loss, flash_attention_2 bfloat16"] == "skipped: flash attention needs a CUDA GPU"
    assert status["adapters in fp32 (PEFT + lib.train)"] == "ok"
    # no model on disk: the Qwen2.5 stand-in at the tests' size, said to have random weights
    model = next(c for c in result["checks"] if c["name"] == "model for the checks")
    assert model["status"] == "ok" and model["details"]["random_weights"] is True
    assert any("is not on disk (make model): its stand-in is built at 2 layers" in line and "RANDOM weights" in line
               for line in printed)
    assert "random weights**: speed and memory only" in table
    for method in ("lora", "qlora"):
        for checkpointing in ("on", "off"):
            assert status[f"training speed {method}, checkpointing {checkpointing}"].startswith(
                "skipped: would not fit the time budget: about ")
    assert status["adapters in fp32 (speed checks' training)"] == "skipped: no speed check ran"
    padding = next(c for c in result["checks"] if c["name"].startswith("padding fraction"))
    assert padding["status"] == "ok" and padding["details"]["fraction"] < 0.05
    generation = next(c for c in result["checks"] if c["name"] == "generation speed (transformers)")
    assert generation["status"] == "ok"
    assert all(speed["tokens_per_s"] > 0 for speed in generation["details"]["batch_sizes"].values())
    evaluation = next(c for c in result["checks"] if c["name"] == "evaluation time")["details"]
    # the demo's 100 test items in batches of its eval.batch_size (50, on a CPU): one batch timed
    assert (evaluation["items"], evaluation["batch_size"], evaluation["batches"]) == (100, 50, 2)
    assert evaluation["minutes"] == pytest.approx(2 * evaluation["seconds_per_batch"] / 60)
    assert evaluation["formula"].startswith("minutes = ceil(100 items / batch 50) = 2 batches x ")
    assert status["greedy answers: transformers = vLLM"] == "skipped: vllm not installed"
    assert result["failed"] == 0

    targets = {row["target"]: row for row in result["targets"]}
    assert targets["LoRA MFU"]["met"] is None and targets["LoRA MFU"]["note"] == "no GPU"
    assert targets["padding of the training batches"]["met"] is True
    assert targets["minutes to evaluate the test set"]["met"] is None  # the 3-minute target is an H100's
    assert "gpu-check: target padding of the training batches <= 5%: " in "\n".join(printed)
    assert "| padding of the training batches | <= 5% |" in table and "| evaluation time | ok |" in table
    # the last line says that nothing was measured on a GPU, not "0 failed"
    assert printed[-1] == ("gpu-check: nothing was measured on a GPU (none here): checks on the CPU 7 ok, "
                           f"0 failed, 7 skipped -> {out / 'gpu-check.md'}")


def test_a_run_killed_midway_leaves_a_valid_json_of_the_checks_it_finished(tmp_path):
    out = tmp_path / "bench"
    run = subprocess.Popen([sys.executable, "-m", "lib", *gpu_check_arguments(out, tmp_path / "not-on-disk")],
                           cwd=REPO_ROOT,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=os.environ.copy())
    written = out / "gpu-check.json"
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and run.poll() is None:
            if written.is_file() and len(json.loads(written.read_text())["checks"]) >= 4:
                break
            time.sleep(0.05)
        assert run.poll() is None, "gpu-check ended before it could be killed"
        run.send_signal(signal.SIGKILL)
    finally:
        run.kill()
        run.wait()
    result = json.loads(written.read_text())  # whole: each rewrite is a new file renamed over the old
    names = [c["name"] for c in result["checks"]]
    assert result["complete"] is False and len(names) >= 4 and names == CPU_CHECKS[:len(names)]
    assert all(c["status"] for c in result["checks"]) and result["preflight"]["line"]
    assert "**Unfinished**" in (out / "gpu-check.md").read_text()


def test_the_preflight_names_what_is_missing_or_too_old_and_how_to_bring_it(monkeypatch, capsys):
    from importlib import metadata

    real_version = metadata.version
    monkeypatch.setattr(metadata, "version", lambda name: "5.10.0" if name == "transformers" else real_version(name))
    hide_packages(monkeypatch, "trl", "datasets")
    checked = gpu_check.preflight()
    versions, line = capsys.readouterr().out.splitlines()
    assert "transformers 5.10.0; trl missing; peft " in versions and "vllm " in versions
    assert line == ("gpu-check: cannot use transformers 5.10.0 is older than 5.17.0, the oldest supported; "
                    "trl not installed; datasets not installed: `make setup`; without internet: `make wheelhouse "
                    "SLIM=1` on a machine that has it, copy wheelhouse/ here, `make setup WHEELHOUSE=wheelhouse` "
                    "(README, \"Air-gapped clusters\")")
    assert set(checked["problems"]) == {"transformers", "trl", "datasets"}


def test_a_model_on_disk_is_the_checks_model_and_no_stand_in_is_built(tmp_path, monkeypatch):
    import lib.standin

    def no_stand_in(*args, **kwargs):
        raise AssertionError("a stand-in was built")

    monkeypatch.setattr(lib.standin, "build_standin", no_stand_in)
    ready = tmp_path / "my-model"
    ready.mkdir()
    config = load_config("paper", "lora", overrides=[f"model.name_or_path={ready}"])
    budget = gpu_check.Budget(360, gpu_check.GPU_ESTIMATES_S)
    with pytest.raises(gpu_check.Skipped, match="not on disk, and its full-size stand-in is built on a GPU; none"):
        gpu_check.checks_model(config, QWEN2_5_3B, tmp_path, budget)  # no .ready: a half-fetched folder
    (ready / ".ready").write_text("")
    assert gpu_check.checks_model(config, QWEN2_5_3B, tmp_path, budget) == {
        "model": str(ready), "path": str(ready), "random_weights": False}


def test_the_speed_checks_train_the_checks_model_where_it_has_the_measured_shape(qwen_standin, tmp_path):
    from transformers import AutoConfig

    (tmp_path / "model").symlink_to(qwen_standin)  # the measurements write beside the model
    record = {"status": "ok", "details": {"path": str(tmp_path / "model")}}
    assert gpu_check.of_architecture(record, QWEN2_5_3B) is None  # 2 layers: not the 3B shape; a random 3B then
    arch = replace(architecture_of(AutoConfig.from_pretrained(qwen_standin)), name="stand-in")
    assert gpu_check.of_architecture(record, arch) == tmp_path / "model"
    # what a GPU does with the full-size stand-in, on its 2-layer one: the study's trainer with the
    # placeholder tokenizer (its pad id is 0, the stand-in's 151643) on short synthetic examples
    args = argparse.Namespace(profile="demo", overrides=["train.max_length=64"], variant=[], warmup=1, steps=1)
    grid = load_grid("demo")
    budget = gpu_check.Budget(360, gpu_check.method_estimates(gpu_check.CPU_ESTIMATES_S, grid.methods))
    bench = gpu_check.SpeedBench(args, grid, arch, Lengths(((32, 16),), "short"), tmp_path / "model", budget)
    details = bench.measure(Variant("lora", "padding_free", "sdpa"), checkpointing=False)
    assert details["adapter_dtype"] == "float32" and details["tokens_per_s"] > 0
    assert details["total_params"] == parameter_counts(arch).total + details["trainable_params"]


def test_a_failing_check_is_recorded_in_one_line_and_the_next_one_runs():
    def broken():
        raise RuntimeError("out of memory\nlong traceback text")

    def wrong():
        raise gpu_check.CheckFailed("loss differs", {"difference": 0.5})

    def not_here():
        raise gpu_check.Skipped("vllm not installed")

    records = [gpu_check.run_check(name, function) for name, function in
               [("broken", broken), ("wrong", wrong), ("not here", not_here), ("fine", lambda: {"x": 1})]]
    assert [r["status"] for r in records] == ["failed: RuntimeError: out of memory", "failed: loss differs",
                                             "skipped: vllm not installed", "ok"]
    assert records[1]["details"] == {"difference": 0.5} and records[3]["details"] == {"x": 1}


def test_the_budget_skips_what_would_not_fit_at_the_pace_so_far(monkeypatch):
    clock = [0.0]
    monkeypatch.setattr(gpu_check.time, "perf_counter", lambda: clock[0])
    budget = gpu_check.Budget(100, {"short": 10, "long": 40})
    budget.admit("short")
    clock[0] = 30.0  # took 30 s where 10 were estimated: the stages ahead will take 3 times theirs
    budget.settle()
    assert budget.pace == 3 and budget.estimate("long") == 120
    with pytest.raises(gpu_check.Skipped, match=r"would not fit the time budget: about 120 s, 70 s of 100 s left"):
        budget.admit("long")
    budget.admit("short")  # 30 s at this pace: fits the 70 s left


def test_without_trl_the_speed_checks_are_skipped_with_the_reason(monkeypatch, tmp_path):
    def no_model(*args, **kwargs):
        raise AssertionError("a model was built")

    monkeypatch.setattr(gpu_check, "save_random_model", no_model)
    hide_packages(monkeypatch, "trl")
    args = argparse.Namespace(profile="demo", model_config=None, overrides=[], variant=[], warmup=1, steps=1)
    grid = load_grid("demo")
    report = gpu_check.Report(tmp_path, {"profile": "demo", "preflight": {"line": "trl not installed"}, "budget_s": 360,
                                     "estimates_from": "", "machine": {}})
    budget = gpu_check.Budget(360, gpu_check.method_estimates(gpu_check.CPU_ESTIMATES_S, grid.methods))
    records = gpu_check.speed_checks(args, load_config("demo", grid.methods[0]), grid, {"status": "ok"}, tmp_path,
                                     budget, report)
    assert len(records) == 2 * len(grid.methods) == len(json.loads((tmp_path / "gpu-check.json").read_text())["checks"])
    assert {r["status"] for r in records} == {"skipped: trl not installed"}


def test_a_method_s_speed_checks_are_estimated_by_its_precision_not_its_name(monkeypatch, tmp_path):
    shutil.copy(lib.config.EXPERIMENTS_DIR / "base.yaml", tmp_path / "base.yaml")
    monkeypatch.setattr(lib.config, "EXPERIMENTS_DIR", tmp_path)
    (tmp_path / "fourbit.yaml").write_text("quantization:\n  load_in_4bit: true\n", encoding="utf-8")
    (tmp_path / "sixteen.yaml").write_text("lora:\n  r: 32\n", encoding="utf-8")
    estimates = gpu_check.method_estimates(gpu_check.GPU_ESTIMATES_S, ("fourbit", "sixteen"))
    assert estimates["training speed fourbit"] == gpu_check.GPU_ESTIMATES_S["training speed 4-bit"] == 40
    assert estimates["training speed sixteen"] == gpu_check.GPU_ESTIMATES_S["training speed 16-bit"] == 25


def test_a_second_copy_on_the_same_folder_stops_in_one_line(run_cli, tmp_path):
    from lib.io import lock_if_free

    with lock_if_free(tmp_path / ".gpu-check.lock") as held:
        assert held is not None
        done = run_cli("gpu-check", "--profile", "demo", "--out", tmp_path)
    assert done.returncode == 2 and done.stderr.count("\n") == 1
    assert "gpu-check is already in progress (pid " in done.stderr and not (tmp_path / "gpu-check.json").exists()


@pytest.mark.parametrize("bad", [["--steps", "0"], ["--new-tokens", "0"]])
def test_counts_below_one_are_a_one_line_error(run_cli, tmp_path, bad):
    done = run_cli("gpu-check", "--profile", "demo", "--out", tmp_path, *bad)
    assert done.returncode == 2 and done.stderr.startswith("error: --steps, --warmup, --prompts and --new-tokens")


def test_adapters_trained_in_bf16_fail_the_check():
    speed = [{"name": "lora", "status": "ok", "details": {"adapter_dtype": "float32"}},
             {"name": "qlora", "status": "ok", "details": {"adapter_dtype": "bfloat16"}},
             {"name": "qlora 2", "status": "skipped: bitsandbytes not installed", "details": {}}]
    record = gpu_check.run_check("adapters", lambda: gpu_check.trained_adapters_in_fp32(speed))
    assert record["status"] == "failed: adapters not in float32: {'qlora': 'bfloat16'}"
    assert record["details"] == {"adapter_dtypes": {"lora": "float32", "qlora": "bfloat16"}}


def speed_record(method: str, checkpointing: str, mfu: float, hours: dict) -> dict:
    return {"name": f"training speed {method}, checkpointing {checkpointing}", "status": "ok",
            "details": {"mfu": mfu, "projected_hours": hours}}


def test_the_targets_on_an_h100_are_met_or_not_with_their_values():
    checks = [
        speed_record("lora", "on", 0.31, {"10k": 0.5, "20k": 1.0}),
        speed_record("lora", "off", 0.42, {"10k": 0.4, "20k": 0.8}),  # the faster: its MFU and hours count
        speed_record("qlora", "on", 0.20, {"10k": 0.6, "20k": 1.2}),
        {"name": "training speed qlora, checkpointing off", "status": "failed: OutOfMemoryError: ...", "details": {}},
        {"name": "padding fraction (paper profile's training batches)", "status": "ok",
         "details": {"fraction": 0.021, "batching": "padded", "lengths": "shipped"}},
        {"name": "evaluation time", "status": "ok", "details": {"minutes": 2.4, "formula": "minutes = ..."}},
    ]
    rows = {row["target"]: row for row in gpu_check.targets(checks, "NVIDIA H100 80GB HBM3")}
    assert (rows["LoRA MFU"]["measured"], rows["LoRA MFU"]["met"]) == ("42.0%", True)
    assert (rows["QLoRA MFU"]["measured"], rows["QLoRA MFU"]["met"]) == ("20.0%", False)
    assert (rows["padding of the training batches"]["measured"], rows["padding of the training batches"]["met"]) == (
        "2.1%", True)
    assert rows["minutes to evaluate the test set"]["met"] is True
    hours = rows["projected hours per run"]
    # training at the faster variant + 2.4 min of evaluation per run
    assert hours["measured"] == ("lora-10k 0.44, lora-20k 0.84, qlora-10k 0.64, qlora-20k 1.24; grid 3.2 h")
    assert gpu_check.target_line(rows["QLoRA MFU"]) == "QLoRA MFU >= 25%: 20.0% ✗ (the faster of its speed checks)"
    # the 3-minute evaluation target is an H100's: on an A100 the minutes are shown, not judged
    on_a100 = {row["target"]: row for row in gpu_check.targets(checks, "NVIDIA A100-SXM4-80GB")}
    assert on_a100["minutes to evaluate the test set"]["met"] is None
    result = {"checks": checks, "gpu": "NVIDIA H100 80GB HBM3", "targets": list(rows.values())}
    assert gpu_check.last_line(result, REPO_ROOT / "results" / "bench") == (
        "gpu-check: 5 ok, 1 failed, 0 skipped; targets met 3 of 4 -> results/bench/gpu-check.md")
