"""Configuration: the layers, the overrides, the errors a mistyped setting gets, base.yaml as the
one place of every default, and the range check of every setting when a configuration loads."""

from __future__ import annotations

import dataclasses
import re
import shutil
import subprocess
import sys
import typing
from pathlib import Path

import pytest

import lib.config as config_module
from builders import REPO_ROOT
from lib.architecture import QWEN2_5_3B
from lib.config import (
    ATTENTION,
    EXPERIMENTS_DIR,
    LR_SCHEDULERS,
    REPORT_TO,
    SECTIONS,
    Grid,
    OneOf,
    Range,
    declared_fields,
    grid_of_sizes,
    load_config,
    load_grid,
    parse_count,
    parse_run_name,
    read_yaml,
    run_name,
    zero_data_run,
)
from lib.errors import UserError
from lib.memory import estimate_memory, training_setting
from lib.summarize.table import expected_runs


def test_layers_apply_in_order_method_profile_variant_override():
    config = load_config("demo", "qlora", variants=("seed-study",), overrides=["train.epochs=5"])
    assert config.quantization.load_in_4bit  # qlora.yaml
    assert config.model.name_or_path == "models/tiny-qwen2"  # profiles/demo.yaml
    assert config.lora.r == 8 and config.lora.target_modules == ["q_proj", "k_proj", "v_proj", "o_proj"]  # variant
    assert config.train.learning_rate == 1e-4  # the variant comes after the profile
    assert config.train.epochs == 5.0  # the override comes last


def test_the_paper_defaults_follow_current_evidence():
    config = load_config("paper", "lora")
    assert config.lora.target_modules == "all-linear" and config.lora.alpha == 2 * config.lora.r
    assert not config.quantization.load_in_4bit and config.train.effective_batch_size == 16


def test_overrides_are_typed_from_the_dataclasses():
    config = load_config("demo", overrides=["train.learning_rate=1e-4", "data.test_size=2k",
                                            "train.gradient_checkpointing=true", "cleaning.max_example_tokens=null"])
    assert config.train.learning_rate == 1e-4  # YAML 1.1 reads 1e-4 as a string
    assert config.data.test_size == 2000 and config.train.gradient_checkpointing is True
    assert config.cleaning.max_example_tokens is None


@pytest.mark.parametrize("override, message", [
    ("train.lr=1", r"unknown key train.lr \(known: epochs, learning_rate"),
    ("trian.epochs=1", r"unknown section 'trian'; did you mean 'train'"),
    ("data.sed=1", r"unknown key data.sed; did you mean 'seed'"),
    ("train.epochs=many", r"train.epochs: expected float, got 'many'"),
    ("train.gradient_checkpointing=1", r"train.gradient_checkpointing: expected bool or str, got 1"),
    ("train.gradient_checkpointing=sometimes",
     r"train.gradient_checkpointing='sometimes': must be one of true, false, auto"),
    ("train.epochs", r"expected section.key=value"),
    ("train.learning_rate=nan", r"train.learning_rate: expected float, got 'nan'"),  # NaN passes any bound
])
def test_a_mistyped_setting_is_an_error_that_names_it(override, message):
    with pytest.raises(UserError, match=message):
        load_config("demo", overrides=[override])


def test_unknown_recipes_list_the_known_ones():
    with pytest.raises(UserError, match=r"profiles/dmo.yaml: no such recipe .*demo, paper"):
        load_config("dmo")
    with pytest.raises(UserError, match=r"experiments/dora.yaml: no such recipe"):
        load_config("demo", "dora")


def test_sizes_are_true_counts():
    assert [parse_count(s) for s in ("10k", "1.5k", "250", "2M")] == [10_000, 1_500, 250, 2_000_000]
    for bad in ("ten", "1.2345k", "0", "-5"):
        with pytest.raises(UserError):
            parse_count(bad)


def test_run_names_round_trip_and_the_default_seed_has_no_suffix():
    grid = load_grid("paper")
    assert grid.sizes == ("10k", "20k", "40k", "60k") and grid.methods == ("lora", "qlora")
    assert run_name("qlora", "60k", grid.default_seed, grid.default_seed) == "qlora-60k"
    assert run_name("qlora", "60k", 7, grid.default_seed) == "qlora-60k-s7"
    assert parse_run_name("qlora-60k-s7", grid.default_seed) == ("qlora", "60k", 7)
    assert parse_run_name("lora-10k", grid.default_seed) == ("lora", "10k", grid.default_seed)
    assert parse_run_name("qlora-2.5k-s7", grid.default_seed) == ("qlora", "2.5k", 7)


def test_the_extended_grid_adds_smaller_sizes_in_proportion_and_names_a_fit_s_grid():
    assert load_grid("paper", "extended").sizes == ("1k", "2.5k", "5k", "10k", "20k", "40k", "60k")
    # the demo's: 1/10, 1/4 and 1/2 of its smallest size, as the paper's are of 10k
    assert load_grid("demo", "extended").sizes == ("10", "25", "50", "100", "200", "400", "600")
    assert grid_of_sizes("paper", [60_000, 10_000, 20_000, 40_000]) == "default"
    assert grid_of_sizes("demo", [10, 25, 50, 100, 200, 400, 600]) == "extended"
    assert grid_of_sizes("paper", [10_000, 20_000, 40_000]) is None
    with pytest.raises(UserError, match="grid 'extendd': expected default or extended"):
        load_grid("paper", "extendd")


# --- defaults in one place: experiments/base.yaml ------------------------------------------------


def test_the_dataclasses_hold_no_default_value():
    for section_type in SECTIONS.values():
        for field in dataclasses.fields(section_type):
            assert field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING, field.name


@pytest.fixture
def experiments(tmp_path, monkeypatch) -> Path:
    """A copy of experiments/ that load_config reads instead of the real one."""
    copy = tmp_path / "experiments"
    shutil.copytree(EXPERIMENTS_DIR, copy)
    monkeypatch.setattr(config_module, "EXPERIMENTS_DIR", copy)
    return copy


def test_a_field_that_base_yaml_leaves_out_is_an_error_naming_it(experiments):
    base = experiments / "base.yaml"
    base.write_text(base.read_text(encoding="utf-8").replace("  judge_concurrency: 4\n", ""), encoding="utf-8")
    with pytest.raises(UserError, match=r"base.yaml: no value for eval.judge_concurrency \("):
        load_config("paper")
    # a later layer does not stand in for base.yaml: the default would depend on the profile
    with (experiments / "profiles" / "paper.yaml").open("a", encoding="utf-8") as profile:
        profile.write("eval:\n  judge_concurrency: 4\n")
    with pytest.raises(UserError, match=r"base.yaml: no value for eval.judge_concurrency \("):
        load_config("paper")


def test_a_method_whose_recipe_loads_the_base_in_4_bit_is_4_bit_wherever_it_matters(experiments):
    # a method added as docs/extending.md says: QLoRA's recipe at another rank, under another name
    (experiments / "qlora_r32.yaml").write_text("quantization:\n  load_in_4bit: true\nlora:\n  r: 32\n",
                                                encoding="utf-8")
    (experiments / "lora_r32.yaml").write_text("lora:\n  r: 32\n", encoding="utf-8")
    assert [zero_data_run(method) for method in ("qlora_r32", "qlora", "lora_r32", "lora", "no_recipe")] == [
        "base-nf4", "base-nf4", "base", "base", "base"]
    grid = Grid(methods=("lora_r32", "qlora_r32"), sizes=("1k",), seeds=(42,))
    assert [run["run"] for run in expected_runs(grid, 42)] == ["base", "base-nf4", "lora_r32-1k", "qlora_r32-1k"]
    settings = {method: training_setting(load_config("paper", method), 8, 256, "bfloat16", "cuda")
                for method in ("lora_r32", "qlora_r32")}
    assert settings["qlora_r32"].load_in_4bit and not settings["lora_r32"].load_in_4bit
    weights = {method: estimate_memory(QWEN2_5_3B, setting, 0.5).weights for method, setting in settings.items()}
    assert weights["qlora_r32"] < weights["lora_r32"] / 2.5


def test_an_unknown_key_in_a_recipe_names_the_file_and_suggests_the_field(experiments):
    (experiments / "variants" / "typo.yaml").write_text("lora:\n  dropuot: 0.1\n", encoding="utf-8")
    with pytest.raises(UserError, match=r"variants/typo.yaml: unknown key lora.dropuot; did you mean 'dropout'\?"):
        load_config("demo", variants=("typo",))


@pytest.mark.parametrize("profile", ["paper", "demo"])
def test_a_profile_holds_only_what_differs_from_base_yaml(profile):
    base = read_yaml(EXPERIMENTS_DIR / "base.yaml")
    for section, values in read_yaml(EXPERIMENTS_DIR / "profiles" / f"{profile}.yaml").items():
        for key, value in values.items():
            assert value != base[section][key], f"profiles/{profile}.yaml repeats base.yaml's {section}.{key}"


# --- every setting checked when it loads --------------------------------------------------------


@pytest.mark.parametrize("override, message", [
    # counts and sizes: at least 1
    ("data.test_size=-5", "override: data.test_size=-5: must be at least 1"),
    ("data.test_size=0", "override: data.test_size=0: must be at least 1"),
    ("lora.r=0", "override: lora.r=0: must be at least 1"),
    ("train.per_device_batch_size=0", "override: train.per_device_batch_size=0: must be at least 1"),
    ("train.eval_steps=0", "override: train.eval_steps=0: must be at least 1"),
    # epochs and rates: above 0
    ("train.epochs=-1", "override: train.epochs=-1: must be above 0"),
    ("train.learning_rate=0", "override: train.learning_rate=0: must be above 0"),
    ("lora.alpha=-16", "override: lora.alpha=-16: must be above 0"),
    # shares: a dropout or a warmup share below 1
    ("lora.dropout=1", "override: lora.dropout=1: must be at least 0 and below 1"),
    ("train.warmup_ratio=1.5", "override: train.warmup_ratio=1.5: must be at least 0 and below 1"),
    ("data.max_bad_fraction=-0.1", "override: data.max_bad_fraction=-0.1: must be at least 0 and at most 1"),
    # thresholds in their meaningful range
    ("cleaning.near_duplicate_threshold=1",
     "override: cleaning.near_duplicate_threshold=1: must be above 0 and at most 0.95"),
    ("cleaning.minhash_permutations=8", "override: cleaning.minhash_permutations=8: must be at least 16"),
    ("eval.bootstrap_samples=10", "override: eval.bootstrap_samples=10: must be at least 40"),
    # an optional setting, checked when it is set
    ("cleaning.max_example_tokens=0", "override: cleaning.max_example_tokens=0: must be at least 1"),
    # relations between fields
    ("cleaning.max_answer_chars=3",
     "override: cleaning.max_answer_chars=3: must be at least cleaning.min_answer_chars (5)"),
    ("train.effective_batch_size=0", "override: train.effective_batch_size=0: must be at least 1"),
    ("train.batching=packed", "override: train.batching='packed': must be one of auto, padding_free, padded"),
    ("eval.repetition_penalty=0", "override: eval.repetition_penalty=0: must be above 0"),
    # choices
    ("model.dtype=fp16", "override: model.dtype='fp16': must be one of auto, float32, float16, bfloat16"),
    ("quantization.quant_type=int4", "override: quantization.quant_type='int4': must be one of nf4, fp4"),
    ("eval.backend=vlm", "override: eval.backend='vlm': must be one of auto, transformers, vllm"),
    ("train.lr_scheduler=cosine_with_min_lr",
     "override: train.lr_scheduler='cosine_with_min_lr': must be one of linear, "),
    ("train.report_to=[tensorboard, tensorbord]",
     "override: train.report_to=['tensorboard', 'tensorbord']: must be one of "),
    ("model.attn_implementation=flash",
     "override: model.attn_implementation='flash': must be one of auto, eager, sdpa, "),
    # text
    ("data.hub_repo=''", "override: data.hub_repo='': must not be empty"),
    ("lora.target_modules=[]", "override: lora.target_modules=[]: must not be empty"),
])
def test_a_setting_out_of_its_range_is_one_line_naming_key_value_origin_and_range(override, message):
    with pytest.raises(UserError) as refused:
        load_config("demo", "lora", overrides=[override])
    assert str(refused.value).startswith(message) and "\n" not in str(refused.value)


def test_a_bad_value_in_a_recipe_file_names_that_file(experiments):
    (experiments / "variants" / "tiny-rank.yaml").write_text("lora:\n  r: 0\n", encoding="utf-8")
    with pytest.raises(UserError, match=r"variants/tiny-rank.yaml: lora.r=0: must be at least 1$"):
        load_config("demo", variants=("tiny-rank",))
    # the check runs on the final values: a later layer may repair an earlier one
    assert load_config("demo", variants=("tiny-rank",), overrides=["lora.r=4"]).lora.r == 4


def test_every_bad_setting_is_named_each_on_its_own_line():
    with pytest.raises(UserError) as refused:
        load_config("demo", overrides=["lora.r=0", "train.epochs=0", "eval.backend=gpu"])
    lines = str(refused.value).splitlines()
    assert lines[0] == "3 settings are not allowed:"
    assert [line.split("=")[0].strip() for line in lines[1:]] == ["override: lora.r", "override: train.epochs",
                                                                   "override: eval.backend"]


def test_data_with_a_negative_test_size_stops_in_one_line_and_writes_nothing(run_cli, tmp_path):
    done = run_cli("data", "--profile", "demo", "--set", "data.test_size=-5", "--raw-dir", tmp_path / "raw",
                   "--out", tmp_path / "out")
    assert done.returncode == 2
    assert done.stderr == "error: override: data.test_size=-5: must be at least 1\n"
    assert list(tmp_path.iterdir()) == []


def test_train_with_negative_epochs_stops_before_torch_is_imported(tmp_path):
    # whether torch was imported says that no model (not even the library) was loaded
    script = ("import sys\nfrom lib.cli import main\ntry:\n    main(sys.argv[1:])\n"
              "finally:\n    print('torch imported' if 'torch' in sys.modules else 'torch not imported')")
    out = tmp_path / "runs" / "lora-100"
    done = subprocess.run(
        [sys.executable, "-c", script, "train", "--profile", "demo", "--method", "lora", "--size", "100",
         "--seed", "42", "--data", str(tmp_path / "data"), "--out", str(out), "--set", "train.epochs=-1"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and done.stdout == "torch not imported\n"
    assert done.stderr == "error: override: train.epochs=-1: must be above 0\n"
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("override", ["lora.r=0", "train.per_device_batch_size=0", "data.test_size=0"])
def test_the_command_line_refuses_zero_sizes_in_one_line(run_cli, override):
    done = run_cli("config", "--profile", "paper", "--method", "qlora", "--set", override)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr == f"error: override: {override}: must be at least 1\n"


# --- every field declares its range --------------------------------------------------------------


def outside(rule: Range, kind: type, section) -> list:
    """A value just outside each bound of `rule` (a field-named bound read from `section`)."""
    step = 1 if kind is int else 0.01

    def bound(limit):
        return getattr(section, limit) if isinstance(limit, str) else limit

    values = []
    if rule.at_least is not None:
        values.append(bound(rule.at_least) - step)
    if rule.above is not None:
        values.append(rule.above)
    if rule.at_most is not None:
        values.append(bound(rule.at_most) + step)
    if rule.below is not None:
        values.append(rule.below)
    return values


def numeric(kind) -> type | None:
    """int or float for int, float and their optional forms, else None."""
    options = set(getattr(kind, "__args__", (kind,))) - {type(None)}
    return next(iter(options)) if len(options) == 1 and options <= {int, float} else None


EVERY_KEY = [f"{section}.{name}"
             for section, section_type in SECTIONS.items() for name in declared_fields(section_type)]


@pytest.mark.parametrize("key", EVERY_KEY)
def test_every_setting_refuses_a_value_outside_its_declared_range(key):
    """A numeric field must declare a lower bound: every count, size, rate, share and threshold
    of this configuration has one, so a field added later without a range fails here. Each
    bound is then tried one step outside. A text field refuses being empty, a field with
    choices a word outside them (a mapping: a key outside them); a yes/no field is settled by its type."""
    section, name = key.split(".")
    kind, rules = declared_fields(SECTIONS[section])[name]
    config = load_config("paper", "lora")
    candidates = []
    if numeric(kind) is not None:
        ranges = [rule for rule in rules if isinstance(rule, Range)]
        assert any(r.at_least is not None or r.above is not None for r in ranges), f"{key} declares no lower bound"
        candidates = [value for rule in ranges for value in outside(rule, numeric(kind), getattr(config, section))]
    elif kind is not bool:
        mapping = any(typing.get_origin(option) is dict for option in getattr(kind, "__args__", (kind,)))
        choice = "not-a-choice=x" if mapping else "not-a-choice"
        candidates = ["''"] + ([choice] if any(isinstance(rule, OneOf) for rule in rules) else [])
    for value in candidates:
        with pytest.raises(UserError, match=rf"^override: {re.escape(key)}=.*: must "):
            load_config("paper", "lora", overrides=[f"{key}={value}"])


# --- the choices are transformers' own -----------------------------------------------------------


def test_every_scheduler_transformers_can_build_from_steps_alone_is_allowed():
    import torch
    from transformers.optimization import get_scheduler
    from transformers.trainer_utils import SchedulerType

    def builds(name: str) -> bool:
        optimizer = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=1e-3)
        try:
            get_scheduler(name, optimizer, num_warmup_steps=1, num_training_steps=10)
        except (ValueError, TypeError):  # needs scheduler arguments this configuration does not carry
            return False
        return True

    assert set(LR_SCHEDULERS) == {kind.value for kind in SchedulerType if builds(kind.value)}


def test_reporting_and_attention_choices_are_the_installed_transformers_ones():
    from transformers import AttentionInterface
    from transformers.integrations.integration_utils import INTEGRATION_TO_CALLBACK

    assert set(REPORT_TO) == {"all", "none", *INTEGRATION_TO_CALLBACK}
    # paged|eager is the attention of continuous-batching generation, not of a model that trains
    assert set(ATTENTION) == {"auto", "eager",
                              *(k for k in AttentionInterface().valid_keys() if not k.startswith("paged|"))}


def test_a_profile_without_extended_sizes_is_an_error_naming_it(experiments):
    grid = experiments / "grid.yaml"
    grid.write_text(grid.read_text(encoding="utf-8").replace("  demo: [10, 25, 50]\n", ""), encoding="utf-8")
    assert load_grid("demo").sizes == ("100", "200", "400", "600")
    with pytest.raises(UserError, match=r"grid.yaml: no extended sizes for profile 'demo' \(profiles: paper\)"):
        load_grid("demo", "extended")
