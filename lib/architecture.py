"""The shapes of the models the study trains, and their parameters counted from the shape alone.

No command of its own: `--model-config` of these two commands names one of its records,

    python -m lib plan --profile paper --model-config qwen2.5-3b      (lib.plan)
    python -m lib bench-gpu --out results/bench --model-config tiny    (lib.bench.gpu)

It holds

    Architecture          the fields of a Qwen2 config that memory and speed depend on
    QWEN2_5_3B            the study's model; TINY: the demo's (ARCHITECTURES: both, by --model-config
                          name)
    qwen2_config          an Architecture as transformers' Qwen2Config (to build a random-init model)
    parameter_counts      embedding, output layer, projections, biases and norms, from the shape
    lora_parameter_count  what LoRA trains at rank r on the given projections

It imports neither torch nor transformers (qwen2_config loads transformers when it is called):
the memory plan of the 3B model needs neither.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from lib.config import Config
from lib.errors import UserError

# --- the architectures ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Architecture:
    """The shape of a Qwen2 decoder: all that memory and speed depend on."""
    name: str
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    max_position_embeddings: int
    tie_word_embeddings: bool
    rope_theta: float
    rms_norm_eps: float

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    @property
    def kv_size(self) -> int:
        """Width of the key (and of the value) projection: grouped-query attention shares heads."""
        return self.num_key_value_heads * self.head_dim


# config.json of Qwen/Qwen2.5-3B-Instruct on the Hugging Face hub
# (https://huggingface.co/Qwen/Qwen2.5-3B-Instruct/blob/main/config.json): 3.09B parameters.
QWEN2_5_3B = Architecture(
    name="qwen2.5-3b",
    vocab_size=151_936,
    hidden_size=2_048,
    intermediate_size=11_008,
    num_hidden_layers=36,
    num_attention_heads=16,
    num_key_value_heads=2,
    max_position_embeddings=32_768,
    tie_word_embeddings=True,
    rope_theta=1_000_000.0,
    rms_norm_eps=1e-6,
)


# The demo's tiny Qwen2 (lib.tiny_model builds and pretrains it at this shape), with Qwen2Config's
# defaults for what it leaves unset (rope_theta, rms_norm_eps). Its 2,500 tokens, of at most two
# Chinese characters, are about all that BPE finds in the demo's text.
TINY = Architecture(name="tiny", vocab_size=2_500, hidden_size=128, intermediate_size=384, num_hidden_layers=4,
                    num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2_048,
                    tie_word_embeddings=True, rope_theta=10_000.0, rms_norm_eps=1e-6)


def architecture_of(model_config) -> Architecture:
    """The shape of a loaded (or on-disk) model from its transformers config."""
    rope = getattr(model_config, "rope_parameters", None) or {}
    return Architecture(
        name=model_config.model_type, vocab_size=model_config.vocab_size, hidden_size=model_config.hidden_size,
        intermediate_size=model_config.intermediate_size, num_hidden_layers=model_config.num_hidden_layers,
        num_attention_heads=model_config.num_attention_heads, num_key_value_heads=model_config.num_key_value_heads,
        max_position_embeddings=model_config.max_position_embeddings,
        tie_word_embeddings=model_config.tie_word_embeddings,
        rope_theta=rope.get("rope_theta", getattr(model_config, "rope_theta", 10_000.0)),
        rms_norm_eps=model_config.rms_norm_eps,
    )


# The values of --model-config.
ARCHITECTURES = {"qwen2.5-3b": QWEN2_5_3B, "tiny": TINY}


def architecture_named(name: str) -> Architecture:
    if name not in ARCHITECTURES:
        raise UserError(f"--model-config {name}: unknown (known: {', '.join(ARCHITECTURES)})")
    return ARCHITECTURES[name]


def default_architecture(config: Config, name: str | None) -> Architecture:
    """--model-config, else the profile's own: the 3B model where it trains on a GPU, else the tiny one."""
    return architecture_named(name or ("qwen2.5-3b" if config.train.require_gpu else "tiny"))


def qwen2_config(arch: Architecture):
    """transformers' Qwen2Config of `arch`, with pad id 0: the id bench-gpu's placeholder tokenizer pads with."""
    from transformers import Qwen2Config

    shape = {name: value for name, value in asdict(arch).items() if name != "name"}
    return Qwen2Config(**shape, pad_token_id=0)


# --- parameters ------------------------------------------------------------------------------------

LINEAR_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def linear_shapes(arch: Architecture) -> dict[str, tuple[int, int]]:
    """(in_features, out_features) of each projection of one decoder layer."""
    h, kv, inter = arch.hidden_size, arch.kv_size, arch.intermediate_size
    return {"q_proj": (h, h), "k_proj": (h, kv), "v_proj": (h, kv), "o_proj": (h, h),
            "gate_proj": (h, inter), "up_proj": (h, inter), "down_proj": (inter, h)}


@dataclass(frozen=True)
class ParameterCounts:
    embedding: int  # vocab x hidden; also the output layer when the two are tied
    output: int  # a separate output layer (0 when tied)
    linear: int  # the seven projections of every layer: what QLoRA quantises
    small: int  # q/k/v biases and RMSNorm weights

    @property
    def total(self) -> int:
        return self.embedding + self.output + self.linear + self.small


def parameter_counts(arch: Architecture) -> ParameterCounts:
    """Qwen2.5-3B: embedding 151,936 x 2,048 = 311.2M; per layer 77.07M in the projections
    + 2,560 q/k/v biases + 4,096 norm weights; x 36 layers + final norm = 3,085.9M."""
    h, layers = arch.hidden_size, arch.num_hidden_layers
    embedding = arch.vocab_size * h
    per_layer_linear = sum(i * o for i, o in linear_shapes(arch).values())
    per_layer_small = (h + 2 * arch.kv_size) + 2 * h  # q, k, v biases; two RMSNorms
    return ParameterCounts(
        embedding=embedding,
        output=0 if arch.tie_word_embeddings else embedding,
        linear=layers * per_layer_linear,
        small=layers * per_layer_small + h,  # + the final RMSNorm
    )


def lora_targets(target_modules: list[str] | str) -> tuple[str, ...]:
    """The projections LoRA adapts: PEFT's "all-linear" is every one but the output layer."""
    if target_modules == "all-linear":
        return LINEAR_MODULES
    names = [target_modules] if isinstance(target_modules, str) else list(target_modules)
    unknown = [name for name in names if name not in LINEAR_MODULES]
    if unknown:
        raise UserError(f"lora.target_modules: {', '.join(unknown)} is not a Qwen2 projection "
                        f"(known: {', '.join(LINEAR_MODULES)}, or all-linear)")
    return tuple(name for name in LINEAR_MODULES if name in names)


def lora_parameter_count(arch: Architecture, r: int, targets: tuple[str, ...]) -> int:
    """A (r x in) + B (out x r) per adapted projection: Qwen2.5-3B, r=16, all-linear =
    36 x 16 x (4,096 + 2,304 + 2,304 + 4,096 + 3 x 13,056) = 29.93M."""
    shapes = linear_shapes(arch)
    return arch.num_hidden_layers * sum(r * (shapes[name][0] + shapes[name][1]) for name in targets)
