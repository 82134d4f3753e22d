"""The generated part of the LaTeX report: every quoted number as a macro, every table, and
what is still missing.

    python -m lib report --results results/demo --runs results/demo/runs \\
        --data data/processed/demo --profile demo --out paper/generated/demo \\
        [--methods lora qlora --sizes 150 300 --seeds 42]

Reads what the earlier stages wrote (the schemas are in the `summarize` docstring of
lib/analysis.py): summary.csv, scaling.json and examples.json from --results; every run's
config.json, train_metrics.json and eval.json from --runs; cleaning_report.json and
manifest.json from --data. The grid it expects (what a missing run is) is the profile's
(experiments/grid.yaml) narrowed by --methods/--sizes/--seeds, as `summarize` was given them.
Writes into --out:

    macros.tex      \\newcommand macros for every number paper/report.tex quotes
    status.tex      \\ifHave<Section> switches, and what is missing in words
    tables/*.tex    cleaning, splits, hyperparameters, results, scaling, lora_vs_qlora, cost,
                    knowledge, examples, reproducibility
    report.done     written last: the provenance of this step

Absent inputs never stop it: a partial study gives a partial report that names what is
missing (from summary.csv's status column and the files not found), and every table and
macro exists whatever is missing, so the paper always compiles. Then build the PDF with
`python -m lib paper` (lib/paper.py).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path

from lib.analysis import FIT_PARAMETERS, TREND_METRICS, read_summary_rows
from lib.cli import add_grid_arguments
from lib.config import BASE_RUN, METHOD_NAMES, Grid, parse_count, requested_grid, run_name
from lib.io import atomic_write, provenance, read_json, shown, write_json
from lib.stats import CONFIDENCE
from lib.tex import (
    MISSING, escape, format_count, format_number, format_p_value, format_scientific, format_significant, macro,
    macro_name, missing_table, table, texttt, truncate, value_with_interval,
)

BASE_NAME = "基座模型"  # the untuned model where a method's name goes
STATUS_WORDS = {"missing": "尚未开始", "training": "训练未完成", "not_evaluated": "已训练、未评测"}
# The examples section shows whole short answers and the start of long ones: about five lines
# of a page at ~40 Chinese characters a line for an answer, three for a question.
EXAMPLE_QUESTION_CHARS = 120
EXAMPLE_ANSWER_CHARS = 200
METRICS_PER_TABLE = 7  # value-over-interval cells of ~1.8 cm: 7 of them and the run labels fill a line
SOURCES_PER_TABLE = 5
CONFIDENCE_PERCENT = format_number(100 * CONFIDENCE, 0)  # '95'
CONFIDENCE_TEXT = CONFIDENCE_PERCENT + r"\%"  # '95\%' for captions


def fixed(decimals: int) -> Callable:
    return lambda value: format_number(value, decimals)


def scaled(divisor: float, format_value: Callable) -> Callable:
    """Format value / divisor: seconds as minutes, parameters in millions."""
    return lambda value: format_value(None if value is None else value / divisor)


@dataclass(frozen=True)
class Column:
    """A number of summary.csv: its column, table header, macro name and format."""
    key: str
    header: str
    format: Callable
    name: str = ""

    @property
    def macro(self) -> str:
        return self.name or macro_name(self.key)


# Evaluation metrics in the order of lib/analysis.py; units as in the schema (ROUGE and BLEU
# 0-100, rates and accuracy in percent, loss in nats per reference token).
METRICS = (
    Column("test_loss", "测试损失", fixed(3)),
    Column("perplexity", "困惑度", fixed(2)),
    Column("rouge1", "ROUGE-1", fixed(1)),
    Column("rouge2", "ROUGE-2", fixed(1)),
    Column("rougeL", "ROUGE-L", fixed(1)),
    Column("bleu4_char", "BLEU-4（字）", fixed(1)),
    Column("bleu4_word", "BLEU-4（词）", fixed(1)),
    Column("distinct1", "Distinct-1", fixed(1)),
    Column("distinct2", "Distinct-2", fixed(1)),
    Column("answer_chars", "答案长度（字）", fixed(0)),
    Column("empty_rate", r"空答案（\%）", fixed(1)),
    Column("truncated_rate", r"截断（\%）", fixed(1)),
    Column("mcq_accuracy", r"选择题准确率（\%）", fixed(1)),
)
COSTS = (
    Column("wall_time_s", "训练时长（分钟）", scaled(60, fixed(1)), "WallTimeMinutes"),
    Column("steps", "步数", format_count, "Steps"),
    Column("train_tokens", "训练 token（百万）", scaled(1e6, fixed(2)), "TrainTokensMillions"),
    Column("tokens_per_s", "token/秒", format_count, "TokensPerSecond"),
    Column("peak_memory_gb", "峰值内存（GB）", fixed(1), "PeakMemory"),
    Column("trainable_params", "可训练参数（百万）", scaled(1e6, format_significant), "TrainableParamsMillions"),
    Column("total_params", "总参数（百万）", scaled(1e6, format_significant), "TotalParamsMillions"),
    Column("final_train_loss", "最终训练损失", fixed(3), "FinalTrainLoss"),
    Column("best_dev_loss", "最佳验证损失", fixed(3), "BestDevLoss"),
)
MFU = Column("mfu", r"MFU（\%）", scaled(0.01, fixed(1)), "Mfu")  # train_metrics.json: a fraction, or null on CPU
INTERVAL_SUFFIXES = (("", ""), ("_ci_low", "Low"), ("_ci_high", "High"))


# --- reading the inputs -------------------------------------------------------------------------


@dataclass
class Study:
    """Everything the report reads; None (or empty) where an input is absent."""
    profile: str
    files: dict[str, Path]  # input name -> path, for the messages about missing inputs
    grid: Grid  # the grid asked for, and the methods summary.csv has beyond it
    default_seed: int  # runs of this seed are named without -s<seed>
    rows: list[dict] | None = None  # summary.csv, numbers parsed
    metrics: list[Column] = field(default_factory=list)  # metric columns of summary.csv
    scaling: dict | None = None
    examples: dict | None = None
    cleaning: dict | None = None
    manifest: dict | None = None
    configs: dict[str, dict] = field(default_factory=dict)  # run -> config.json
    train_metrics: dict[str, dict] = field(default_factory=dict)  # run -> train_metrics.json
    evals: dict[str, dict] = field(default_factory=dict)  # run -> eval.json

    @property
    def methods(self) -> tuple[str, ...]:
        return self.grid.methods

    @property
    def sizes(self) -> tuple[str, ...]:
        return self.grid.sizes

    @property
    def seeds(self) -> tuple[int, ...]:
        return self.grid.seeds

    def present(self, name: str) -> bool:
        return self.files[name].is_file()

    def row(self, run: str | None) -> dict | None:
        return next((row for row in self.rows or [] if row["run"] == run), None)

    def done_rows(self) -> list[dict]:
        return [row for row in self.rows or [] if row["status"] == "done"]

    def trained_runs(self) -> list[str]:
        """Fine-tuned runs with a config.json, in summary order where there is one."""
        order = [row["run"] for row in self.rows or []]
        return sorted(self.configs, key=lambda run: (order.index(run) if run in order else len(order), run))

    # What several tables and the status need, worked out once (the inputs do not change).
    @cached_property
    def sections(self) -> dict[str, tuple[bool, str]]:
        return section_states(self)

    @cached_property
    def missing(self) -> list[str]:
        return missing_items(self)

    @cached_property
    def reproducibility(self) -> list[tuple[str, str, str, str]]:
        return reproducibility_rows(self)


def load_study(results: Path, runs: Path, data: Path, profile: str,
               methods=None, sizes=None, seeds=None) -> Study:
    """The study's inputs; the grid is the profile's narrowed to `methods`, `sizes`, `seeds`."""
    grid, default_seed = requested_grid(profile, methods, sizes, seeds)
    files = {
        "summary": results / "summary.csv", "scaling": results / "scaling.json",
        "examples": results / "examples.json", "cleaning": data / "cleaning_report.json",
        "manifest": data / "manifest.json", "runs": runs,
    }
    study = Study(profile=profile, files=files, grid=grid, default_seed=default_seed)
    if study.present("summary"):
        study.rows, study.metrics = read_summary(files["summary"])
        found = dict.fromkeys(row["method"] for row in study.rows)
        extra = tuple(m for m in found if m and m != BASE_RUN and m not in grid.methods)
        study.grid = replace(grid, methods=grid.methods + extra)
    for name in ("scaling", "examples", "cleaning", "manifest"):
        if study.present(name):
            setattr(study, name, read_json(files[name]))
    if runs.is_dir():
        for run_dir in sorted(path for path in runs.iterdir() if path.is_dir()):
            for filename, store in (("config.json", study.configs), ("train_metrics.json", study.train_metrics),
                                    ("eval.json", study.evals)):
                if (run_dir / filename).is_file():
                    store[run_dir.name] = read_json(run_dir / filename)
    study.configs.pop(BASE_RUN, None)  # the base model is not trained: its config says nothing of training
    return study


def read_summary(path: Path) -> tuple[list[dict], list[Column]]:
    """summary.csv's rows (read_summary_rows) and its metrics: the columns with an interval."""
    header, rows = read_summary_rows(path)
    known = {column.key: column for column in METRICS}
    names = [key for key in header if f"{key}_ci_low" in header]
    metrics = [known[name] for name in known if name in names]
    metrics += [Column(name, escape(name), fixed(2)) for name in names if name not in known]
    return rows, metrics


# --- small helpers ------------------------------------------------------------------------------


def dig(mapping: dict | None, dotted: str):
    """mapping['a']['b'] for 'a.b', or None where any step is absent."""
    for key in dotted.split("."):
        if not isinstance(mapping, dict):
            return None
        mapping = mapping.get(key)
    return mapping


def distinct_values(values: list, format_value: Callable) -> str:
    """The formatted values, each once, joined by ' / ' (settings that differ between runs
    show every value instead of the first one's); missing when there are none."""
    shown_values = list(dict.fromkeys(format_value(v) for v in values if v is not None))
    return " / ".join(shown_values) if shown_values else MISSING


def method_name(method: str | None) -> str:
    return BASE_NAME if method == BASE_RUN else METHOD_NAMES.get(method, escape(method or "?"))


def run_label(row: dict, default_seed: int) -> list[str]:
    """The method and size cells of a run (a non-default seed is named)."""
    if row["run"] == BASE_RUN:
        return [BASE_NAME, "0"]
    size = format_count(row.get("examples")) if row.get("examples") is not None else escape(row.get("size") or "")
    seed = row.get("seed")
    if seed is not None and int(seed) != default_seed:
        size += f"（种子 {int(seed)}）"
    return [method_name(row.get("method")) if row.get("method") else escape(row["run"]), size]


def path_text(path: Path) -> str:
    """A path in typewriter type that may break after each slash."""
    return r"\texttt{" + escape(shown(path)).replace("/", r"/\allowbreak{}") + "}"


def missing_files_sentence(study: Study, names: list[str], what: str) -> str:
    """One sentence: which input files are absent, so `what` cannot be shown."""
    absent = [path_text(study.files[name]) for name in names if not study.present(name)]
    return f"缺少 {'、'.join(absent)}，{what}尚无法给出。"


def interval_macros(prefix: str, stat: dict | None, format_value: Callable, value_key: str = "value") -> dict:
    """{prefix: value, prefixLow: .., prefixHigh: ..} from a {"value", "ci_low", "ci_high"} dict."""
    stat = stat or {}
    return {prefix: format_value(stat.get(value_key)), f"{prefix}Low": format_value(stat.get("ci_low")),
            f"{prefix}High": format_value(stat.get("ci_high"))}


def row_macros(prefix: str, row: dict | None, columns) -> dict:
    """Macros of one summary row: every metric with its interval, every cost column."""
    row = row or {}
    macros = {}
    for column in columns:
        for suffix, name_suffix in INTERVAL_SUFFIXES:
            if column in COSTS and suffix:
                continue
            macros[f"{prefix}{column.macro}{name_suffix}"] = column.format(row.get(f"{column.key}{suffix}"))
    return macros


def grouped(rows: list[list[str]], groups: list) -> list:
    """The table rows with a rule (None) wherever the group (the method) changes."""
    ruled = []
    for index, (row, group) in enumerate(zip(rows, groups)):
        if index and group != groups[index - 1]:
            ruled.append(None)
        ruled.append(row)
    return ruled


def cell(row: dict, column: Column) -> str:
    """A summary row's metric with its interval."""
    return value_with_interval(*(column.format(row.get(f"{column.key}{suffix}")) for suffix, _ in INTERVAL_SUFFIXES))


def stat_cell(stat: dict | None, format_value: Callable, value_key: str = "value") -> str:
    """A {"value" (or "difference"), "ci_low", "ci_high"} statistic with its interval."""
    stat = stat or {}
    return value_with_interval(*(format_value(stat.get(key)) for key in (value_key, "ci_low", "ci_high")))


def chunks(items: list, size: int) -> list[list]:
    return [items[start:start + size] for start in range(0, len(items), size)] or [[]]


def section_states(study: Study) -> dict[str, tuple[bool, str]]:
    """Per section of report.tex: whether its inputs are there, and the one sentence it shows
    instead when they are not (its tables show the same sentence)."""
    return {
        "Data": (study.cleaning is not None and study.manifest is not None,
                 missing_files_sentence(study, ["cleaning", "manifest"], "数据统计")),
        "Configs": (bool(study.configs),
                    f"{path_text(study.files['runs'])} 下还没有运行的 \\texttt{{config.json}}，超参数尚无法给出。"),
        "Results": (study.rows is not None, missing_files_sentence(study, ["summary"], "评测结果")),
        "Scaling": (bool((study.scaling or {}).get("loss_fits")),
                    missing_files_sentence(study, ["scaling"], "规模拟合") if not study.present("scaling")
                    else "还没有方法有足够的完成运行来拟合规模曲线（见本报告开头的缺失清单）。"),
        "Comparison": (bool((study.scaling or {}).get("lora_vs_qlora")),
                       missing_files_sentence(study, ["scaling"], "两种方法的比较") if not study.present("scaling")
                       else "还没有一个数据规模上 LoRA 与 QLoRA 都已完成评测，本节的比较尚无法给出。"),
        "Knowledge": (any(dig(e, "mcq.overall") for e in study.evals.values()),
                      "还没有运行的 \\texttt{eval.json} 含选择题结果，知识评测尚无法给出。"),
        "Examples": (bool((study.examples or {}).get("examples")),
                     missing_files_sentence(study, ["examples"], "定性示例") if not study.present("examples")
                     else "还没有完成评测的微调运行，定性示例尚无法给出。"),
        "Provenance": (bool(provenances(study)), "还没有记录 provenance 的运行，可复现信息尚无法给出。"),
    }


def absent_table(study: Study, section: str, caption: str, label: str) -> str | None:
    """The table's float with the section's one sentence when the section's inputs are absent."""
    present, sentence = study.sections[section]
    return None if present else missing_table(caption, label, sentence)


# --- data: cleaning and splits ------------------------------------------------------------------


def data_macros(study: Study) -> dict:
    cleaning, manifest = study.cleaning or {}, study.manifest or {}
    rules = cleaning.get("rules") or []
    raw, kept = cleaning.get("input_records"), cleaning.get("kept")
    dropped = raw - kept if raw is not None and kept is not None else None
    files = manifest.get("files") or {}
    sizes = [parse_count(size) for size in study.sizes]
    largest_rule = max(rules, key=lambda rule: rule.get("dropped") or 0, default={})
    macros = {
        "RawRecords": format_count(raw),
        "MalformedLines": format_count(cleaning.get("malformed_lines")),
        "KeptRecords": format_count(kept),
        "CleanRecords": format_count(manifest.get("clean_records", kept)),
        "DroppedRecords": format_count(dropped),
        "DroppedPercent": format_number(100 * dropped / raw if dropped is not None and raw else None, 1),
        "CleaningRules": format_count(len(rules)) if rules else MISSING,
        "LargestDropRule": escape(largest_rule["rule"]) if largest_rule.get("rule") else MISSING,
        "LargestDrop": format_count(largest_rule.get("dropped")),
        "TestSize": format_count((files.get("test.jsonl") or {}).get("count")),
        "DevSize": format_count((files.get("dev.jsonl") or {}).get("count")),
        "TrainSizes": "、".join(format_count(size) for size in sizes),
        "NumTrainSizes": format_count(len(sizes)),
        "SmallestTrainSize": format_count(min(sizes)),
        "LargestTrainSize": format_count(max(sizes)),
    }
    for rule in rules:
        macros[macro_name("dropped", rule.get("rule", ""))] = format_count(rule.get("dropped"))
    return macros


def cleaning_table(study: Study) -> str:
    caption, label = "数据清洗：各规则依次删除的记录数", "tab:cleaning"
    if missing := absent_table(study, "Data", caption, label):
        return missing
    raw = study.cleaning.get("input_records")

    def share(count):
        return format_number(100 * count / raw if count is not None and raw else None, 1)

    rows = [["输入记录", "", format_count(raw), ""],
            ["格式错误的行", "无法解析，计数后跳过", format_count(study.cleaning.get("malformed_lines")), ""], None]
    for rule in study.cleaning.get("rules") or []:
        dropped = format_count(rule.get("dropped"))
        if rule.get("changed"):  # a rule that rewrites records (normalisation) rather than dropping them
            dropped += f"（改写 {format_count(rule['changed'])}）"
        rows.append([texttt(rule.get("rule", "")), escape(rule.get("description", "")),
                     dropped, share(rule.get("dropped"))])
    rows += [None, ["保留", "", format_count(study.cleaning.get("kept")), share(study.cleaning.get("kept"))]]
    return table(caption, label, r"l p{0.5\linewidth} r r", ["规则", "说明", "记录数", r"占输入（\%）"], rows,
                 note="规则按表中顺序执行；每条规则只计入前面规则留下的记录。")


def split_name(filename: str) -> tuple[int, str]:
    """(order, Chinese name) of a split file: test, dev, the train subsets, then the rest."""
    if filename == "test.jsonl":
        return 0, "测试集"
    if filename == "dev.jsonl":
        return 1, "验证集"
    if filename.startswith("train-"):
        return 2, "训练子集"
    if filename == "mcq.jsonl":
        return 3, "选择题（知识评测）"
    return 4, "其他"


def splits_table(study: Study) -> str:
    caption, label = "数据划分：测试集与验证集先切出且固定不变，训练子集互相嵌套", "tab:splits"
    if missing := absent_table(study, "Data", caption, label):
        return missing
    files = study.manifest.get("files") or {}
    ordered = sorted(files, key=lambda name: (split_name(name)[0], (files[name] or {}).get("count") or 0, name))
    rows = [[split_name(name)[1], texttt(name), format_count((files[name] or {}).get("count")),
             texttt(((files[name] or {}).get("sha256") or "")[:12])] for name in ordered]
    return table(caption, label, "l l r l", ["划分", "文件", "记录数", "SHA-256（前 12 位）"], rows)


# --- methods: the resolved configurations --------------------------------------------------------


def format_plain(value) -> str:
    """A configured number as written: 2.0 -> '2', 0.05 -> '0.05', 1024 -> '1,024'."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return escape(value)
    return format_count(value) if float(value).is_integer() else escape(f"{value:g}")


def format_targets(value) -> str:
    return texttt(", ".join(value) if isinstance(value, list) else value)


def format_quantisation(quantization: dict) -> str:
    if not quantization.get("load_in_4bit"):
        return "无（16 位基座）"
    kind = escape(str(quantization.get("quant_type", "")).upper())
    return f"4 位 {kind}" + (" + 双重量化" if quantization.get("double_quant") else "")


def format_switch(value) -> str:
    return "是" if value else "否"


def batch_layout(config: dict):
    """'8 × 2 × 1': per-device batch x accumulation steps x processes = the effective batch."""
    parts = [dig(config, "train.per_device_batch_size"), dig(config, "resolved.gradient_accumulation_steps"),
             dig(config, "resolved.processes")]
    return None if None in parts else " × ".join(format_count(part) for part in parts)


@dataclass(frozen=True)
class Setting:
    """A row of the hyperparameter table and its macro: where it is in a resolved config."""
    name: str
    label: str
    read: Callable[[dict], object]
    format: Callable = format_plain


def at(dotted: str) -> Callable[[dict], object]:
    return lambda config: dig(config, dotted)


SETTINGS = (
    Setting("ModelName", "基座模型", at("model.name_or_path"), texttt),
    Setting("Quantisation", "基座量化", lambda c: c.get("quantization"), format_quantisation),
    Setting("Dtype", "计算精度", at("resolved.dtype"), texttt),
    Setting("LoraRank", "LoRA 秩 $r$", at("lora.r")),
    Setting("LoraAlpha", r"LoRA $\alpha$", at("lora.alpha")),
    Setting("LoraDropout", "LoRA dropout", at("lora.dropout")),
    Setting("LoraTargets", "LoRA 作用的层", at("lora.target_modules"), format_targets),
    Setting("LearningRate", "学习率", at("train.learning_rate"), format_scientific),
    Setting("LrScheduler", "学习率调度", at("train.lr_scheduler"), escape),
    Setting("WarmupRatio", "预热比例", at("train.warmup_ratio")),
    Setting("Epochs", "训练轮数", at("train.epochs")),
    Setting("EffectiveBatch", "有效批量", at("train.effective_batch_size")),
    Setting("BatchLayout", "每卡批量 × 梯度累积 × 进程数", batch_layout, str),
    Setting("MaxLength", "最大长度（token）", at("train.max_length")),
    Setting("Packing", "序列打包", at("train.packing"), format_switch),
    Setting("MaxNewTokens", "生成上限（token）", at("eval.max_new_tokens")),
    Setting("BootstrapSamples", "bootstrap 重采样次数", at("eval.bootstrap_samples")),
    Setting("TrainSeeds", "训练种子", at("run.seed")),
    Setting("DataSeed", "数据种子（划分与抽样）", at("data.seed")),
)


def data_source(config: dict) -> str | None:
    source = dig(config, "data.source")
    if source is None:
        return None
    if source == "hub":
        return texttt(dig(config, "data.hub_repo")) + "（" + escape(dig(config, "data.hub_file")) + "）"
    if source == "synthetic":
        return "本项目生成器生成的合成数据"
    return texttt(Path(source).name)


def configs_by_method(study: Study) -> dict[str, list[dict]]:
    """The fine-tuned runs' configs per method, every method of the study (none: empty list)."""
    by_method: dict[str, list[dict]] = {method: [] for method in study.methods}
    for run in study.trained_runs():
        by_method.setdefault(dig(study.configs[run], "run.method") or "?", []).append(study.configs[run])
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


def hyperparameter_table(study: Study) -> str:
    caption, label = "超参数（取自各运行解析后的配置 config.json）", "tab:hyperparameters"
    if missing := absent_table(study, "Configs", caption, label):
        return missing
    by_method = {method: configs for method, configs in configs_by_method(study).items() if configs}
    methods = list(by_method)
    rows = [[setting.label, *(distinct_values([setting.read(c) for c in by_method[m]], setting.format) for m in methods)]
            for setting in SETTINGS]
    return table(caption, label, "l" + " l" * len(methods), ["设置", *(method_name(m) for m in methods)], rows,
                 note="一格中有多个值（以 / 分隔）表示该方法的不同运行用了不同的值。")


# --- results -------------------------------------------------------------------------------------


def best_row(study: Study) -> dict | None:
    """The summary row of the best run, as lib/analysis.py chose it for examples.json."""
    return study.row((study.examples or {}).get("best_run"))


def grid_row(study: Study, method: str, size: str) -> dict | None:
    return study.row(run_name(method, size, study.default_seed, study.default_seed))


def result_macros(study: Study) -> dict:
    columns = [*METRICS, *(c for c in study.metrics if c not in METRICS), *COSTS]
    base, best = study.row(BASE_RUN), best_row(study)
    base = base if base and base["status"] == "done" else None
    macros = row_macros("Base", base, columns) | row_macros("Best", best, columns)
    for column in columns:
        if column in METRICS or column in study.metrics:
            gain = best[column.key] - base[column.key] if best and base and None not in (
                best.get(column.key), base.get(column.key)) else None
            macros[f"BestGain{column.macro}"] = column.format(gain)
    for method in study.methods:
        prefix = macro_name(method)
        for role, size in (("Smallest", study.sizes[0]), ("Largest", study.sizes[-1])):
            row = grid_row(study, method, size)
            macros |= row_macros(f"{prefix}{role}", row if row and row["status"] != "missing" else None, columns)
        largest = grid_row(study, method, study.sizes[-1]) or {}
        share = (100 * largest["trainable_params"] / largest["total_params"]
                 if largest.get("trainable_params") and largest.get("total_params") else None)
        macros[f"{prefix}TrainablePercent"] = format_significant(share)
    rows = study.rows or []
    macros |= {
        "BestRun": escape(best["run"]) if best else MISSING,
        "BestMethod": method_name(best["method"]) if best else MISSING,
        "BestSize": format_count(best.get("examples")) if best else MISSING,
        "NumRuns": format_count(len(rows)),
        "NumRunsDone": format_count(len(study.done_rows())),
        "NumMethods": format_count(len(study.methods)),
        "NumTrainSeeds": format_count(len(study.seeds)),
        "ConfidenceLevel": CONFIDENCE_PERCENT,
    }
    return macros


def status_cells(row: dict, width: int) -> list[str]:
    return [f"\\multicolumn{{{width}}}{{c}}{{\\textit{{{STATUS_WORDS.get(row['status'], escape(row['status']))}}}}}"]


def run_tables(study: Study, caption: str, label: str, rows: list[dict], columns: list, header: Callable,
               cells: Callable, per_table: int, note: str | None = None) -> str:
    """Tables with a row per run: method, size, then `cells(row, columns)`; the columns are
    spread over as many tables as fit the page width, `per_table` each, `note` under the last."""
    parts = chunks(columns, per_table)
    tables = []
    for number, part in enumerate(parts, start=1):
        body = grouped([[*run_label(row, study.default_seed), *cells(row, part)] for row in rows],
                       [row.get("method") for row in rows])
        suffix = f"（{number}/{len(parts)}）" if len(parts) > 1 else ""
        tables.append(table(caption + suffix, label if number == 1 else f"{label}:{number}", "l r" + " c" * len(part),
                            ["方法", "训练数据", *(header(column) for column in part)], body,
                            note=note if number == len(parts) else None))
    return "\n".join(tables)


def results_tables(study: Study) -> str:
    """The main results: every run and the base model, each metric with its interval."""
    caption, label = f"主要结果（括号内为 {CONFIDENCE_TEXT} bootstrap 区间）", "tab:results"
    if missing := absent_table(study, "Results", caption, label):
        return missing
    metrics = [c for c in study.metrics if any(row.get(c.key) is not None for row in study.rows)] or study.metrics

    def cells(row: dict, part: list[Column]) -> list[str]:
        return [cell(row, c) for c in part] if row["status"] == "done" else status_cells(row, len(part))

    return run_tables(study, caption, label, study.rows, metrics, lambda c: c.header, cells, METRICS_PER_TABLE)


def cost_table(study: Study) -> str:
    caption, label = "训练成本（每个运行）", "tab:cost"
    if missing := absent_table(study, "Results", caption, label):
        return missing
    rows = [row | {"mfu": dig(study.train_metrics.get(row["run"]), "mfu")} for row in study.rows
            if row["run"] != BASE_RUN and row.get("wall_time_s") is not None]
    if not rows:
        return missing_table(caption, label, "还没有运行完成训练，训练成本尚无法给出。")
    columns = [c for c in COSTS if c.key not in ("final_train_loss", "best_dev_loss")]
    columns += [MFU] if any(row["mfu"] is not None for row in rows) else []  # MFU is null on CPU
    kinds = sorted({metrics.get("peak_memory_kind") for metrics in study.train_metrics.values()} - {None})
    kind_words = {"cuda_max_allocated": "GPU 上 PyTorch 分配的峰值显存（cuda\\_max\\_allocated）",
                  "process_rss": "训练进程的峰值常驻内存（RSS）"}
    note = "峰值内存为" + "；".join(kind_words.get(kind, escape(kind)) for kind in kinds) + "。" if kinds else None
    return run_tables(study, caption, label, rows, columns, lambda c: c.header,
                      lambda row, part: [c.format(row.get(c.key)) for c in part], len(columns), note)


# --- scaling fits and LoRA vs QLoRA --------------------------------------------------------------

FIT_FORMATS = {"E": fixed(3), "A": format_significant, "alpha": format_significant}  # of FIT_PARAMETERS


def holdout_percent(holdout: dict) -> float | None:
    """scaling.json's relative hold-out error, |predicted - observed| / observed, in percent."""
    return None if holdout.get("rel_error") is None else 100 * holdout["rel_error"]


def scaling_macros(study: Study) -> dict:
    scaling = study.scaling or {}
    parameters, sizes = len(FIT_PARAMETERS), len(study.sizes)
    macros = {"FitParameters": format_count(parameters),
              "FitDegreesOfFreedom": format_count(max(sizes - parameters, 0)),
              "HoldoutFitPoints": format_count(sizes - 1)}  # the hold-out fit leaves the largest size out
    for method in study.methods:
        prefix = macro_name(method)
        fit = (scaling.get("loss_fits") or {}).get(method) or {}
        for parameter, format_value in FIT_FORMATS.items():
            macros |= interval_macros(f"{prefix}Fit{macro_name(parameter)}", fit.get(parameter), format_value)
        holdout = fit.get("holdout") or {}
        macros |= {
            f"{prefix}FitPoints": format_count(len(fit.get("points") or [])),
            f"{prefix}HoldoutSize": format_count(holdout.get("size")),
            f"{prefix}HoldoutObserved": format_number(holdout.get("observed"), 3),
            f"{prefix}HoldoutPredicted": format_number(holdout.get("predicted"), 3),
            f"{prefix}HoldoutError": format_number(holdout.get("abs_error"), 3),
            f"{prefix}HoldoutPercent": format_number(holdout_percent(holdout), 1),
        }
        for metric in (column for column in METRICS if column.key in TREND_METRICS):
            trend = dig(scaling, f"trends.{metric.key}.{method}.slope_per_doubling")
            macros |= interval_macros(f"{prefix}{metric.macro}PerDoubling", trend, metric.format)
    return macros


FIT_STATUS_WORDS = {"too_few_points": f"点数不足（{len(FIT_PARAMETERS)} 个参数至少要 {len(FIT_PARAMETERS)} 个规模）",
                    "fit_failed": "拟合未收敛"}


def scaling_table(study: Study) -> str:
    caption = rf"测试损失的数据规模拟合 $L(D) = E + A\,D^{{-\alpha}}$（括号内为对测试题 bootstrap 的 {CONFIDENCE_TEXT} 区间）"
    label = "tab:scaling"
    if missing := absent_table(study, "Scaling", caption, label):
        return missing
    rows = []
    for method, fit in study.scaling["loss_fits"].items():
        points = format_count(len(fit.get("points") or []))
        if fit.get("status") != "ok":
            word = FIT_STATUS_WORDS.get(fit.get("status"), escape(fit.get("status")))
            rows.append([method_name(method), points, f"\\multicolumn{{6}}{{c}}{{\\textit{{{word}}}}}"])
            continue
        holdout = fit.get("holdout") or {}
        rows.append([method_name(method), points, *(stat_cell(fit.get(p), f) for p, f in FIT_FORMATS.items()),
                     format_count(holdout.get("size")),
                     f"{format_number(holdout.get('predicted'), 3)} / {format_number(holdout.get('observed'), 3)}",
                     format_number(holdout_percent(holdout), 1)])
    return table(caption, label, "l r c c c r c r",
                 ["方法", "点数", "$E$", "$A$", r"$\alpha$", "留出规模", "预测 / 实测", r"误差（\%）"], rows,
                 note=r"$D$ 为训练样本数，$L$ 为参考答案每个 token 的平均负对数似然（nats）。"
                      r"留出检验：去掉最大规模后用其余点拟合，预测最大规模的损失；误差 = $|\text{预测} - \text{实测}|$ / 实测。")


def comparison_macros(study: Study) -> dict:
    comparisons = [c for c in (study.scaling or {}).get("lora_vs_qlora") or [] if c]
    last = comparisons[-1] if comparisons else {}
    macros = {"ComparisonSize": format_count(last.get("examples")), "NumComparisons": format_count(len(comparisons))}
    for key, name, format_value in (("rougeL_diff", "RougeL", fixed(1)), ("loss_diff", "Loss", fixed(3))):
        stat = last.get(key) or {}
        macros |= interval_macros(f"Qlora{name}Diff", stat, format_value, value_key="difference")
        macros[f"Qlora{name}DiffP"] = format_p_value(stat.get("p_value"), relation=True)
        excluding_zero = [c for c in comparisons if (c.get(key) or {}).get("ci_low") is not None
                          and (c[key]["ci_low"] > 0 or c[key]["ci_high"] < 0)]
        macros[f"Num{name}DiffsExcludingZero"] = format_count(len(excluding_zero))
    for key, name in (("time_ratio", "Time"), ("memory_ratio", "Memory"), ("throughput_ratio", "Throughput")):
        macros[f"Qlora{name}Ratio"] = format_number(last.get(key), 2)
    return macros


def comparison_table(study: Study) -> str:
    caption, label = r"QLoRA 与 LoRA 的比较：质量差（QLoRA $-$ LoRA，配对 bootstrap）与成本比（QLoRA / LoRA）", "tab:lora-vs-qlora"
    if missing := absent_table(study, "Comparison", caption, label):
        return missing

    def difference(stat: dict | None, format_value: Callable) -> list[str]:
        return [stat_cell(stat, format_value, "difference"), format_p_value((stat or {}).get("p_value"))]

    rows = [[format_count(c.get("examples")), *difference(c.get("rougeL_diff"), fixed(1)),
             *difference(c.get("loss_diff"), fixed(3)),
             *(format_number(c.get(key), 2) for key in ("time_ratio", "memory_ratio", "throughput_ratio"))]
            for c in study.scaling["lora_vs_qlora"]]
    return table(caption, label, "r c r c r r r r",
                 ["训练数据", r"$\Delta$ROUGE-L", "$p$", r"$\Delta$测试损失", "$p$", "时间比", "峰值内存比", "吞吐比"], rows,
                 note=r"$\Delta$ROUGE-L 为正、$\Delta$测试损失为负表示 QLoRA 更好；时间比与内存比小于 1 表示 QLoRA 更省。")


# --- knowledge track ----------------------------------------------------------------------------


def knowledge_macros(study: Study) -> dict:
    sources = {source for e in study.evals.values() for source in (dig(e, "mcq.per_source") or {})}
    return {"NumMcqSources": format_count(len(sources)) if sources else MISSING,
            "McqItems": distinct_values([dig(e, "mcq.overall.n") for e in study.evals.values()], format_count)}


def knowledge_table(study: Study) -> str:
    caption, label = rf"医学知识选择题的准确率（\%，按来源；括号内为 {CONFIDENCE_TEXT} 区间）", "tab:knowledge"
    if missing := absent_table(study, "Knowledge", caption, label):
        return missing
    runs = [run for run, e in study.evals.items() if dig(e, "mcq.overall")]
    listed = [row for row in study.rows or [] if row["run"] in runs]
    rows = listed + [{"run": run, "method": None} for run in sorted(set(runs) - {row["run"] for row in listed})]
    sources = sorted({s for run in runs for s in dig(study.evals[run], "mcq.per_source") or {}})

    def cells(row: dict, part: list[str]) -> list[str]:
        mcq = study.evals[row["run"]]["mcq"]
        per_source = mcq.get("per_source") or {}
        return [stat_cell(mcq["overall"] if source is None else per_source.get(source), fixed(1)) for source in part]

    def header(source: str | None) -> str:
        return "总体" if source is None else texttt(source)

    return run_tables(study, caption, label, rows, [None, *sources], header, cells, SOURCES_PER_TABLE)


# --- qualitative examples -----------------------------------------------------------------------


def example_text(text, limit: int) -> str:
    return escape(truncate(text, limit)) if text else MISSING


def examples_macros(study: Study) -> dict:
    examples = (study.examples or {}).get("examples") or []
    best = (study.examples or {}).get("best_run")
    return {"NumExamples": format_count(len(examples)), "ExamplesBestRun": escape(best) if best else MISSING,
            "ExampleQuestionChars": format_count(EXAMPLE_QUESTION_CHARS),
            "ExampleAnswerChars": format_count(EXAMPLE_ANSWER_CHARS)}


def examples_list(study: Study) -> str:
    """Each example as report.tex's \\ExampleItem{id}{question}{reference}{base}{best}."""
    present, sentence = study.sections["Examples"]
    if not present:
        return f"\\MissingInput{{{sentence}}}\n"
    items = []
    for example in study.examples["examples"]:
        texts = [escape(example.get("id", "")), example_text(example.get("question"), EXAMPLE_QUESTION_CHARS),
                 *(example_text(example.get(key), EXAMPLE_ANSWER_CHARS) for key in ("reference", "base", "best"))]
        items.append(r"\ExampleItem" + "".join(f"{{{text}}}" for text in texts))
    return "\n".join(items) + "\n"


# --- reproducibility ----------------------------------------------------------------------------


def provenances(study: Study) -> list[dict]:
    """The provenance of every run's config.json, and of eval.json where a run has no config."""
    records = [c.get("provenance") for c in study.configs.values()]
    records += [e.get("provenance") for run, e in study.evals.items() if run not in study.configs]
    return [record for record in records if record]


def short_commit(git: dict) -> str | None:
    commit = (git or {}).get("commit")
    if not commit:
        return None
    return commit[:12] + ("（含未提交改动）" if git.get("dirty") else "")


def hardware_text(hardware: dict) -> str | None:
    if not hardware:
        return None
    gpus = hardware.get("gpus") or []
    if gpus:
        names = list(dict.fromkeys(gpus))
        return "、".join(f"{name} × {gpus.count(name)}" for name in names)
    return f"CPU（{hardware.get('cpu_count', '?')} 核）"


def reproducibility_rows(study: Study) -> list[tuple[str, str, str, str]]:
    """(macro name, label, macro text, table cell) of the reproducibility table: every run's
    value, each once; the cell differs from the macro where the table sets it in typewriter."""
    records = provenances(study)
    packages = list(dict.fromkeys(p for r in records for p in (r.get("versions") or {})))
    dates = sorted(str(r["created"])[:10] for r in records if r.get("created"))

    def fact(name: str, label: str, values: list, format_value: Callable = escape, cell_format: Callable | None = None):
        text = distinct_values(values, format_value)
        return name, label, text, distinct_values(values, cell_format) if cell_format else text

    commits = [short_commit(r.get("git")) for r in records]
    rows = [fact("GitCommit", "Git 提交", commits, cell_format=texttt),
            fact("Hardware", "硬件", [hardware_text(r.get("hardware")) for r in records]),
            fact("Platform", "平台", [dig(r, "hardware.platform") for r in records]),
            fact("Seeds", "随机种子", [r.get("seed") for r in records], format_plain),
            fact("RunDates", "运行日期（UTC）", dates)]
    rows += [fact(macro_name(package, "version"), texttt(package), [(r.get("versions") or {}).get(package) for r in records])
             for package in packages]
    return rows


def reproducibility_macros(study: Study) -> dict:
    return {name: text for name, _, text, _ in study.reproducibility}


def reproducibility_table(study: Study) -> str:
    caption, label = "可复现信息（来自各运行记录的 provenance）", "tab:reproducibility"
    if missing := absent_table(study, "Provenance", caption, label):
        return missing
    rows = [[label_, cell] for _, label_, _, cell in study.reproducibility]
    return table(caption, label, r"l p{0.6\linewidth}", ["项目", "值"], rows,
                 note="一格中有多个值（以 / 分隔）表示不同运行的记录不同。")


# --- status: what is there and what is missing ---------------------------------------------------


def missing_items(study: Study) -> list[str]:
    """What the report lacks, one LaTeX phrase each: absent files, unfinished runs, failed fits."""
    inputs = ("cleaning", "manifest", "summary", "scaling", "examples")
    items = [f"缺少 {path_text(study.files[name])}" for name in inputs if not study.present(name)]
    if study.rows is not None:
        listed = {row["run"] for row in study.rows}
        expected = [BASE_RUN] + [run_name(m, s, seed, study.default_seed) for m in study.methods
                             for s in study.sizes for seed in study.seeds]
        by_status: dict[str, list[str]] = {}
        for row in study.rows:
            if row["status"] != "done":
                by_status.setdefault(row["status"], []).append(row["run"])
        by_status.setdefault("missing", []).extend(run for run in expected if run not in listed)
        for status, runs in by_status.items():
            if runs:
                names = "、".join(texttt(run) for run in runs)
                items.append(f"{STATUS_WORDS.get(status, escape(status))}的运行（{format_count(len(runs))} 个）：{names}")
    for method, fit in ((study.scaling or {}).get("loss_fits") or {}).items():
        if fit.get("status") != "ok":
            word = FIT_STATUS_WORDS.get(fit.get("status"), escape(fit.get("status")))
            items.append(f"{method_name(method)} 的规模拟合：{word}")
    return items


def status_tex(study: Study) -> str:
    lines = ["% What the report has and lacks; written by `python -m lib report`. Do not edit."]
    sources = {dig(config, "data.source") for config in study.configs.values()}
    switches = {"DemoProfile": study.profile == "demo", "SingleSeed": len(study.seeds) == 1,
                "HubData": sources == {"hub"}}  # the shibing624/medical data, to be cited
    items = study.missing
    switches["ReportComplete"] = not items
    notes = {}
    for section, (present, sentence) in study.sections.items():
        switches[f"Have{section}"] = present
        notes[f"{section}MissingNote"] = sentence
    for name, value in switches.items():
        lines += [f"\\newif\\if{name}", f"\\{name}{'true' if value else 'false'}"]
    lines += [macro(name, f"\\MissingInput{{{sentence}}}") for name, sentence in notes.items()]
    body = "\n".join(f"  \\item {item}" for item in items) or r"  \item 无"
    lines.append(macro("MissingList", "\n\\begin{itemize}\n" + body + "\n\\end{itemize}\n"))
    return "\n".join(lines) + "\n"


# --- writing ------------------------------------------------------------------------------------


def all_macros(study: Study) -> dict:
    macros = {"ProfileName": escape(study.profile)}
    for part in (data_macros, config_macros, result_macros, scaling_macros, comparison_macros, knowledge_macros,
                 examples_macros, reproducibility_macros):
        new = part(study)
        clash = set(new) & set(macros)
        if clash:
            raise ValueError(f"macro names defined twice: {sorted(clash)}")
        macros |= new
    return macros


TABLES = {
    "cleaning": cleaning_table, "splits": splits_table, "hyperparameters": hyperparameter_table,
    "results": results_tables, "cost": cost_table, "scaling": scaling_table, "lora_vs_qlora": comparison_table,
    "knowledge": knowledge_table, "examples": examples_list, "reproducibility": reproducibility_table,
}
HEADER = "% Generated by `python -m lib report --profile {profile}` from the study's results. Do not edit.\n"


def write_report(study: Study, out: Path) -> dict:
    """Write tables, status and macros into `out`, the marker last; return counts for the user."""
    header = HEADER.format(profile=study.profile)
    for name, make in TABLES.items():
        with atomic_write(out / "tables" / f"{name}.tex") as handle:
            handle.write(header + make(study))
    with atomic_write(out / "status.tex") as handle:
        handle.write(header + status_tex(study))
    macros = all_macros(study)
    with atomic_write(out / "macros.tex") as handle:
        handle.write(header + "\n".join(macro(name, body) for name, body in macros.items()) + "\n")
    inputs = {name: shown(path) for name, path in study.files.items()}
    grid = {"methods": list(study.methods), "sizes": list(study.sizes), "seeds": list(study.seeds)}
    write_json(out / "report.done", {"inputs": inputs, "grid": grid,
                                     "provenance": provenance({"profile": study.profile, "inputs": inputs, "grid": grid})})
    return {"macros": len(macros), "tables": len(TABLES), "missing": study.missing}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--results", type=Path, required=True,
                        help="folder with summary.csv, scaling.json, examples.json")
    parser.add_argument("--runs", type=Path, required=True, help="folder of run directories")
    parser.add_argument("--data", type=Path, required=True,
                        help="processed data folder (cleaning_report.json, manifest.json)")
    parser.add_argument("--profile", required=True, help="the profile these results belong to (demo or paper)")
    parser.add_argument("--out", type=Path, required=True, help="folder for macros.tex, status.tex and tables/")
    add_grid_arguments(parser)


def run(args: argparse.Namespace) -> None:
    study = load_study(args.results, args.runs, args.data, args.profile, args.methods, args.sizes, args.seeds)
    counts = write_report(study, args.out)
    missing = f"; missing: {len(counts['missing'])} item(s), listed in the report" if counts["missing"] else ""
    print(f"report: {counts['macros']} macros and {counts['tables']} tables in {shown(args.out)}{missing}")
