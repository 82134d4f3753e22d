"""Section "Data": what cleaning removed, rule by rule, and the splits (cleaning_report.json and
manifest.json of the processed data folder)."""

from __future__ import annotations

from lib.config import parse_count
from lib.report.section import Section, Table, Tabular
from lib.report.study import Study
from lib.tex import MISSING, escape, format_count, format_number, macro_name, texttt


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


def cleaning_rows(study: Study) -> Tabular:
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
    return Tabular(r"l p{0.5\linewidth} r r", ["规则", "说明", "记录数", r"占输入（\%）"], rows,
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


def split_rows(study: Study) -> Tabular:
    files = study.manifest.get("files") or {}
    ordered = sorted(files, key=lambda name: (split_name(name)[0], (files[name] or {}).get("count") or 0, name))
    rows = [[split_name(name)[1], texttt(name), format_count((files[name] or {}).get("count")),
             texttt(((files[name] or {}).get("sha256") or "")[:12])] for name in ordered]
    return Tabular("l l r l", ["划分", "文件", "记录数", "SHA-256（前 12 位）"], rows)


SECTION = Section(
    name="Data",
    present=lambda study: study.cleaning is not None and study.manifest is not None,
    missing_sentence=lambda study: study.absent_files_sentence(["cleaning", "manifest"], "数据统计"),
    macros=data_macros,
    files=(
        Table("cleaning", "数据清洗：各规则依次删除的记录数", "tab:cleaning", cleaning_rows),
        Table("splits", "数据划分：测试集与验证集先切出且固定不变，训练子集互相嵌套", "tab:splits", split_rows),
    ),
)
