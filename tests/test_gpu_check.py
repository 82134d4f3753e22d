"""gpu-check: the CPU run of the demo profile writes both files with every check's result; a check
that fails or cannot run is recorded and the others go on; without trl the speed checks are skipped.

On a CPU the checks that need CUDA or vLLM are skipped with the reason; on a GPU machine the same
command runs them (README, "GPU check").
"""

from __future__ import annotations

import argparse
import json

import pytest

from builders import hide_packages
from lib.bench import check
from lib.config import load_config, load_grid


def test_demo_run_on_a_cpu_writes_every_check(tmp_path, tiny_model):
    from lib.cli import main

    out = tmp_path / "bench"
    # speed checks are bench-gpu's measurements (tests/test_bench_gpu.py): a budget of 0 s skips them
    main(["gpu-check", "--profile", "demo", "--out", str(out), "--set", f"model.name_or_path={tiny_model}",
          "--prompts", "2", "--new-tokens", "4", "--time-budget", "0"])
    result = json.loads((out / "gpu-check.json").read_text())
    table = (out / "gpu-check.md").read_text()
    status = {c["name"]: c["status"] for c in result["checks"]}

    assert status["environment"] == "ok" and result["machine"]["gpu"] is None
    assert result["machine"]["packages"]["trl"] and result["machine"]["versions"]["transformers"]
    padding_free = next(c for c in result["checks"] if c["name"] == "padding-free loss, sdpa float32")
    assert padding_free["status"] == "ok" and padding_free["details"]["difference"] < 1e-5
    assert status["padding-free loss, flash_attention_2 bfloat16"] == "skipped: flash attention needs a CUDA GPU"
    assert status["adapters in fp32 (PEFT + lib.train)"] == "ok"
    for method in ("lora", "qlora"):
        for checkpointing in ("on", "off"):
            assert status[f"training speed {method}, checkpointing {checkpointing}"] == (
                "skipped: time budget of 0 s spent")
    assert status["adapters in fp32 (speed checks' training)"] == "skipped: no speed check ran"
    generation = next(c for c in result["checks"] if c["name"] == "generation speed (transformers)")
    assert generation["status"] == "ok"
    assert all(speed["tokens_per_s"] > 0 for speed in generation["details"]["batch_sizes"].values())
    assert status["greedy answers: transformers = vLLM"].startswith("skipped: ")
    assert result["failed"] == 0
    assert ("| padding-free loss, sdpa float32 | ok | loss " in table
            and "| generation speed (transformers) | ok |" in table)


def test_a_failing_check_is_recorded_in_one_line_and_the_next_one_runs():
    def broken():
        raise RuntimeError("out of memory\nlong traceback text")

    def wrong():
        raise check.CheckFailed("loss differs", {"difference": 0.5})

    def not_here():
        raise check.Skipped("vllm not installed")

    records = [check.run_check(name, function) for name, function in
               [("broken", broken), ("wrong", wrong), ("not here", not_here), ("fine", lambda: {"x": 1})]]
    assert [r["status"] for r in records] == ["failed: RuntimeError: out of memory", "failed: loss differs",
                                             "skipped: vllm not installed", "ok"]
    assert records[1]["details"] == {"difference": 0.5} and records[3]["details"] == {"x": 1}


def test_without_trl_the_speed_checks_are_skipped_with_the_reason(monkeypatch, tmp_path):
    def no_model(*args, **kwargs):
        raise AssertionError("a model was built")

    monkeypatch.setattr(check, "save_random_model", no_model)
    hide_packages(monkeypatch, "trl")
    args = argparse.Namespace(profile="demo", model_config=None, overrides=[], variant=[], time_budget=360,
                              warmup=1, steps=1)
    grid = load_grid("demo")
    records = check.speed_checks(args, load_config("demo", grid.methods[0]), grid, started=0.0)
    assert len(records) == 2 * len(grid.methods)
    assert {r["status"] for r in records} == {"skipped: trl not installed"}


@pytest.mark.parametrize("bad", [["--steps", "0"], ["--new-tokens", "0"]])
def test_counts_below_one_are_a_one_line_error(run_cli, tmp_path, bad):
    done = run_cli("gpu-check", "--profile", "demo", "--out", tmp_path, *bad)
    assert done.returncode == 2 and done.stderr.startswith("error: --steps, --warmup, --prompts and --new-tokens")


def test_adapters_trained_in_bf16_fail_the_check():
    speed = [{"name": "lora", "status": "ok", "details": {"adapter_dtype": "float32"}},
             {"name": "qlora", "status": "ok", "details": {"adapter_dtype": "bfloat16"}},
             {"name": "qlora 2", "status": "skipped: bitsandbytes not installed", "details": {}}]
    record = check.run_check("adapters", lambda: check.trained_adapters_in_fp32(speed))
    assert record["status"] == "failed: adapters not in float32: {'qlora': 'bfloat16'}"
    assert record["details"] == {"adapter_dtypes": {"lora": "float32", "qlora": "bfloat16"}}
