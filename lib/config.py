"""Experiment configuration: YAML recipes in experiments/ layered into typed, checked dataclasses.

A run's configuration is built from these layers, later ones winning:

    experiments/base.yaml                 every setting's default, with the reason for it
    experiments/<method>.yaml             lora or qlora
    experiments/profiles/<profile>.yaml   paper (Qwen2.5-3B, real data) or demo (tiny model, CPU):
                                          only what differs from base.yaml
    experiments/variants/<name>.yaml      optional, e.g. seed-study (the seed study's settings)
    overrides                             `section.key=value` from the command line

The dataclasses below declare each setting's type and allowed values; base.yaml alone holds the
values, so a default is written once. Loading checks, in this order: every key names a declared
field (a mistyped key is an error naming the file and the key, never a silently ignored setting);
every value has the field's type; base.yaml sets every field; and, once all layers and overrides
are applied, every value lies in its declared range (`Range`, `OneOf`), so that a bad setting
stops a command before any data is read or model loaded, in one line that names the key, the
value, the layer it came from and what is allowed. The grid (methods, sizes, seeds) lives in
experiments/grid.yaml; see `load_grid`.

    python -m lib config --profile demo --method qlora --set train.epochs=1   # print a resolved config
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import math
import re
import types
import typing
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Annotated

from lib.errors import UserError
from lib.io import REPO_ROOT, shown

EXPERIMENTS_DIR = REPO_ROOT / "experiments"


# --- allowed values ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Range:
    """The numbers a setting allows. A bound is a number or the name of another field of the same
    section (max_answer_chars is at least min_answer_chars)."""

    at_least: float | str | None = None
    above: float | None = None
    at_most: float | str | None = None
    below: float | None = None

    def problem(self, value: float, section, section_name: str) -> str | None:
        """'must be ...' when `value` breaks a bound, else None."""
        def bound(limit):
            return getattr(section, limit) if isinstance(limit, str) else limit

        broken = ((self.at_least is not None and value < bound(self.at_least))
                  or (self.above is not None and value <= self.above)
                  or (self.at_most is not None and value > bound(self.at_most))
                  or (self.below is not None and value >= self.below))
        return f"must be {self.describe(section, section_name)}" if broken else None

    def describe(self, section, section_name: str) -> str:
        """'at least 0 and below 1'; a bound that is another field shows that field's value."""
        def shown_bound(limit):
            if not isinstance(limit, str):
                return shown_value(limit)
            return f"{section_name}.{limit} ({shown_value(getattr(section, limit))})"

        parts = [f"{words} {shown_bound(limit)}" for words, limit in (
            ("at least", self.at_least), ("above", self.above), ("at most", self.at_most), ("below", self.below))
            if limit is not None]
        return " and ".join(parts)


@dataclass(frozen=True)
class OneOf:
    """The words a text setting allows (each item of a list setting)."""

    choices: tuple[str, ...]

    def problem(self, value: str | list[str] | dict, section, section_name: str) -> str | None:
        items = list(value) if isinstance(value, list | dict) else [value]  # a mapping's keys
        unknown = [item for item in items if item not in self.choices]
        if not unknown:
            return None
        if not isinstance(value, dict):
            return f"must be {self.describe(section, section_name)}"
        return (f"must use only the keys {', '.join(self.choices)}: {unknown[0]!r} is not one"
                f"{_close_hint(unknown[0], self.choices)}")

    def describe(self, section, section_name: str) -> str:
        return "one of " + ", ".join(str(choice).lower() if isinstance(choice, bool) else choice
                                     for choice in self.choices)


DTYPES = ("auto", "float32", "float16", "bfloat16")  # auto: lib.model.compute_dtype picks per device
# transformers' attn_implementation names (AttentionInterface, plus the model's eager code; the tests
# keep this list equal to the installed transformers'), and auto: the fastest this machine has
# (lib.model.attention_kernel)
ATTENTION = ("auto", "eager", "sdpa", "flash_attention_2", "flash_attention_3", "flash_attention_4", "flex_attention")
# transformers' SchedulerType names that need nothing but the warmup and the step count: the
# other three (cosine_with_min_lr, cosine_warmup_with_min_lr, warmup_stable_decay) need scheduler
# arguments this configuration does not carry and would fail when training starts.
LR_SCHEDULERS = ("linear", "cosine", "cosine_with_restarts", "polynomial", "constant", "constant_with_warmup",
                 "inverse_sqrt", "reduce_lr_on_plateau", "greedy")
# transformers' reporting integrations (INTEGRATION_TO_CALLBACK) with its "all" and "none"
REPORT_TO = ("none", "all", "azure_ml", "clearml", "codecarbon", "comet_ml", "dagshub", "dvclive", "flyte",
             "kubeflow", "mlflow", "neptune", "swanlab", "tensorboard", "trackio", "wandb")

# The roles data.columns may map a file's keys to, as LLaMA-Factory's dataset_info names them
# (question and answer are this project's names for prompt and response); lib.data.sources reads
# a file through them.
QUESTION_ROLES = ("question", "prompt")
ANSWER_ROLES = ("answer", "response")
TAG_ROLES = ("role_tag", "content_tag", "user_tag", "assistant_tag", "system_tag")
COLUMN_ROLES = (*QUESTION_ROLES, "query", *ANSWER_ROLES, "history", "system", "messages", *TAG_ROLES)
MCQ_COLUMN_ROLES = ("question", "options", "answer", "source")  # eval.mcq_columns maps a file's keys to these

# --- the settings ------------------------------------------------------------------------------
# Each field: its type, its allowed values, its meaning. Its default is in experiments/base.yaml.
# A text setting is never empty; a setting that may be None (off) is checked only when set.

COUNT = Range(at_least=1)  # examples, steps, tokens, items: at least one
SHARE = Range(at_least=0, at_most=1)


@dataclass
class DataConfig:
    source: str  # "hub", "synthetic", or the path of a local file in any supported format
    hub_repo: str
    hub_file: str
    hub_revision: str
    hub_license: str  # as the dataset card states it; `make data` prints it
    raw_sample_size: Annotated[int, COUNT]  # records sampled (seeded) from the hub file into data/raw
    synthetic_size: Annotated[int, COUNT]  # raw records made by the generator when source=synthetic
    test_size: Annotated[int, COUNT]  # an empty test set would fail only after training and evaluation
    dev_size: Annotated[int, COUNT]  # the dev loss during training needs at least one example
    # splits, the train shuffle and the MCQ sample; not the training seed. numpy refuses negative seeds.
    seed: Annotated[int, Range(at_least=0)]
    system_prompt: str
    max_bad_fraction: Annotated[float, SHARE]  # a local file with more malformed lines than this is rejected
    # role -> the file's own key, for a file of another shape (lib.data.sources; make COLUMNS=); None: a known shape
    columns: Annotated[dict[str, str] | None, OneOf(COLUMN_ROLES)]


@dataclass
class CleaningConfig:
    min_question_chars: Annotated[int, Range(at_least=0)]  # 0: no lower limit (empty ones are dropped anyway)
    max_question_chars: Annotated[int, Range(at_least="min_question_chars")]
    min_answer_chars: Annotated[int, Range(at_least=0)]
    max_answer_chars: Annotated[int, Range(at_least="min_answer_chars")]
    max_example_tokens: Annotated[int | None, COUNT]  # with a tokenizer at hand; None = no token limit
    min_chinese_ratio: Annotated[float, SHARE]  # share of CJK characters among letters and CJK characters
    # Jaccard similarity of the questions' character shingles (base.yaml says why at most 0.95)
    near_duplicate_threshold: Annotated[float, Range(above=0, at_most=0.95)]
    shingle_chars: Annotated[int, COUNT]  # a question is compared as the set of its character n-grams of this length
    minhash_permutations: Annotated[int, Range(at_least=16)]


@dataclass
class ModelConfig:
    name_or_path: str  # hub id, or a local directory
    revision: str
    dtype: Annotated[str, OneOf(DTYPES)]
    attn_implementation: Annotated[str, OneOf(ATTENTION)]


@dataclass
class LoraConfig:
    r: Annotated[int, COUNT]  # the adapters' rank
    alpha: Annotated[int, Range(above=0)]  # the adapters' output is scaled by alpha / r
    dropout: Annotated[float, Range(at_least=0, below=1)]  # on the adapters' input; 1 would drop all of it
    target_modules: list[str] | str  # "all-linear" or module names such as q_proj


@dataclass
class QuantizationConfig:
    load_in_4bit: bool
    quant_type: Annotated[str, OneOf(("nf4", "fp4"))]  # bitsandbytes' two 4-bit data types
    double_quant: bool


@dataclass
class TrainConfig:
    epochs: Annotated[float, Range(above=0)]
    learning_rate: Annotated[float, Range(above=0)]
    lr_scheduler: Annotated[str, OneOf(LR_SCHEDULERS)]
    warmup_ratio: Annotated[float, Range(at_least=0, below=1)]  # share of the steps (transformers reads >= 1 as steps)
    weight_decay: Annotated[float, Range(at_least=0)]
    max_grad_norm: Annotated[float, Range(at_least=0)]  # 0 turns clipping off
    # examples per optimizer step = per_device_batch_size x accumulation x processes
    effective_batch_size: Annotated[int, COUNT]
    per_device_batch_size: Annotated[int, COUNT]
    max_length: Annotated[int, COUNT]  # tokens per example, longer ones cut (their start kept)
    pad_to_multiple_of: Annotated[int | None, COUNT]  # None pads each batch to its longest example
    batching: Annotated[str, OneOf(("auto", "padding_free", "padded"))]
    # auto: off where the memory plan fits the device without it (lib.train.gradient_checkpointing)
    gradient_checkpointing: Annotated[bool | str, OneOf((True, False, "auto"))]
    eval_steps: Annotated[int, COUNT]
    save_steps: Annotated[int, COUNT]
    logging_steps: Annotated[int, COUNT]
    report_to: Annotated[list[str] | str, OneOf(REPORT_TO)]
    require_gpu: bool  # refuse to start on a machine without a GPU (the 3B study)


@dataclass
class EvalConfig:
    backend: Annotated[str, OneOf(("auto", "transformers", "vllm"))]  # auto = vllm where it can run
    batch_size: Annotated[int, COUNT]  # examples per forward pass when scoring (test loss, MCQ)
    generation_batch_size: Annotated[int | None, COUNT]  # None: auto (lib.evaluate.generate.generation_batch_size)
    max_new_tokens: Annotated[int, COUNT]
    repetition_penalty: Annotated[float, Range(above=0)]  # 1.0: none (greedy decoding, lib.evaluate.generate)
    # a 95% percentile interval leaves 2.5% of the resamples in each tail: at least one of 40
    bootstrap_samples: Annotated[int, Range(at_least=40)]
    # The knowledge track (python -m lib mcq-data -> mcq.jsonl, see lib/data/mcq.py)
    mcq_source: str  # "hub", "synthetic", or a local file (CMB, CMExam, MedQA, CMMLU or Apollo shape)
    mcq_hub_repo: str
    mcq_hub_file: str
    mcq_hub_revision: str
    mcq_hub_license: str  # as the dataset card states it; `make data` prints it
    mcq_size: Annotated[int, COUNT]  # single-answer items sampled from the source (seeded by data.seed)
    # role -> the file's own key, for a file of other keys (lib.data.mcq; make MCQ_COLUMNS=); None: a known shape
    mcq_columns: Annotated[dict[str, str] | None, OneOf(MCQ_COLUMN_ROLES)]
    # The general-ability track (python -m lib mcq-data --track general -> general.jsonl): the same
    # reading, but from a zip of one file per subject on the hub (CMMLU), or generated facts
    general_source: str  # "hub", "synthetic", or a local multiple-choice file (make GENERAL_SOURCE=)
    general_hub_repo: str
    general_hub_file: str  # a zip
    general_hub_revision: str
    general_hub_license: str
    general_hub_member: str  # the zip's file of one subject, "{subject}" in its name
    general_subjects: list[str]  # the subjects read (none of them medical)
    general_size: Annotated[int, COUNT]
    judge: bool  # LLM judge through an OpenAI-compatible endpoint (lib/evaluate/judge.py)
    judge_concurrency: Annotated[int, COUNT]  # judge requests in flight at once


@dataclass
class Config:
    data: DataConfig
    cleaning: CleaningConfig
    model: ModelConfig
    lora: LoraConfig
    quantization: QuantizationConfig
    train: TrainConfig
    eval: EvalConfig

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


SECTIONS: dict[str, type] = typing.get_type_hints(Config)  # {"data": DataConfig, ...}


@functools.cache
def declared_fields(section_type: type) -> dict[str, tuple[type, tuple]]:
    """{field: (type, allowed-value rules)} of a section: `Annotated[int, COUNT]` -> (int, (COUNT,))."""
    hints = typing.get_type_hints(section_type, include_extras=True)
    return {name: (typing.get_type_hints(section_type)[name], getattr(hint, "__metadata__", ()))
            for name, hint in hints.items()}


# --- loading -----------------------------------------------------------------------------------


def recipe_files(profile: str, method: str | None = None, variants: tuple[str, ...] = ()) -> list[Path]:
    """The YAML files of one configuration, in the order they are applied: base.yaml first."""
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


class Layers:
    """The values of the layers applied so far, and for each key the layer that set it last."""

    def __init__(self):
        self.values: dict[str, dict] = {section: {} for section in SECTIONS}
        self.origins: dict[str, str] = {}  # "data.test_size" -> "experiments/profiles/demo.yaml" or "override"

    def apply(self, mapping: dict, origin: str) -> None:
        """Set fields from a {section: {key: value}} mapping, checking names and types."""
        for section_name, settings in mapping.items():
            if section_name not in SECTIONS:
                raise UserError(f"{origin}: unknown section {section_name!r}{_suggest(section_name, list(SECTIONS))}")
            if not isinstance(settings, dict):
                raise UserError(f"{origin}: section {section_name!r} must be a mapping of keys")
            fields = declared_fields(SECTIONS[section_name])
            for key, value in settings.items():
                if key not in fields:
                    raise UserError(f"{origin}: unknown key {section_name}.{key}{_suggest(key, list(fields))}")
                self.values[section_name][key] = _coerce(value, fields[key][0], f"{origin}: {section_name}.{key}")
                self.origins[f"{section_name}.{key}"] = origin

    def require_every_field(self, origin: str) -> None:
        """base.yaml holds the default of every setting: one it leaves out is named here."""
        missing = [f"{section}.{name}" for section, section_type in SECTIONS.items()
                   for name in declared_fields(section_type) if name not in self.values[section]]
        if missing:
            raise UserError(f"{origin}: no value for {', '.join(missing)} (this file holds the default of every "
                            "setting; null turns an optional one off)")

    def config(self) -> Config:
        return Config(**{name: section_type(**self.values[name]) for name, section_type in SECTIONS.items()})


def load_config(
    profile: str,
    method: str | None = None,
    variants: tuple[str, ...] = (),
    overrides: list[str] | tuple[str, ...] = (),
) -> Config:
    """Build a Config from the recipe files and `section.key=value` overrides, and check it."""
    base, *others = recipe_files(profile, method, variants)
    layers = Layers()
    layers.apply(read_yaml(base), origin=shown(base))
    layers.require_every_field(origin=shown(base))
    for path in others:
        layers.apply(read_yaml(path), origin=shown(path))
    for override in overrides:
        key, sep, value = override.partition("=")
        section, dot, name = key.strip().partition(".")
        if not sep or not dot:
            raise UserError(f"override {override!r}: expected section.key=value")
        layers.apply({section: {name: parse_yaml_value(value, override)}}, origin="override")
    config = layers.config()
    check_values(config, layers.origins)
    return config


def check_values(config: Config, origins: dict[str, str]) -> None:
    """Every setting against its declared Range or OneOf, and no empty text: one line per problem."""
    problems = []
    for section_name, section_type in SECTIONS.items():
        section = getattr(config, section_name)
        for name, (_, rules) in declared_fields(section_type).items():
            value = getattr(section, name)
            if value is None:
                continue  # an optional setting that is off
            found = ["must not be empty"] if is_empty(value) else []
            found += [problem for rule in rules if (problem := rule.problem(value, section, section_name))]
            if found:
                key = f"{section_name}.{name}"
                problems.append(f"{origins[key]}: {key}={shown_value(value)}: {found[0]}")
    if len(problems) == 1:
        raise UserError(problems[0])
    if problems:
        raise UserError(f"{len(problems)} settings are not allowed:\n  " + "\n  ".join(problems))


def is_empty(value) -> bool:
    """Blank text, an empty list or mapping, or one with a blank item."""
    if isinstance(value, str):
        return not value.strip()
    if isinstance(value, dict):
        return not value or any(not str(item).strip() for item in value.values())
    return isinstance(value, list) and (not value or any(not item.strip() for item in value))


def shown_value(value) -> str:
    """A value as a user would type it: -1 for -1.0, 0.0002 for 2e-4, 'text' quoted."""
    if isinstance(value, float):
        return f"{value:g}"
    return repr(value) if isinstance(value, str) else str(value)


def read_yaml(path: Path) -> dict:
    import yaml  # here, so that the Makefile's check of its variables runs before `make setup` installs it

    try:
        content = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as err:
        raise UserError(f"{shown(path)}: not valid YAML ({err})".replace("\n", " ")) from None
    if not isinstance(content, dict):
        raise UserError(f"{shown(path)}: expected a mapping of sections at the top level")
    return content


def parse_yaml_value(value: str, override: str):
    import yaml

    try:
        return yaml.safe_load(value)
    except yaml.YAMLError:
        raise UserError(f"override {override!r}: the value is not valid YAML") from None


def _suggest(name: str, known: list[str]) -> str:
    return f"{_close_hint(name, known)} (known: {', '.join(known)})"


def _close_hint(name: str, known) -> str:
    close = difflib.get_close_matches(name, list(known), n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


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
    if isinstance(value, str) and any(typing.get_origin(option) is list for option in options):
        return [item for item in re.split(r"[,\s]+", value.strip()) if item]  # the command line's "a,b c"
    wanted = " or ".join("a mapping (key=value,key=value)" if typing.get_origin(o) is dict
                         else getattr(o, "__name__", str(o)) for o in options if o is not type(None))
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
            number = float(value)  # YAML 1.1 reads 1e-4 as a string: accept it here
        except (TypeError, ValueError):
            return _FAILED
        return number if math.isfinite(number) else _FAILED  # nan would pass every range check
    if option is str:
        return value if isinstance(value, str) else _FAILED
    if typing.get_origin(option) is list:
        return [str(v) for v in value] if isinstance(value, list) else _FAILED
    if typing.get_origin(option) is dict:
        return _mapping(value)
    return _FAILED


def _mapping(value):
    """A mapping from YAML, or from the command line's "key=value,key=value" (spaces separate too)."""
    if isinstance(value, dict):
        return {str(key): str(item) for key, item in value.items()}
    if not isinstance(value, str):
        return _FAILED
    pairs = [pair.partition("=") for pair in re.split(r"[,\s]+", value.strip()) if pair]
    if not all(sep for _, sep, _ in pairs):
        return _FAILED
    return {key: item for key, _, item in pairs}


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


# The grids of experiments/grid.yaml (make GRID=): the default sizes, or those and the `extended` ones.
GRIDS = ("default", "extended")


def load_grid(profile: str, grid_name: str = "default") -> Grid:
    """The study grid of a profile from experiments/grid.yaml (the Makefile reads the same file); the
    extended grid adds the profile's `extended` sizes, smallest size first."""
    if grid_name not in GRIDS:
        raise UserError(f"grid {grid_name!r}: expected {' or '.join(GRIDS)}")
    path = EXPERIMENTS_DIR / "grid.yaml"
    grid = read_yaml(path)
    for key, kind in (("methods", list), ("seeds", list), ("sizes", dict), ("extended", dict)):
        if not isinstance(grid.get(key), kind) or not grid[key]:
            raise UserError(f"{shown(path)}: `{key}` must be a non-empty {'list' if kind is list else 'mapping'}")
    if profile not in grid["sizes"]:
        raise UserError(f"{shown(path)}: no sizes for profile {profile!r} (profiles: {', '.join(grid['sizes'])})")
    if not all(isinstance(seed, int) for seed in grid["seeds"]):
        raise UserError(f"{shown(path)}: seeds must be whole numbers, got {grid['seeds']}")
    sizes = [str(s) for s in grid["sizes"][profile]]
    if grid_name == "extended":
        if not grid["extended"].get(profile):
            raise UserError(f"{shown(path)}: no extended sizes for profile {profile!r} "
                            f"(profiles: {', '.join(grid['extended'])})")
        sizes = [str(s) for s in grid["extended"][profile]] + sizes
    for size in sizes:
        parse_count(size)
    return Grid(methods=tuple(str(m) for m in grid["methods"]), sizes=tuple(sorted(sizes, key=parse_count)),
                seeds=tuple(grid["seeds"]))


def grid_of_sizes(profile: str, examples: list[int]) -> str | None:
    """Which grid of experiments/grid.yaml has exactly these sizes (in examples), or None: the
    report names the grid a fit comes from."""
    return next((name for name in GRIDS
                 if sorted(examples) == sorted(parse_count(size) for size in load_grid(profile, name).sizes)), None)


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
# The untuned model quantised to NF4 as a 4-bit method (QLoRA) loads it, evaluated with that
# method's config and no adapter: its 0-data row, so that its gain over it leaves out what
# quantising costs.
NF4_BASE_RUN = "base-nf4"
UNTUNED_RUNS = (BASE_RUN, NF4_BASE_RUN)  # rows of method BASE_RUN, told apart by their run name
METHOD_NAMES = {"lora": "LoRA", "qlora": "QLoRA"}


def loads_in_4bit(method: str) -> bool:
    """Whether a method's recipe, experiments/<method>.yaml over base.yaml, loads the base in 4-bit
    (quantization.load_in_4bit). The Makefile reads the same key of the same file (four_bit)."""
    layers = Layers()
    for path in (EXPERIMENTS_DIR / "base.yaml", EXPERIMENTS_DIR / f"{method}.yaml"):
        layers.apply(read_yaml(path), origin=shown(path))
    return layers.values["quantization"]["load_in_4bit"]


def zero_data_run(method: str) -> str:
    """The untuned row a method starts from, the base model as the method loads it: base-nf4 for a
    method whose recipe loads the base in 4-bit, else base (also for a run found beyond the grid
    whose method has no recipe)."""
    if not (EXPERIMENTS_DIR / f"{method}.yaml").is_file():
        return BASE_RUN
    return NF4_BASE_RUN if loads_in_4bit(method) else BASE_RUN


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
