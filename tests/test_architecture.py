"""The model shapes (lib.architecture): parameter counts against transformers and PEFT, the
--model-config names, and an import that loads no training stack.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from builders import REPO_ROOT
from lib.architecture import (
    QWEN2_5_3B,
    architecture_named,
    default_architecture,
    lora_parameter_count,
    lora_targets,
    parameter_counts,
    qwen2_config,
)
from lib.config import load_config
from lib.errors import UserError


def test_qwen_3b_parameters_match_transformers_and_peft():
    from peft import get_peft_model

    from lib.train import lora_config

    with torch.device("meta"):  # shapes only, no memory
        from transformers import Qwen2ForCausalLM

        model = Qwen2ForCausalLM(qwen2_config(QWEN2_5_3B))
    counts = parameter_counts(QWEN2_5_3B)
    assert counts.total == sum(p.numel() for p in model.parameters()) == 3_085_938_688
    assert counts.embedding == 151_936 * 2_048 and counts.output == 0  # tied
    lora = load_config("paper", "lora").lora
    peft_model = get_peft_model(model, lora_config(load_config("paper", "lora")))
    trainable = sum(p.numel() for p in peft_model.parameters() if p.requires_grad)
    assert lora_parameter_count(QWEN2_5_3B, lora.r, lora_targets(lora.target_modules)) == trainable == 29_933_568


def test_the_profile_chooses_the_architecture_unless_model_config_does():
    # paper trains on a GPU (the 3B model); demo on a CPU (the tiny one)
    assert default_architecture(load_config("paper", "lora"), None) is QWEN2_5_3B
    assert default_architecture(load_config("demo", "lora"), None).name == "tiny"
    assert default_architecture(load_config("demo", "lora"), "qwen2.5-3b") is QWEN2_5_3B


def test_unknown_names_are_refused_with_the_option_that_gave_them():
    with pytest.raises(UserError, match=r"^--model-config llama-7b: unknown \(known: qwen2.5-3b, tiny\)$"):
        architecture_named("llama-7b")
    with pytest.raises(UserError, match=r"^lora.target_modules: lm_head is not a Qwen2 projection"):
        lora_targets(["q_proj", "lm_head"])
    # a subset comes back in the layer's order, whatever the config's
    assert lora_targets(["v_proj", "q_proj"]) == ("q_proj", "v_proj")


def test_importing_it_loads_no_training_stack():
    code = ("import sys, lib.architecture, lib.memory, lib.plan; "
            "print(sorted({'torch', 'transformers', 'peft', 'trl'} & set(sys.modules)))")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
