"""Section "Configs": the settings of the fine-tuned runs, from each run's resolved config.json,
over all runs (\\LoraRank) and per method (\\QloraQuantisation)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from lib.io import nested_value
from lib.report.formatting import distinct_values, format_plain, method_name, path_text
from lib.report.section import Section, Table, Tabular
from lib.report.study import Study
from lib.tex import escape, format_count, format_scientific, macro_name, texttt


def format_targets(value) -> str:
    return texttt(", ".join(value) if isinstance(value, list) else value)


def format_quantisation(quantization: dict) -> str:
    if not quantization.get("load_in_4bit"):
        return "无（16 位基座）"
    kind = escape(str(quantization.get("quant_type", "")).upper())
    return f"4 位 {kind}" + (" + 双重量化" if quantization.get("double_quant") else "")


def format_batching(value) -> str:
    """train.batching as it was resolved (lib.train.batching)."""
    return {"padding_free": "无填充（样本首尾相接）", "padded": "按批内最长样本填充"}.get(value, escape(str(value)))


def batch_layout(config: dict):
    """'8 × 2 × 1': per-device batch x accumulation steps x processes = the effective batch."""
    parts = [nested_value(config, "train.per_device_batch_size"),
             nested_value(config, "resolved.gradient_accumulation_steps"), nested_value(config, "resolved.processes")]
    return None if None in parts else " × ".join(format_count(part) for part in parts)


@dataclass(frozen=True)
class Setting:
    """A row of the hyperparameter table and its macro: where it is in a resolved config."""
    name: str
    label: str
    read: Callable[[dict], object]
    format: Callable = format_plain


def config_field(dotted: str) -> Callable[[dict], object]:
    """A reader of one field of a resolved config: config_field('lora.r')(config)."""
    return lambda config: nested_value(config, dotted)


SETTINGS = (
    Setting("ModelName", "基座模型", config_field("model.name_or_path"), texttt),
    Setting("Quantisation", "基座量化", lambda c: c.get("quantization"), format_quantisation),
    Setting("Dtype", "计算精度", config_field("resolved.dtype"), texttt),
    Setting("LoraRank", "LoRA 秩 $r$", config_field("lora.r")),
    Setting("LoraAlpha", r"LoRA $\alpha$", config_field("lora.alpha")),
    Setting("LoraDropout", "LoRA dropout", config_field("lora.dropout")),
    Setting("LoraTargets", "LoRA 作用的层", config_field("lora.target_modules"), format_targets),
    Setting("LearningRate", "学习率", config_field("train.learning_rate"), format_scientific),
    Setting("LrScheduler", "学习率调度", config_field("train.lr_scheduler"), escape),
    Setting("WarmupRatio", "预热比例", config_field("train.warmup_ratio")),
    Setting("Epochs", "训练轮数", config_field("train.epochs")),
    Setting("EffectiveBatch", "有效批量", config_field("train.effective_batch_size")),
    Setting("BatchLayout", "每卡批量 × 梯度累积 × 进程数", batch_layout, str),
    Setting("MaxLength", "最大长度（token）", config_field("train.max_length")),
    Setting("Batching", "批内样本排布", config_field("resolved.batching"), format_batching),
    Setting("MaxNewTokens", "生成上限（token）", config_field("eval.max_new_tokens")),
    Setting("BootstrapSamples", "bootstrap 重采样次数", config_field("eval.bootstrap_samples")),
    Setting("TrainSeeds", "训练种子", config_field("run.seed")),
    Setting("DataSeed", "数据种子（划分与抽样）", config_field("data.seed")),
)


def data_source(config: dict) -> str | None:
    source = nested_value(config, "data.source")
    if source is None:
        return None
    if source == "hub":
        return (texttt(nested_value(config, "data.hub_repo")) + "（" + escape(nested_value(config, "data.hub_file"))
                + "）")
    if source == "synthetic":
        return "本项目生成器生成的合成数据"
    return texttt(Path(source).name)


def configs_by_method(study: Study) -> dict[str, list[dict]]:
    """The fine-tuned runs' configs per method, every method of the study (none: empty list)."""
    by_method: dict[str, list[dict]] = {method: [] for method in study.quoted_methods}
    for run in study.trained_runs():
        by_method.setdefault(nested_value(study.configs[run], "run.method") or "?", []).append(study.configs[run])
    return by_method


def config_macros(study: Study) -> dict:
    """Each setting over all runs (\\LoraRank) and per method (\\QloraQuantisation)."""
    configs = [study.configs[run] for run in study.trained_runs()]
    macros = {s.name: distinct_values([s.read(c) for c in configs], s.format) for s in SETTINGS}
    for method, method_configs in configs_by_method(study).items():
        macros |= {macro_name(method, s.name): distinct_values([s.read(c) for c in method_configs], s.format)
                   for s in SETTINGS}
    macros["DataSourceName"] = distinct_values([data_source(c) for c in configs], str)
    return macros


def hyperparameter_rows(study: Study) -> Tabular:
    by_method = {method: configs for method, configs in configs_by_method(study).items() if configs}
    methods = list(by_method)
    rows = [[setting.label,
             *(distinct_values([setting.read(c) for c in by_method[m]], setting.format) for m in methods)]
            for setting in SETTINGS]
    return Tabular("l" + " l" * len(methods), ["设置", *(method_name(m) for m in methods)], rows,
                   note="一格中有多个值（以 / 分隔）表示该方法的不同运行用了不同的值。")


SECTION = Section(
    name="Configs",
    present=lambda study: bool(study.configs),
    missing_sentence=lambda study: (f"{path_text(study.files['runs'])} 下还没有运行的 \\texttt{{config.json}}，"
                                    "超参数尚无法给出。"),
    macros=config_macros,
    files=(Table("hyperparameters", "超参数（取自各运行解析后的配置 config.json）", "tab:hyperparameters",
                 hyperparameter_rows),),
)
