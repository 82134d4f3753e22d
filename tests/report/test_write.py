"""The generated LaTeX of the report (lib/report/): macros read from a small study, tables, what a
partial study says is missing, and the sections in step with paper/report.tex.

The study is tests/builders.py's `write_study` (also used by tests/test_paper.py, which compiles
the PDF): every input of `python -m lib report` by the schemas the stages agree on, with numbers
chosen so that each macro's expected text can be worked out by hand."""

from __future__ import annotations

import csv
import json
import re
import shutil
from pathlib import Path

import pytest

from builders import PROFILE, QUESTION, REPO_ROOT, read_macros, write_study
from lib.config import load_grid, parse_count, run_name
from lib.errors import UserError
from lib.report import write
from lib.report.section import Section, Table, Tabular
from lib.report.sections import SECTIONS
from lib.report.status import missing_items
from lib.report.study import load_study
from lib.report.write import write_report
from lib.tex import (
    MINUS,
    MISSING,
    escape,
    format_count,
    format_number,
)


def generate(tmp_path: Path, profile: str = PROFILE, unfinished: dict[str, str] | None = None,
             seeds: tuple[int, ...] | None = None) -> Path:
    paths = write_study(tmp_path / "study", profile, unfinished, seeds)
    out = tmp_path / "generated"
    write_report(load_study(paths["results"], paths["runs"], paths["data"], profile, seeds=seeds), out)
    return out


def generated_tex(out: Path) -> str:
    return "\n".join(path.read_text(encoding="utf-8") for path in sorted(out.rglob("*.tex")))


def test_macros_hold_the_studys_numbers(tmp_path):
    macros = read_macros(generate(tmp_path))
    grid = load_grid(PROFILE)
    last = len(grid.sizes) - 1
    # Hand-computed from write_study: base loss 3.14159, LoRA loss 2.5 - 0.2 i, ROUGE-L 20 + 2.5 i.
    assert macros["BaseTestLoss"] == "3.142"
    assert macros["BaseRougeL"] == "12.3" and macros["BaseRougeLLow"] == "11.3"
    assert macros["BestRun"] == run_name("lora", grid.sizes[-1], grid.default_seed, grid.default_seed)
    assert macros["BestRougeL"] == format_number(20.0 + 2.5 * last, 1)
    assert macros["BestGainRougeL"] == format_number(20.0 + 2.5 * last - 12.345, 1)
    assert macros["LoraSmallestTestLoss"] == "2.500"
    assert macros["QloraLargestRougeL"] == format_number(20.0 + 2.5 * last - 0.5, 1)
    assert macros["BaseMcqAccuracy"] == "41.2"  # 41.25 rounds half to even
    # data and splits
    assert macros["RawRecords"] == "1,200" and macros["CleanRecords"] == "1,112"
    assert macros["DroppedRecords"] == "88" and macros["DroppedPercent"] == "7.3"  # 88 / 1200
    assert macros["DroppedNearDuplicate"] == "55" and macros["LargestDropRule"] == r"near\_duplicate"
    assert macros["TestSize"] == "200" and macros["DevSize"] == "100" and macros["McqItems"] == "200"
    assert macros["LargestTrainSize"] == format_count(parse_count(grid.sizes[-1]))
    # configs: every run has the same value, so one value
    assert macros["LoraAlpha"] == "32" and macros["LoraRank"] == "16" and macros["Epochs"] == "1"
    assert macros["LearningRate"] == r"$2\times10^{-3}$" and macros["BatchLayout"] == "8 × 1 × 1"
    assert macros["Quantisation"] == "无（16 位基座） / 4 位 NF4 + 双重量化"  # lora and qlora differ
    assert macros["QloraQuantisation"] == "4 位 NF4 + 双重量化" and macros["LoraLoraRank"] == "16"
    # scaling and comparison
    assert macros["LoraFitAlpha"] == "0.432" and macros["QloraFitAlpha"] == "0.388"
    assert macros["LoraFitA"] == "56.8" and macros["LoraFitE"] == "1.234"
    assert macros["LoraHoldoutPercent"] == "3.0"  # |1.957 - 1.9| / 1.9
    assert macros["FitGridName"] == "默认网格" and macros["FitSizeCount"] == format_count(len(grid.sizes))
    assert macros["FitSizes"] == "、".join(format_count(parse_count(size)) for size in grid.sizes)
    assert macros["FitDegreesOfFreedom"] == macros["LoraFitResidualDof"] == format_count(len(grid.sizes) - 3)
    extended = r"\texttt{make all-experiments GRID=extended} 加上 10、25、50 条 3 个规模"
    assert extended in macros["FitDegreesOfFreedomNote"]
    assert macros["LoraLeaveOneOutMeanError"] == "0.041" and macros["LoraLeaveOneOutMaxError"] == "0.071"
    assert macros["LoraLeaveOneOutMaxSize"] == format_count(parse_count(grid.sizes[0]))
    assert macros["QloraMemoryRatio"] == "0.60" and macros["QloraThroughputRatio"] == "0.67"
    assert macros["QloraRougeLDiff"] == f"{MINUS}0.5" and macros["QloraRougeLDiffLow"] == f"{MINUS}1.3"
    assert macros["QloraLossDiffP"] == MISSING  # one seed: no p-value (test_one_seed_prints_no_p_value)
    assert macros["NumRougeLDiffsExcludingZero"] == "0"
    assert macros["NumLossDiffsExcludingZero"] == format_count(len(grid.sizes))
    assert macros["LoraRougeLPerDoubling"] == "2.5" and macros["QloraMcqAccuracyPerDoublingLow"] == f"{MINUS}4.0"
    # reproducibility
    assert macros["GitCommit"] == "0123456789ab" and macros["TorchVersion"] == "2.13.0"
    assert macros["ProfileName"] == PROFILE


def test_the_general_track_is_reported_with_each_runs_change_and_sentences_from_the_numbers(tmp_path):
    out = generate(tmp_path)
    macros = read_macros(out)
    grid = load_grid(PROFILE)
    last = len(grid.sizes) - 1
    # write_study: base general accuracy 52.5 (letter), +8 by acc_norm; cloze of the medical track 41.25 + 12
    assert macros["BaseGeneralAccuracy"] == "52.5" and macros["BaseGeneralAccNorm"] == "60.5"
    assert macros["BaseMcqAccNorm"] == "53.2" and macros["McqChance"] == macros["GeneralChance"] == "25.0"
    assert macros["NumGeneralSources"] == "1"
    findings = macros["GeneralFindings"]
    largest = format_count(parse_count(grid.sizes[-1]))
    change = format_number(-1.0 - 2.5 * last, 1)  # forgetting_entry: the general change at the largest size
    assert (f"LoRA 在最大规模（{largest} 条）上相对其起点基座模型："
            f"通用选择题字母准确率变化 {change} 个百分点") in findings
    assert "QLoRA 在最大规模" in findings and "起点基座模型（NF4）" in findings
    assert "区间整体低于 0，是可测的下降" in findings and "区间整体高于 0，是可测的上升" in findings  # general, medical
    # the smallest size's change -1.0 [-4.0, 2.0] contains 0: 3 of each method's 4 runs lie below 0
    assert "按字母准确率，8 个运行中区间整体低于 0 的有 6 个" in findings
    assert "区间含 0 说明这里测不出变化，并不证明没有遗忘" in findings
    table = (out / "tables" / "general.tex").read_text(encoding="utf-8")
    assert "完形准确率（按字归一，acc\\_norm）变化" in table and "\\ValueCI{52.5}" in table


def test_a_base_row_at_chance_on_the_general_track_is_said_to_have_nothing_to_lose(tmp_path):
    paths = write_study(tmp_path / "study", PROFILE)
    at_chance = {"value": 27.0, "ci_low": 19.0, "ci_high": 36.0, "n": 100}
    for run in ("base", "base-nf4"):
        result = json.loads((paths["runs"] / run / "eval.json").read_text(encoding="utf-8"))
        result["general"] |= {"overall": at_chance, "acc_norm": at_chance}
        (paths["runs"] / run / "eval.json").write_text(json.dumps(result), encoding="utf-8")
    assert "区间含随机水平" not in read_macros(generate(tmp_path / "healthy"))["GeneralFindings"]
    out = tmp_path / "generated"
    write_report(load_study(paths["results"], paths["runs"], paths["data"], PROFILE), out)
    findings = read_macros(out)["GeneralFindings"]
    assert findings.startswith("注意：基座模型的字母准确率、基座模型的完形准确率（按字归一，acc\\_norm）、"
                               "基座模型（NF4）的字母准确率")
    assert "在通用题上的区间含随机水平（25.0\\%）或低于它，即起点没有可测的通用知识可以失去" in findings


def test_each_method_starts_from_the_base_model_as_it_loads_it(tmp_path):
    out = generate(tmp_path)
    macros = read_macros(out)
    # write_study: base 3.14159, base-nf4 3.24159
    assert macros["LoraZeroDataTestLoss"] == macros["BaseTestLoss"] == "3.142"
    assert macros["QloraZeroDataTestLoss"] == "3.242" and macros["QloraZeroDataMcqAccuracy"] == "40.2"
    results = (out / "tables" / "results.tex").read_text(encoding="utf-8")
    assert "基座模型（NF4） & 0 &" in results and "为 QLoRA 的零数据对照" in results


def test_one_seed_prints_no_p_value_and_says_what_the_intervals_cover(tmp_path):
    out = generate(tmp_path)
    tex = generated_tex(out)
    assert "& $p$ &" not in tex and "p_value" not in tex  # no p column in any table
    assert all(value == MISSING for name, value in read_macros(out).items() if name.endswith("DiffP"))
    for table in ("lora_vs_qlora", "scaling"):
        assert ("区间只反映测试题的抽样误差，不包括训练的随机性"
                in (out / "tables" / f"{table}.tex").read_text(encoding="utf-8"))


def test_several_seeds_give_p_values_from_resampling_the_seeds(tmp_path):
    out = generate(tmp_path, seeds=(42, 7))
    comparison = (out / "tables" / "lora_vs_qlora.tex").read_text(encoding="utf-8")
    assert comparison.count("& $p$ &") == 2 and "先对训练种子、再对测试题重采样" in comparison
    macros = read_macros(out)
    assert macros["QloraLossDiffP"] == "< 0.001" and macros["QloraRougeLDiffP"] == "= 0.210"
    assert macros["NumTrainSeeds"] == "2"


def test_every_macro_is_defined_once_with_a_letters_only_name(tmp_path):
    text = (generate(tmp_path) / "macros.tex").read_text(encoding="utf-8")
    names = re.findall(r"\\newcommand\{\\([^}]*)\}", text)
    assert len(names) == len(set(names)) > 200
    assert all(re.fullmatch("[A-Za-z]+", name) for name in names)


def test_tables_escape_user_text_and_show_intervals(tmp_path):
    out = generate(tmp_path)
    tables = {path.stem: path.read_text(encoding="utf-8") for path in (out / "tables").glob("*.tex")}
    assert set(tables) == {"cleaning", "splits", "hyperparameters", "results", "cost", "scaling",
                           "lora_vs_qlora", "knowledge", "general", "examples", "preference", "reproducibility"}
    assert r"http://a.b/c\_d?x=1\&y=2" in tables["cleaning"] and r"100\% 广告" in tables["cleaning"]
    assert "0（改写 12）" in tables["cleaning"]  # normalisation rewrites records instead of dropping them
    assert r"\ValueCI{12.3}{11.3}{13.3}" in tables["results"]  # base ROUGE-L with its interval
    assert r"\texttt{cmexam}" in tables["knowledge"]
    assert QUESTION in tables["examples"]
    assert r"\$\%\&\_\#\{\}\textasciitilde{}\textasciicircum{}\textbackslash{}" in tables["examples"]
    assert "……" in tables["examples"]  # the long reference is cut
    assert "峰值常驻内存" in tables["cost"]
    assert "每步样本" in tables["cost"] and "每步 token" in tables["cost"]  # a step's unit, beside the steps


def test_partial_study_names_what_is_missing(tmp_path):
    grid = load_grid(PROFILE)
    seed = grid.default_seed
    missing, training = (run_name("qlora", size, seed, seed) for size in grid.sizes[-2:])
    not_evaluated = run_name("lora", grid.sizes[-1], seed, seed)
    out = generate(tmp_path, unfinished={missing: "missing", training: "training", not_evaluated: "not_evaluated"})
    status = (out / "status.tex").read_text(encoding="utf-8")
    assert r"\ReportCompletefalse" in status and r"\HaveResultstrue" in status
    for run in (missing, training, not_evaluated):
        assert escape(run) in status
    assert "尚未开始的运行（1 个）" in status and "训练未完成的运行（1 个）" in status
    macros = read_macros(out)
    assert macros["QloraLargestRougeL"] == r"\NA{}"  # a missing run gives a visible gap, not an error
    results = (out / "tables" / "results.tex").read_text(encoding="utf-8")
    assert r"\textit{训练未完成}" in results


def test_a_runs_note_is_printed_under_the_results(tmp_path):
    paths = write_study(tmp_path / "study", PROFILE)
    summary = paths["results"] / "summary.csv"
    with summary.open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    rows[2]["note"] = 'adapter_dtype "bfloat16" differs from the other runs\' "float32"'
    with summary.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    write_report(load_study(paths["results"], paths["runs"], paths["data"], PROFILE), tmp_path / "generated")
    results = (tmp_path / "generated" / "tables" / "results.tex").read_text(encoding="utf-8")
    assert f"注：{escape(rows[2]['run'])}：adapter\\_dtype \"bfloat16\" differs" in results


def test_the_hub_commits_of_model_and_data_are_in_the_reproducibility_table(tmp_path):
    paths = write_study(tmp_path / "study", PROFILE)
    model_commit, data_commit = "a" * 40, "b" * 40
    for config_file in paths["runs"].glob("*/config.json"):
        config = json.loads(config_file.read_text(encoding="utf-8"))
        config["resolved"]["model_origin"] = {"name": "Qwen/Qwen2.5-3B-Instruct", "commit": model_commit}
        config_file.write_text(json.dumps(config), encoding="utf-8")
    manifest_file = paths["data"] / "manifest.json"
    manifest = (json.loads(manifest_file.read_text(encoding="utf-8"))
                | {"source": {"type": "hub", "commit": data_commit}})
    manifest_file.write_text(json.dumps(manifest), encoding="utf-8")
    write_report(load_study(paths["results"], paths["runs"], paths["data"], PROFILE), tmp_path / "generated")
    macros = read_macros(tmp_path / "generated")
    # the base model's eval.json has no origin in this study: its value is shown beside the runs'
    assert macros["ModelCommit"] == "aaaaaaaaaaaa / 无（本地或生成的文件）"
    assert macros["DataCommit"] == "bbbbbbbbbbbb"


def test_absent_inputs_give_one_sentence_each(tmp_path):
    out = tmp_path / "generated"
    empty = tmp_path / "nothing"
    write_report(load_study(empty / "results", empty / "runs", empty / "data", "paper"), out)
    status = (out / "status.tex").read_text(encoding="utf-8")
    for section in ("Data", "Configs", "Results", "Scaling", "Comparison", "Knowledge", "Examples", "Provenance"):
        assert f"\\Have{section}false" in status
    assert r"\DemoProfilefalse" in status
    assert "summary.csv" in status and "cleaning\\_report.json" in status
    assert read_macros(out)["BestRougeL"] == r"\NA{}"
    assert (out / "report.done").is_file()


def test_bad_summary_cell_is_a_user_error(tmp_path):
    paths = write_study(tmp_path)
    summary = paths["results"] / "summary.csv"
    summary.write_text(summary.read_text(encoding="utf-8").replace("3.14159", "pi", 1), encoding="utf-8")
    with pytest.raises(UserError, match=r"summary.csv:2: column test_loss: 'pi' is not a number"):
        load_study(paths["results"], paths["runs"], paths["data"], PROFILE)


def test_a_narrowed_grid_expects_only_its_own_runs(tmp_path):
    # `make report SIZES="150 300"`: summarize was given two sizes, so summary.csv lists only them
    grid = load_grid(PROFILE)
    kept = grid.sizes[:2]
    paths = write_study(tmp_path / "study")
    summary = paths["results"] / "summary.csv"
    lines = summary.read_text(encoding="utf-8").splitlines(keepends=True)
    summary.write_text("".join(line for line in lines if line.split(",")[2] not in grid.sizes[2:]), encoding="utf-8")
    study = load_study(paths["results"], paths["runs"], paths["data"], PROFILE, sizes=kept)
    assert study.sizes == kept and study.default_seed == grid.default_seed
    out = tmp_path / "generated"
    counts = write_report(study, out)
    assert counts["missing"] == []  # the sizes left out are not missing runs
    macros = read_macros(out)
    assert macros["NumTrainSizes"] == "2" and macros["LargestTrainSize"] == format_count(parse_count(kept[-1]))
    assert r"\ReportCompletetrue" in (out / "status.tex").read_text(encoding="utf-8")
    # the full grid over the same summary names the runs of the other sizes as missing
    full = load_study(paths["results"], paths["runs"], paths["data"], PROFILE)
    missing_runs = [run_name(m, s, grid.default_seed, grid.default_seed) for m in grid.methods for s in grid.sizes[2:]]
    assert all(escape(run) in " ".join(missing_items(full)) for run in missing_runs)


def test_a_grid_of_one_method_defines_every_macro_the_text_quotes(tmp_path):
    # `make report METHODS=lora`: no QLoRA run at all, yet report.tex names \QloraFitAlpha and the like
    paths = write_study(tmp_path / "study")
    summary = paths["results"] / "summary.csv"
    lines = summary.read_text(encoding="utf-8").splitlines(keepends=True)
    summary.write_text("".join(line for line in lines if line.split(",")[1] != "qlora"), encoding="utf-8")
    for run_dir in paths["runs"].glob("qlora-*"):
        shutil.rmtree(run_dir)
    write_report(load_study(paths["results"], paths["runs"], paths["data"], PROFILE), tmp_path / "full")
    write_report(load_study(paths["results"], paths["runs"], paths["data"], PROFILE, methods=("lora",)),
                 tmp_path / "lora")
    assert set(read_macros(tmp_path / "full")) <= set(read_macros(tmp_path / "lora"))
    assert read_macros(tmp_path / "lora")["QloraLargestRougeL"] == r"\NA{}"


def test_only_the_analysed_trends_have_macros(tmp_path):
    macros = read_macros(generate(tmp_path))
    per_doubling = {name for name in macros if name.endswith(("PerDoubling", "PerDoublingLow", "PerDoublingHigh"))}
    # rougeL and mcq_accuracy (lib.summarize.schema.TREND_METRICS), and the loss fit's slope (FitSlopePerDoubling),
    # x 2 methods x value, low, high
    assert len(per_doubling) == 3 * 2 * 3 and "LoraTestLossPerDoubling" not in per_doubling
    assert (macros["LoraFitSlopePerDoubling"] == f"{MINUS}0.200"
            and macros["QloraFitSlopePerDoublingLow"] == f"{MINUS}0.260")


def test_a_summary_row_with_too_many_cells_is_a_user_error(tmp_path):
    paths = write_study(tmp_path)
    summary = paths["results"] / "summary.csv"
    lines = summary.read_text(encoding="utf-8").splitlines()
    header_cells = len(lines[0].split(","))
    lines[2] += ",extra,cells"
    summary.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(UserError,
                       match=rf"summary.csv:3: {header_cells + 2} cells, but the header names {header_cells}"):
        load_study(paths["results"], paths["runs"], paths["data"], PROFILE)


def test_the_best_run_is_the_one_examples_json_names(tmp_path):
    paths = write_study(tmp_path / "study")
    grid = load_grid(PROFILE)
    chosen = run_name("qlora", grid.sizes[0], grid.default_seed, grid.default_seed)
    examples = paths["results"] / "examples.json"
    examples.write_text(json.dumps(json.loads(examples.read_text(encoding="utf-8")) | {"best_run": chosen}),
                        encoding="utf-8")
    out = tmp_path / "generated"
    write_report(load_study(paths["results"], paths["runs"], paths["data"], PROFILE), out)
    macros = read_macros(out)
    assert macros["BestRun"] == chosen and macros["BestMethod"] == "QLoRA"
    assert macros["BestRougeL"] == format_number(20.0 - 0.5, 1)  # qlora at the smallest size


def test_the_sections_are_those_report_tex_switches_on_and_inputs():
    report_tex = (REPO_ROOT / "paper" / "report.tex").read_text(encoding="utf-8")
    assert {section.name for section in SECTIONS} == set(re.findall(r"\\ifHave([A-Za-z]+)", report_tex))
    assert set(re.findall(r"\\([A-Za-z]+)MissingNote", report_tex)) <= {section.name for section in SECTIONS}
    stems = [file.stem for section in SECTIONS for file in section.files]
    assert sorted(stems) == sorted(set(re.findall(r"\\input\{\\GeneratedDir/tables/([a-z_]+)\}", report_tex)))


def test_a_table_can_be_missing_while_its_section_is_there(tmp_path):
    # every fine-tuned run still training: summary.csv has the rows (the results section is
    # there) but no run has a training time, so the cost table says why it is empty
    grid = load_grid(PROFILE)
    seed = grid.default_seed
    training = {run_name(m, s, seed, seed): "training" for m in grid.methods for s in grid.sizes}
    out = generate(tmp_path, unfinished=training)
    assert r"\HaveResultstrue" in (out / "status.tex").read_text(encoding="utf-8")
    cost = (out / "tables" / "cost.tex").read_text(encoding="utf-8")
    assert r"\MissingInput{还没有运行完成训练，训练成本尚无法给出。}" in cost and r"\label{tab:cost}" in cost
    assert r"\textit{训练未完成}" in (out / "tables" / "results.tex").read_text(encoding="utf-8")


def test_a_new_section_is_one_declaration(tmp_path, monkeypatch):
    def wide(study) -> list[Tabular]:  # two floats: a table too wide for one
        return [Tabular("l", ["运行"], [[r"\texttt{a}"]]), Tabular("l", ["运行"], [[r"\texttt{b}"]], note="注")]

    extra = Section(name="Readability", present=lambda study: study.rows is not None,
                    missing_sentence=lambda study: "还没有可读性评测。", macros=lambda study: {"NumVotes": "12"},
                    files=(Table("readability", "可读性", "tab:readability", wide),))
    monkeypatch.setattr(write, "SECTIONS", (*SECTIONS, extra))
    out = generate(tmp_path)
    assert read_macros(out)["NumVotes"] == "12"
    status = (out / "status.tex").read_text(encoding="utf-8")
    assert r"\HaveReadabilitytrue" in status
    assert r"\newcommand{\ReadabilityMissingNote}{\MissingInput{还没有可读性评测。}}" in status
    readability = (out / "tables" / "readability.tex").read_text(encoding="utf-8")
    assert r"\caption{可读性（1/2）}\label{tab:readability}" in readability
    assert r"\caption{可读性（2/2）}\label{tab:readability:2}" in readability and readability.count("注") == 1
    # without its inputs, the same declaration gives the float that says what is missing
    out = tmp_path / "empty-generated"
    write.write_report(load_study(tmp_path / "none", tmp_path / "none", tmp_path / "none", PROFILE), out)
    assert (r"\caption{可读性}\label{tab:readability}"
            in (out / "tables" / "readability.tex").read_text(encoding="utf-8"))
    assert r"\HaveReadabilityfalse" in (out / "status.tex").read_text(encoding="utf-8")


def test_a_macro_defined_by_two_sections_is_an_error(tmp_path, monkeypatch):
    clash = Section(name="Clash", present=lambda study: True, missing_sentence=lambda study: "",
                    macros=lambda study: {"BestRun": "x"}, files=())
    monkeypatch.setattr(write, "SECTIONS", (*SECTIONS, clash))
    with pytest.raises(ValueError, match=r"macro names defined twice \(section Clash\): \['BestRun'\]"):
        generate(tmp_path)
