"""Section "Results": every run and the base model with each metric and its interval
(summary.csv), the numbers the text quotes (base, best run, each method's 0-data row, smallest
and largest size), and the training cost of each run."""

from __future__ import annotations

from lib.config import BASE_RUN, NF4_BASE_RUN, run_name, zero_data_run
from lib.io import nested_value
from lib.report.columns import COSTS, MFU, Column, metric_cell, quoted_metrics, row_macros
from lib.report.formatting import CONFIDENCE_PERCENT, CONFIDENCE_TEXT, STATUS_WORDS, method_name
from lib.report.run_tables import run_tables
from lib.report.section import Section, Table, Tabular
from lib.report.study import Study
from lib.tex import MISSING, escape, format_count, format_significant, macro_name

METRICS_PER_TABLE = 7  # value-over-interval cells of ~1.8 cm: 7 of them and the run labels fill a line
PEAK_MEMORY_WORDS = {"cuda_max_allocated": "GPU 上 PyTorch 分配的峰值显存（cuda\\_max\\_allocated）",
                     "process_rss": "训练进程的峰值常驻内存（RSS）"}  # train_metrics.json's peak_memory_kind


def best_row(study: Study) -> dict | None:
    """The summary row of the best run, as lib/summarize/example_answers.py chose it for examples.json."""
    return study.row((study.examples or {}).get("best_run"))


def grid_row(study: Study, method: str, size: str) -> dict | None:
    return study.row(run_name(method, size, study.default_seed, study.default_seed))


def macro_metrics(study: Study) -> list[Column]:
    """The metrics with macros: those paper/report.tex may quote, then the others summary.csv has."""
    quoted = quoted_metrics()
    keys = {column.key for column in quoted}
    return quoted + [column for column in study.metrics if column.key not in keys]


def result_macros(study: Study) -> dict:
    metrics = macro_metrics(study)
    base, best = study.row(BASE_RUN), best_row(study)
    base = base if base and base["status"] == "done" else None
    macros = row_macros("Base", base, metrics) | row_macros("Best", best, metrics)
    for column in metrics:
        gain = best[column.key] - base[column.key] if best and base and None not in (
            best.get(column.key), base.get(column.key)) else None
        macros[f"BestGain{column.macro}"] = column.format(gain)
    for method in study.quoted_methods:
        prefix = macro_name(method)
        zero_data = study.row(zero_data_run(method))  # the base model as the method loads it
        macros |= row_macros(f"{prefix}ZeroData", zero_data if zero_data and zero_data["status"] == "done" else None,
                             metrics)
        for role, size in (("Smallest", study.sizes[0]), ("Largest", study.sizes[-1])):
            row = grid_row(study, method, size)
            macros |= row_macros(f"{prefix}{role}", row if row and row["status"] != "missing" else None, metrics)
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


def result_rows(study: Study) -> list[Tabular]:
    """The main results: every run and the base model, each metric with its interval."""
    metrics = [c for c in study.metrics if any(row.get(c.key) is not None for row in study.rows)] or study.metrics

    def cells(row: dict, part: list[Column]) -> list[str]:
        return [metric_cell(row, c) for c in part] if row["status"] == "done" else status_cells(row, len(part))

    return run_tables(study.rows, study.default_seed, metrics, lambda c: c.header, cells, METRICS_PER_TABLE,
                      "".join(note for note in (untuned_note(study), run_notes(study.rows)) if note) or None)


def untuned_note(study: Study) -> str | None:
    """What the two untuned rows are, where the NF4 one is there: each method's 0-data row."""
    if not study.row(NF4_BASE_RUN):
        return None
    return ("“基座模型”是未量化的未微调模型，为 LoRA 的零数据对照；“基座模型（NF4）”是按 QLoRA 的加载方式"
            "量化为 4 位 NF4 的同一模型，为 QLoRA 的零数据对照。")


def run_notes(rows: list[dict]) -> str | None:
    """summary.csv's notes under the table: why a run is incomplete, that its data changed after it
    was made (stale), or which of its settings (decoding, adapter precision) differ from the other
    runs' so that its numbers do not compare."""
    notes = [f"{escape(row['run'])}：{escape(row['note'])}" for row in rows if row.get("note")]
    return "注：" + "；".join(notes) + "。" if notes else None


def trained_rows(study: Study) -> list[dict]:
    """The summary rows of runs with a training time, each with its MFU from train_metrics.json."""
    return [row | {"mfu": nested_value(study.train_metrics.get(row["run"]), "mfu")} for row in study.rows
            if row["run"] != BASE_RUN and row.get("wall_time_s") is not None]


def no_trained_runs(study: Study) -> str | None:
    return None if trained_rows(study) else "还没有运行完成训练，训练成本尚无法给出。"


def cost_rows(study: Study) -> list[Tabular]:
    rows = trained_rows(study)
    columns = [c for c in COSTS if c.key not in ("final_train_loss", "best_dev_loss")]
    columns += [MFU] if any(row["mfu"] is not None for row in rows) else []  # MFU is null on CPU
    kinds = sorted({metrics.get("peak_memory_kind") for metrics in study.train_metrics.values()} - {None})
    note = ("峰值内存为" + "；".join(PEAK_MEMORY_WORDS.get(kind, escape(kind)) for kind in kinds) + "。"
            if kinds else None)
    return run_tables(rows, study.default_seed, columns, lambda c: c.header,
                      lambda row, part: [c.format(row.get(c.key)) for c in part], len(columns), note)


SECTION = Section(
    name="Results",
    present=lambda study: study.rows is not None,
    missing_sentence=lambda study: study.absent_files_sentence(["summary"], "评测结果"),
    macros=result_macros,
    files=(
        Table("results", f"主要结果（括号内为 {CONFIDENCE_TEXT} bootstrap 区间）", "tab:results", result_rows),
        Table("cost", "训练成本（每个运行）", "tab:cost", cost_rows, unavailable=no_trained_runs),
    ),
)
