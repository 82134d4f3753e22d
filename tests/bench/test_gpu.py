"""bench-gpu: the CPU run with the tiny architecture writes every field; lengths and synthetic data.
Also bench-summary's table of the benchmarks' headlines.

The GPU run (Qwen2.5-3B on an H100/H200) is the same code with another --model-config; here the
test suite checks the command end to end on the demo's tiny model, and the arithmetic by hand.
"""

from __future__ import annotations

import json

import pytest

from builders import hide_packages
from lib.architecture import TINY, lora_parameter_count, lora_targets, parameter_counts
from lib.bench import summary
from lib.bench.gpu import (
    RECORD_FIELDS,
    SHIPPED_LENGTHS,
    TOKENS_PER_CHARACTER,
    Lengths,
    character_lengths,
    padding_fraction,
    shipped_lengths,
    synthetic_dataset,
    variants_to_measure,
)
from lib.config import load_config, parse_count
from lib.hardware import PEAK_TFLOPS, datasheet_model, machine_description, peak_flops


def bench_arguments(out, tiny_model, demo_data, *extra) -> list[str]:
    return ["bench-gpu", "--out", str(out), "--profile", "demo", "--data", str(demo_data),
            "--set", f"model.name_or_path={tiny_model}", "--warmup", "1", *map(str, extra)]


def bench_results(out) -> tuple[dict, str]:
    return json.loads((out / "gpu-demo.json").read_text()), (out / "gpu-demo.md").read_text()


def bench(run_cli, tmp_path, tiny_model, demo_data, *extra):
    out = tmp_path / "bench"
    done = run_cli(*bench_arguments(out, tiny_model, demo_data, *extra))
    assert done.returncode == 0, done.stderr[-3000:]
    return bench_results(out)


@pytest.mark.slow
def test_cpu_run_of_the_tiny_model_writes_every_field(run_cli, tmp_path, tiny_model, demo_data):
    result, table = bench(run_cli, tmp_path, tiny_model, demo_data, "--steps", "2")

    assert result["architecture"] == "tiny"  # the demo profile's default: no GPU needed
    by_name = {v["name"]: v for v in result["variants"]}
    measured = ["lora-sdpa-padded", "qlora-sdpa-padded", "lora-sdpa-padding_free", "qlora-sdpa-padding_free"]
    assert [by_name[name]["status"] for name in measured] == ["ok"] * 4
    assert all(set(v) == set(RECORD_FIELDS) for v in result["variants"])
    # flash attention and Liger need CUDA (and their packages): skipped with the reason
    assert all(v["error"] for v in result["variants"] if v["status"] == "skipped")

    lengths = result["lengths"]
    # the smallest split (a random sample of the nested ones), tokenised with the model's tokenizer
    assert "train-64.jsonl, first 64 records, tokenised with" in lengths["source"]
    for name in measured:
        v = by_name[name]
        assert v["measured_steps"] == 2 and v["tokens_per_s"] > 0
        assert v["measured_tokens"] == pytest.approx(v["tokens_per_s"] * v["measured_seconds"], abs=1)
        # the demo trains in fp32 on the CPU: no allocator statistics, no datasheet peak, each said why
        assert v["dtype"] == "float32" and v["device"] == "cpu"
        for field in ("peak_memory_allocated_gb", "peak_memory_reserved_gb", "memory_left_before_gb", "mfu"):
            assert v[field] is None and v["null_reasons"][field]
        assert v["peak_rss_gb"] > 0.1
        # the 4-bit base is counted by its weights, so both methods report the same model + adapters
        trainable = lora_parameter_count(TINY, 16, lora_targets("all-linear"))
        assert v["trainable_params"] == trainable
        assert v["total_params"] == parameter_counts(TINY).total + trainable
        # padded micro-batches are 8 rows (demo per-device batch); padding-free ones are one row
        largest = v["largest_batch"]
        assert largest["rows"] == (1 if v["batching"] == "padding_free" else 8)
        assert 0 < largest["labelled_tokens"] < largest["rows"] * largest["length"]
        # hours = examples x epochs x tokens per example / tokens per second
        for size, hours in v["projected_hours"].items():
            expected = parse_count(size) * 1.0 * lengths["mean_after_truncation"] / v["tokens_per_s"] / 3600
            assert hours == pytest.approx(expected, rel=1e-3)
    assert result["machine"]["gpu"] is None and result["machine"]["cpu_count"] >= 1
    assert result["provenance"]["versions"]["trl"]
    assert "| lora-sdpa-padding_free | ok |" in table and "Projected training time" in table


@pytest.mark.slow
def test_a_failing_variant_is_recorded_and_the_others_still_run(tmp_path, tiny_model, demo_data, monkeypatch):
    # QLoRA's 4-bit loading fails, as on a device bitsandbytes has no kernel for: only the
    # variants that quantise fail. The failure is injected, so the bench runs in this process.
    from lib import model
    from lib.cli import main

    def no_4bit_kernel(config, dtype):
        if config.quantization.load_in_4bit:
            raise RuntimeError("no 4-bit kernel for this device")
        return None

    monkeypatch.setattr(model, "quantization_config", no_4bit_kernel)
    main(bench_arguments(tmp_path / "bench", tiny_model, demo_data, "--steps", "1"))
    result, table = bench_results(tmp_path / "bench")
    status = {v["name"]: v for v in result["variants"]}
    assert status["lora-sdpa-padded"]["status"] == status["lora-sdpa-padding_free"]["status"] == "ok"
    for name in ("qlora-sdpa-padded", "qlora-sdpa-padding_free"):
        assert status[name]["status"] == "failed"
        assert status[name]["error"].startswith("RuntimeError: ") and "\n" not in status[name]["error"]
    assert "| qlora-sdpa-padded | failed: RuntimeError" in table


def test_character_lengths_follow_the_template():
    messages = [{"role": "system", "content": "系" * 10}, {"role": "user", "content": "问" * 20},
                {"role": "assistant", "content": "答" * 40}]
    # 0.7 tokens per character: 7 + 14 + 28 tokens, + 5 template tokens per message; the loss
    # covers the answer's 28 tokens + 3 (its "\n", <|im_end|> and the "\n" after it)
    assert TOKENS_PER_CHARACTER == 0.7
    assert character_lengths(messages) == (7 + 14 + 28 + 3 * 5, 28 + 3)


def test_the_shipped_lengths_are_a_named_histogram_with_the_documented_mean_and_p99():
    shipped = json.loads(SHIPPED_LENGTHS.read_text())
    assert shipped["source"].startswith("shibing624/MedicalGPT, data/sft/medical_sft_1K_format.jsonl")
    assert all(len(row) == 3 and all(isinstance(n, int) for n in row) for row in shipped["histogram"])  # counts only
    lengths = shipped_lengths()
    summary = lengths.summary(max_length=10**6)
    assert (summary["examples"], summary["p50"], summary["p99"], summary["max"]) == (915, 161, 733, 1288)
    assert summary["mean"] == pytest.approx(204.0, abs=0.1) and "lengths-medicalgpt-1k.json" in lengths.source
    # truncation at the study's max_length lowers the mean the trainer sees
    assert lengths.mean_tokens(1024) < summary["mean"]


def test_padded_batches_are_grouped_by_length_and_padding_free_rows_have_no_padding():
    lengths = Lengths(((100, 50), (300, 150)), "hand-made")  # half short, half long
    padded = padding_fraction(load_config("paper", "lora", overrides=["train.batching=padded"]), lengths, 8_000,
                              seed=0)
    # transformers' grouping sorts megabatches of 50 steps x 16 examples by length: a micro-batch of 8
    # mixes the two lengths only where a megabatch's longs end, 10 at most (each pads < 7 x 200 of
    # 1.6M tokens); ungrouped, nearly every batch would hold a 300 and pad its 100s by 200
    assert padded["batching"] == "padded" and padded["positions"] > padded["tokens"] > 8_000 * 100
    assert 0 < padded["fraction"] < 10 * 7 * 200 / padded["tokens"]
    free = padding_fraction(load_config("paper", "lora", overrides=["train.batching=padding_free"]), lengths,
                            8_000, seed=0)
    assert (free["batching"], free["fraction"], free["positions"]) == ("padding_free", 0.0, free["tokens"])
    rounded = padding_fraction(load_config("paper", "lora", overrides=["train.batching=padded",
                                                                        "train.pad_to_multiple_of=64"]),
                               Lengths(((100, 50),), "one length"), 800, seed=0)
    assert rounded["fraction"] == pytest.approx(1 - 100 / 128)  # 100 rounded up to 128


def test_the_paper_profiles_batches_of_the_shipped_lengths_meet_the_padding_target():
    config = load_config("paper", "lora", overrides=["train.batching=padded"])  # sdpa: what a GPU image has
    assert padding_fraction(config, shipped_lengths(), 10_000, seed=42)["fraction"] < 0.05


def test_synthetic_examples_have_the_drawn_lengths_and_the_answer_last():
    lengths = Lengths(((10, 4), (6, 6), (3, 1)), "hand-made")
    dataset = synthetic_dataset(lengths, 50, vocab_size=7, seed=0)
    drawn = set()
    for ids, mask in zip(dataset["input_ids"], dataset["assistant_masks"]):
        assert len(ids) == len(mask)
        assert min(ids) >= 1 and max(ids) < 7  # never the pad id 0, so every token counts as real
        answer = sum(mask)
        assert mask == [0] * (len(ids) - answer) + [1] * answer
        drawn.add((len(ids), answer))
    assert drawn == set(lengths.examples)
    assert synthetic_dataset(lengths, 50, 7, seed=0)["input_ids"] == dataset["input_ids"]  # seeded


def test_summary_names_one_machine_when_the_headlined_results_share_it():
    cpu = {"platform": "Linux-6.1-x86_64", "cpu_count": 2}
    results = {
        "data": {"headline": [{"measure": "data preparation", "value": 41.5, "unit": "s"}], "machine": cpu},
        "demo": {"headline": [{"measure": "make demo", "value": 420, "unit": "s"}],
                 "machine": cpu | {"gpus": []}},  # other keys of the same machine do not make it another
        # details without a headline, made elsewhere: neither a row nor a machine of the table
        "gpu-paper": {"machine": {"platform": "Linux-5.15-x86_64", "cpu_count": 16, "gpu": "NVIDIA H200"}},
        "plan-paper": {"settings": {}},
    }
    text = summary.markdown(results)
    assert "Machine: Linux-6.1-x86_64, 2 CPU cores. Details" in text and "several machines" not in text
    assert "| [data](data.md) | data preparation | 41.5 s |" in text and "gpu-paper" not in text
    results["demo"]["machine"] = {"platform": "Linux-6.1-x86_64", "cpu_count": 8}
    assert "(several machines: see each file)" in summary.markdown(results)


# --- what must be installed ------------------------------------------------------------------------


def test_without_bitsandbytes_the_qlora_variants_are_skipped_with_the_reason(monkeypatch):
    hide_packages(monkeypatch, "bitsandbytes")
    configs = {method: load_config("demo", method) for method in ("lora", "qlora")}
    skipped = {variant.name: why_not for variant, why_not in variants_to_measure(configs)}
    assert skipped["qlora-sdpa-padded"] == skipped["qlora-sdpa-padding_free"] == (
        "bitsandbytes not installed (the 4-bit layers of quantization.load_in_4bit)")
    assert skipped["lora-sdpa-padded"] is None and skipped["lora-sdpa-padding_free"] is None
    assert machine_description()["packages"]["bitsandbytes"] is None


def test_without_trl_bench_gpu_stops_in_one_line_before_building_a_model(tmp_path, monkeypatch, capsys):
    from lib.bench import gpu
    from lib.cli import main

    def no_model(*args, **kwargs):
        raise AssertionError("a model was built")

    monkeypatch.setattr(gpu, "save_random_model", no_model)
    hide_packages(monkeypatch, "trl")
    with pytest.raises(SystemExit) as stopped:
        main(["bench-gpu", "--out", str(tmp_path / "bench"), "--profile", "demo"])
    assert stopped.value.code == 2
    error = capsys.readouterr().err
    assert error.startswith("error: trl not installed: `make setup`") and error.count("\n") == 1
    assert not (tmp_path / "bench").exists()


# --- datasheet peaks -------------------------------------------------------------------------------


@pytest.mark.parametrize(("device_name", "model", "bf16_tflops"), [
    ("NVIDIA H100 80GB HBM3", "H100", 989.5),
    ("NVIDIA H100 PCIe", "H100 PCIe", 756.5),
    ("NVIDIA H100 NVL", "H100 NVL", 835.5),  # not the SXM figure that "H100" would give
    ("NVIDIA H200", "H200", 989.5),
    ("NVIDIA H200 NVL", "H200 NVL", 835.5),
    ("NVIDIA H20", "H20", 148.0),  # "H20" is in "H200", not the other way round
    ("NVIDIA H800", "H800", 989.5),
    ("NVIDIA H800 PCIe", "H800 PCIe", 756.5),
    ("NVIDIA A100-SXM4-80GB", "A100", 312.0),
    ("NVIDIA A800-SXM4-80GB", "A800", 312.0),
    ("NVIDIA A800 80GB PCIe", "A800", 312.0),
    ("NVIDIA A10", "A10", 125.0),
    ("NVIDIA L40S", "L40S", 362.05),  # neither L40 nor L4
    ("NVIDIA L40", "L40", 181.05),
    ("NVIDIA L4", "L4", 121.0),
])
def test_each_gpu_name_gets_its_own_datasheet_peak(device_name, model, bf16_tflops):
    assert datasheet_model(device_name) == model
    assert peak_flops(device_name, "bfloat16") == pytest.approx(bf16_tflops * 1e12)


def test_every_datasheet_entry_is_reachable_and_turing_has_no_bf16():
    # an entry listed after one it contains ("H100 NVL" after "H100") could never be matched
    for model, _ in PEAK_TFLOPS:
        assert datasheet_model(f"NVIDIA {model}") == model
    assert peak_flops("Tesla T4", "float16") == 65e12 and peak_flops("Tesla T4", "bfloat16") is None
    assert datasheet_model("NVIDIA GeForce GTX 1080") is None and peak_flops("cpu", "float32") is None
