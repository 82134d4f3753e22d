"""Experiment configuration: YAML recipes in experiments/ layered into typed dataclasses.

A run's configuration is built from these layers, later ones winning:

    experiments/base.yaml                 shared defaults of the study
    experiments/<method>.yaml             lora or qlora
    experiments/profiles/<profile>.yaml   paper (Qwen2.5-3B, real data) or demo (tiny model, CPU)
    experiments/variants/<name>.yaml      optional, e.g. seed-study (the seed study's settings)
    overrides                             `section.key=value` from the command line

Every key is checked against the dataclasses below: a mistyped key is an error that names the
file and the key, never a silently ignored setting. The grid (methods, sizes, seeds) lives in
experiments/grid.yaml; see `load_grid`.

    python -m lib config --profile demo --method qlora --set train.epochs=1   # print a resolved config
"""

from __future__ import annotations

import dataclasses
import difflib
from decimal import Decimal
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from lib.errors import UserError
from lib.io import REPO_ROOT, shown

EXPERIMENTS_DIR = REPO_ROOT / "experiments"


@dataclass
class DataConfig:
    source: str = "hub"  # "hub", "synthetic", or the path of a local file in any supported format
    hub_repo: str = "shibing624/medical"
    hub_file: str = "finetune/train_zh_0.json"
    hub_revision: str = "main"
    raw_sample_size: int = 100_000  # records sampled (seeded) from the hub file into data/raw
    synthetic_size: int = 8_000  # raw records made by the generator when source=synthetic
    test_size: int = 1_000
    dev_size: int = 500
    seed: int = 42  # splits and the train shuffle; independent of the training seed
    system_prompt: str = "你是一名专业、严谨的医学助手。请根据用户描述给出准确、清晰、有帮助的回答，必要时建议就医。"
    max_bad_fraction: float = 0.01  # a local file with more malformed lines than this is rejected


@dataclass
class CleaningConfig:
    min_question_chars: int = 4
    max_question_chars: int = 500
    min_answer_chars: int = 5  # "心源性肝硬化。" (7) answers; "多喝水。" (4) says nothing to learn
    max_answer_chars: int = 2_000
    max_example_tokens: int | None = None  # with a tokenizer at hand; None = no token limit
    min_chinese_ratio: float = 0.3  # share of CJK characters among letters and CJK characters
    near_duplicate_threshold: float = 0.8  # Jaccard similarity of the questions' character shingles
    shingle_chars: int = 3  # a question is compared as the set of its character n-grams of this length
    minhash_permutations: int = 128


@dataclass
class ModelConfig:
    name_or_path: str = "Qwen/Qwen2.5-3B-Instruct"  # hub id, or a local directory
    revision: str = "main"
    dtype: str = "auto"  # auto = bfloat16 where the GPU has it, float16 on older GPUs, float32 on CPU
    attn_implementation: str = "sdpa"


@dataclass
class LoraConfig:
    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    target_modules: list[str] | str = "all-linear"


@dataclass
class QuantizationConfig:
    load_in_4bit: bool = False
    quant_type: str = "nf4"
    double_quant: bool = True


@dataclass
class TrainConfig:
    epochs: float = 2.0
    learning_rate: float = 2e-4
    lr_scheduler: str = "cosine"
    warmup_ratio: float = 0.03
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    effective_batch_size: int = 16  # per_device_batch_size x accumulation x processes
    per_device_batch_size: int = 8
    max_length: int = 1024
    # None pads each batch to its longest example; the seed study padded every example to 512
    # (make bench-collation measures what that costs)
    pad_to_multiple_of: int | None = None
    packing: bool = False
    gradient_checkpointing: bool = True
    eval_steps: int = 200
    save_steps: int = 200
    logging_steps: int = 10
    report_to: list[str] | str = "tensorboard"
    require_gpu: bool = True  # refuse to start on a machine without a GPU (the 3B study)


@dataclass
class EvalConfig:
    backend: str = "auto"  # auto = vllm where installed and a GPU is present, else transformers
    batch_size: int = 16
    max_new_tokens: int = 512
    bootstrap_samples: int = 1_000
    # The knowledge track (python -m lib mcq-data -> mcq.jsonl, see lib/data/mcq.py)
    mcq_source: str = "hub"  # "hub", "synthetic", or a local file (CMB, CMExam, MedQA, CMMLU or Apollo shape)
    mcq_hub_repo: str = "FreedomIntelligence/CMB"
    mcq_hub_file: str = "CMB-Exam/CMB-train/CMB-train-merge.json"
    mcq_hub_revision: str = "main"
    mcq_size: int = 1_000  # single-answer items sampled from the source (seeded by data.seed)
    judge: bool = False  # LLM judge through an OpenAI-compatible endpoint (lib/evaluate/judge.py)
    judge_concurrency: int = 4  # judge requests in flight at once


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    cleaning: CleaningConfig = field(default_factory=CleaningConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    lora: LoraConfig = field(default_factory=LoraConfig)
    quantization: QuantizationConfig = field(default_factory=QuantizationConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


# --- loading -----------------------------------------------------------------------------------


def recipe_files(profile: str, method: str | None = None, variants: tuple[str, ...] = ()) -> list[Path]:
    """The YAML files of one configuration, in the order they are applied."""
    files = [EXPERIMENTS_DIR / "base.yaml"]
    if method is not None:
        files.append(EXPERIMENTS_DIR / f"{method}.yaml")
    files.append(EXPERIMENTS_DIR / "profiles" / f"{profile}.yaml")
    files += [EXPERIMENTS_DIR / "variants" / f"{name}.yaml" for name in variants]
    for path in files:
        if not path.is_file():
            known = sorted(p.stem for p in path.parent.glob("*.yaml"))
            raise UserError(f"{shown(path)}: no such recipe (those in {shown(path.parent)}/: {', '.join(known)})")
    return files



def load_config(
    profile: str,
    method: str | None = None,
    variants: tuple[str, ...] = (),
    overrides: list[str] | tuple[str, ...] = (),
) -> Config:
    """Build a Config from the recipe files and `section.key=value` overrides."""
    config = Config()
    for path in recipe_files(profile, method, variants):
        apply_mapping(config, read_yaml(path), origin=shown(path))
    for override in overrides:
        key, sep, value = override.partition("=")
        section, dot, name = key.strip().partition(".")
        if not sep or not dot:
            raise UserError(f"override {override!r}: expected section.key=value")
        apply_mapping(config, {section: {name: yaml.safe_load(value)}}, origin="override")
    return config


def read_yaml(path: Path) -> dict:
    try:
        content = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as err:
        raise UserError(f"{shown(path)}: not valid YAML ({err})".replace("\n", " ")) from None
    if not isinstance(content, dict):
        raise UserError(f"{shown(path)}: expected a mapping of sections at the top level")
    return content


def apply_mapping(config: Config, mapping: dict, origin: str) -> None:
    """Set config fields from a {section: {key: value}} mapping, checking names and types."""
    for section_name, values in mapping.items():
        section = getattr(config, section_name, None) if section_name in _field_names(config) else None
        if section is None:
            raise UserError(f"{origin}: unknown section {section_name!r}{_suggest(section_name, _field_names(config))}")
        if not isinstance(values, dict):
            raise UserError(f"{origin}: section {section_name!r} must be a mapping of keys")
        hints = typing.get_type_hints(type(section))
        for key, value in values.items():
            if key not in hints:
                raise UserError(
                    f"{origin}: unknown key {section_name}.{key}{_suggest(key, _field_names(section))}"
                )
            setattr(section, key, _coerce(value, hints[key], f"{origin}: {section_name}.{key}"))


def _field_names(obj) -> list[str]:
    return [f.name for f in dataclasses.fields(obj)]


def _suggest(name: str, known: list[str]) -> str:
    close = difflib.get_close_matches(name, known, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"{hint} (known: {', '.join(known)})"


def _coerce(value, annotation, where: str):
    """Convert a YAML value to the field's declared type, or raise a UserError naming the key."""
    options = typing.get_args(annotation) if isinstance(annotation, types.UnionType) else (annotation,)
    if value is None:
        if type(None) in options:
            return None
        raise UserError(f"{where}: a value is required")
    for option in options:
        converted = _try_convert(value, option)
        if converted is not _FAILED:
            return converted
    wanted = " or ".join(getattr(o, "__name__", str(o)) for o in options if o is not type(None))
    raise UserError(f"{where}: expected {wanted}, got {value!r}")


_FAILED = object()


def _try_convert(value, option):
    if option is bool:
        return value if isinstance(value, bool) else _FAILED
    if option is int:
        if isinstance(value, bool):
            return _FAILED
        if isinstance(value, int):
            return value
        # "10k" style counts are accepted where an int is expected
        return parse_count(value) if isinstance(value, str) and _COUNT.fullmatch(value.strip()) else _FAILED
    if option is float:
        if isinstance(value, bool):
            return _FAILED
        try:
            return float(value)  # YAML 1.1 reads 1e-4 as a string: accept it here
        except (TypeError, ValueError):
            return _FAILED
    if option is str:
        return value if isinstance(value, str) else _FAILED
    if typing.get_origin(option) is list:
        return [str(v) for v in value] if isinstance(value, list) else _FAILED
    return _FAILED


# --- sizes and the grid ------------------------------------------------------------------------

_COUNT = re.compile(r"(\d+(?:\.\d+)?)([kKmM]?)")


def parse_count(label: str) -> int:
    """'10k' -> 10000, '1.5k' -> 1500, '2M' -> 2000000, '300' -> 300: the true number of examples."""
    match = _COUNT.fullmatch(str(label).strip())
    if not match:
        raise UserError(f"size {label!r}: expected a count such as 300, 10k or 1.5k")
    number, suffix = match.groups()
    scale = {"": 1, "k": 1_000, "m": 1_000_000}[suffix.lower()]
    count = Decimal(number) * scale  # exact: 2.01k is 2010 (in floats 2.01 * 1000 is not whole)
    if count != int(count) or count <= 0:
        raise UserError(f"size {label!r}: not a positive whole number of examples")
    return int(count)


@dataclass(frozen=True)
class Grid:
    methods: tuple[str, ...]
    sizes: tuple[str, ...]
    seeds: tuple[int, ...]

    @property
    def default_seed(self) -> int:
        return self.seeds[0]


def load_grid(profile: str) -> Grid:
    """The study grid of a profile from experiments/grid.yaml (the Makefile reads the same file)."""
    path = EXPERIMENTS_DIR / "grid.yaml"
    grid = read_yaml(path)
    for key, kind in (("methods", list), ("seeds", list), ("sizes", dict)):
        if not isinstance(grid.get(key), kind) or not grid[key]:
            raise UserError(f"{shown(path)}: `{key}` must be a non-empty {'list' if kind is list else 'mapping'}")
    if profile not in grid["sizes"]:
        raise UserError(f"{shown(path)}: no sizes for profile {profile!r} (profiles: {', '.join(grid['sizes'])})")
    if not all(isinstance(seed, int) for seed in grid["seeds"]):
        raise UserError(f"{shown(path)}: seeds must be whole numbers, got {grid['seeds']}")
    sizes = tuple(str(s) for s in grid["sizes"][profile])
    for size in sizes:
        parse_count(size)
    return Grid(methods=tuple(str(m) for m in grid["methods"]), sizes=sizes, seeds=tuple(grid["seeds"]))


def requested_grid(profile: str, methods=None, sizes=None, seeds=None) -> tuple[Grid, int]:
    """The profile's grid narrowed to the methods, sizes and seeds asked for (empty = all), and
    the study's default seed, which stays grid.yaml's first seed whatever seeds are asked for:
    the Makefile names runs by it."""
    grid = load_grid(profile)
    for size in sizes or ():
        parse_count(size)  # a bad size label is an error here, naming it
    chosen = Grid(methods=tuple(methods or grid.methods), sizes=tuple(sizes or grid.sizes),
                  seeds=tuple(int(s) for s in seeds or grid.seeds))
    return chosen, grid.default_seed


BASE_RUN = "base"  # the untuned model's row: evaluated like a run, trained on 0 examples
METHOD_NAMES = {"lora": "LoRA", "qlora": "QLoRA"}


def run_name(method: str, size: str, seed: int, default_seed: int) -> str:
    """Directory name of a run: lora-10k for the grid's default seed, lora-10k-s7 for seed 7."""
    return f"{method}-{size}" if seed == default_seed else f"{method}-{size}-s{seed}"


def parse_run_name(name: str, default_seed: int) -> tuple[str, str, int]:
    """Inverse of run_name: 'qlora-10k-s7' -> ('qlora', '10k', 7)."""
    match = re.fullmatch(r"([a-z0-9_]+)-(\d+(?:\.\d+)?[kKmM]?)(?:-s(\d+))?", name)
    if not match:
        raise UserError(f"run {name!r}: expected <method>-<size>[-s<seed>], e.g. qlora-60k")
    method, size, seed = match.groups()
    return method, size, int(seed) if seed else default_seed
