"""Configuration: the layers, the overrides, and the errors a mistyped setting gets."""

from __future__ import annotations

import pytest

from lib.config import load_config, load_grid, parse_count, parse_run_name, run_name
from lib.errors import UserError


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
                                            "train.packing=true", "cleaning.max_example_tokens=null"])
    assert config.train.learning_rate == 1e-4  # YAML 1.1 reads 1e-4 as a string
    assert config.data.test_size == 2000 and config.train.packing is True
    assert config.cleaning.max_example_tokens is None


@pytest.mark.parametrize("override, message", [
    ("train.lr=1", r"unknown key train.lr \(known: epochs, learning_rate"),
    ("trian.epochs=1", r"unknown section 'trian'; did you mean 'train'"),
    ("data.sed=1", r"unknown key data.sed; did you mean 'seed'"),
    ("train.epochs=many", r"train.epochs: expected float, got 'many'"),
    ("train.packing=1", r"train.packing: expected bool, got 1"),
    ("train.epochs", r"expected section.key=value"),
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
