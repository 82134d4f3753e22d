"""The knowledge track's items: reading multiple-choice files (lib/data/mcq.py) of every shape the
field uses, and the `mcq-data` command."""

from __future__ import annotations

import csv
import json

import pytest
from huggingface_hub import errors

from builders import fake_hub_download, unreachable_hub, write_jsonl
from lib.config import load_config
from lib.data import mcq as mcq_data
from lib.data.sources import read_examples
from lib.data.synthetic import generate_mcq
from lib.errors import UserError
from lib.io import read_json, read_jsonl

# --- reading the shapes of the field --------------------------------------------------------------

CMB = {"exam_type": "医师考试", "exam_class": "执业医师", "exam_subject": "口腔执业医师",
       "question": "此男孩可能患", "answer": "D", "question_type": "单项选择题",
       "option": {"A": "小叶型肺炎", "B": "浸润性肺结核", "C": "继发性肺结核", "D": "原发性肺结核", "E": ""}}
CMEXAM = {"Question": "治疗肺结核的首选药物是", "Options": "A 异烟肼\nB 青霉素\nC 阿莫西林\nD 甲硝唑",
          "Answer": "A"}
MEDQA = {"question": "最可能的诊断是", "options": {"A": "肺炎", "B": "哮喘", "C": "肺结核", "D": "气胸"},
         "answer": "肺结核", "answer_idx": "C", "meta_info": "卫生部"}
APOLLO = {"question": "钙的生理功能有", "answer": "(C)", "source": "cmmlu-medical",
          "options": "(A) 抗氧化.\n(B) 维持视觉.\n(C) 与骨骼牙齿发育有关.\n(D) 促进食欲."}


def item_of(record, source="file"):
    return mcq_data.to_item(record, source, "file", 1)


def test_each_shape_becomes_one_normalised_item():
    assert item_of(CMB) == {"id": "file-1", "source": "file/医师考试", "question": "此男孩可能患",
                            "options": {"A": "小叶型肺炎", "B": "浸润性肺结核", "C": "继发性肺结核",
                                        "D": "原发性肺结核"},
                            "answer": "D"}  # CMB's empty option E is padding, dropped
    assert item_of(CMEXAM)["options"] == {"A": "异烟肼", "B": "青霉素", "C": "阿莫西林", "D": "甲硝唑"}
    assert item_of(CMEXAM)["answer"] == "A" and item_of(CMEXAM)["source"] == "file"
    assert item_of(MEDQA)["answer"] == "C"  # answer_idx, not the option text in `answer`
    apollo = item_of(APOLLO)
    assert apollo["options"]["C"] == "与骨骼牙齿发育有关" and apollo["answer"] == "C"  # Apollo's "." removed
    assert apollo["source"] == "cmmlu-medical"


@pytest.mark.parametrize("record, reason", [
    ({**CMEXAM, "Answer": "F"}, "answer 'F' is not among the options ABCD"),
    ({**MEDQA, "answer_idx": None, "answer": "肺结核"}, "is not an option letter"),
    ({**CMEXAM, "Options": "A 异烟肼"}, "1 option(s), a question needs at least two"),
    ({**CMEXAM, "Options": "甲 异烟肼\n乙 青霉素"}, "does not start with option A"),
    ({**MEDQA, "options": {"A": "肺炎", "C": "肺结核"}}, "option letters AC do not run A, B, C"),
    ({**MEDQA, "question": ""}, "no question text"),
])
def test_malformed_records_say_why(record, reason):
    with pytest.raises(mcq_data.Malformed, match=reason.replace("(", r"\(").replace(")", r"\)")):
        item_of(record)


def test_several_correct_letters_are_skipped_not_malformed():
    with pytest.raises(mcq_data.MultipleAnswer):
        item_of({**APOLLO, "answer": "(ACE)"})


def test_a_gbk_cmmlu_csv_with_line_numbers(tmp_path):
    path = tmp_path / "cmmlu_anatomy.csv"
    with path.open("w", encoding="gbk", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["", "Question", "A", "B", "C", "D", "Answer"])
        writer.writerow(["0", "人体最大的器官是", "皮肤", "肝脏", "肺", "心脏", "A"])
        writer.writerow(["1", "成人骨骼共有", "206块", "186块", "226块", "306块", "A"])
    read = mcq_data.read_items(path, "cmmlu_anatomy", max_bad_fraction=0.0)
    assert read.encoding == "gb18030" and read.skipped == []
    assert read.examples[1] == {"id": "cmmlu-anatomy-3", "source": "cmmlu_anatomy", "question": "成人骨骼共有",
                             "options": {"A": "206块", "B": "186块", "C": "226块", "D": "306块"}, "answer": "A"}


def test_a_bad_answer_is_counted_with_its_line_and_fatal_above_the_threshold(tmp_path):
    records = [CMEXAM] * 9 + [{**CMEXAM, "Answer": "F"}]
    path = write_jsonl(tmp_path / "cmexam.jsonl", records)
    read = mcq_data.read_items(path, "cmexam", max_bad_fraction=0.1)
    assert len(read.examples) == 9 and read.malformed == [(10, "answer 'F' is not among the options ABCD")]
    with pytest.raises(UserError, match=r"1 of 10 records are malformed .*first at line 10: answer 'F'"):
        mcq_data.read_items(path, "cmexam", max_bad_fraction=0.05)


def test_a_question_answer_file_is_one_error(tmp_path):
    path = write_jsonl(tmp_path / "qa.jsonl", [{"instruction": "头痛怎么办", "input": "", "output": "多休息"}])
    with pytest.raises(UserError,
                       match=r"qa.jsonl:1: not multiple-choice items \(fields: instruction, input, output\)"):
        mcq_data.read_items(path, "qa", max_bad_fraction=0.01)


def test_items_of_other_keys_are_refused_with_the_mapping_and_read_through_it(tmp_path, run_cli):
    items = [{"题目": "高血压首选就诊科室是", "选项": "A. 骨科\nB. 心内科", "答案": "B", "来源": "模拟题"}] * 3
    path = write_jsonl(tmp_path / "exam.jsonl", items)
    with pytest.raises(UserError) as error:
        mcq_data.read_items(path, "exam", max_bad_fraction=0.01)
    assert str(error.value).endswith('or name its keys: MCQ_COLUMNS="question=<key> options=<key> answer=<key>" '
                                     "(eval.mcq_columns)")
    columns = {"question": "题目", "options": "选项", "answer": "答案", "source": "来源"}
    read = mcq_data.read_items(path, "exam", 0.01, columns)
    assert read.examples[0] == {"id": "exam-1", "source": "模拟题", "question": "高血压首选就诊科室是",
                                "options": {"A": "骨科", "B": "心内科"}, "answer": "B"}
    with pytest.raises(UserError, match="eval.mcq_columns names the key '选择', which the record lacks .*did you mean "
                                        "'选项'"):
        mcq_data.read_items(path, "exam", 0.01, columns | {"options": "选择"})
    done = run_cli("mcq-data", "--profile", "demo", "--set", f"eval.mcq_source={path}", "--set",
                   "eval.mcq_columns=question=题目,options=选项,answer=答案", "--out", tmp_path / "mcq.jsonl")
    assert done.returncode == 0, done.stderr
    assert read_json(tmp_path / "mcq_report.json")["source"]["columns"] == {"question": "题目", "options": "选项",
                                                                           "answer": "答案"}


def test_a_missing_local_file_is_one_error_naming_the_setting(tmp_path):
    config = load_config("paper", overrides=[f"eval.mcq_source={tmp_path / 'nope.json'}"])
    with pytest.raises(UserError,
                       match=r"^eval\.mcq_source: '.*nope\.json' is not hub, synthetic or an existing file$"):
        mcq_data.prepare(config, tmp_path / "mcq.jsonl")


def test_skipped_multiple_answer_items_count_among_the_records_for_the_malformed_share(tmp_path):
    records = [CMEXAM] * 8 + [{**CMEXAM, "Answer": "AB"}, {**CMEXAM, "Answer": "F"}]
    path = write_jsonl(tmp_path / "cmexam.jsonl", records)
    read = mcq_data.read_items(path, "cmexam", max_bad_fraction=0.1)  # 1 malformed of 10 records = 10%
    assert (len(read.examples), read.records) == (8, 10)
    assert read.skipped == [(9, "several correct letters AB; the knowledge track scores one letter per item")]


def test_a_file_of_only_multiple_answer_items_is_one_error(tmp_path):
    path = write_jsonl(tmp_path / "multi.jsonl", [{**CMEXAM, "Answer": "ACD"}] * 3)
    with pytest.raises(UserError, match=r"multi\.jsonl: no usable records \(3 skipped\); line 1: several correct "
                                        r"letters ACD"):
        mcq_data.read_items(path, "multi", max_bad_fraction=0.01)


CMMLU_ROW = {"": "0", "Question": "人体最大的器官是", "A": "皮肤", "B": "肝脏", "C": "肺", "D": "心脏", "Answer": "A"}


@pytest.mark.parametrize("record", [CMB, CMEXAM, MEDQA, APOLLO, CMMLU_ROW],
                         ids=["cmb", "cmexam", "medqa", "apollo", "cmmlu"])
def test_one_definition_of_a_multiple_choice_record_serves_both_readers(tmp_path, record):
    path = write_jsonl(tmp_path / "items.jsonl", [record])
    assert len(mcq_data.read_items(path, "items", max_bad_fraction=0.0).examples) == 1
    with pytest.raises(UserError, match=r"items\.jsonl:1: looks like a multiple-choice file"):
        read_examples(path, "items", max_bad_fraction=0.0)


def test_the_command_samples_and_writes_the_report_first(tmp_path, run_cli):
    path = tmp_path / "apollo.json"
    records = [{**APOLLO, "question": f"第{i}题：钙的生理功能有"} for i in range(30)] + [{**APOLLO, "answer": "(AB)"}]
    path.write_text(json.dumps(records, ensure_ascii=False, indent=2), encoding="utf-8")
    out = tmp_path / "processed" / "mcq.jsonl"
    done = run_cli("mcq-data", "--profile", "paper", "--set", f"eval.mcq_source={path}", "--set", "eval.mcq_size=10",
                   "--out", out)
    assert done.returncode == 0, done.stderr
    items = list(read_jsonl(out))
    lines = [int(item["id"].rsplit("-", 1)[1]) for item in items]
    assert len(items) == 10 and lines == sorted(lines)  # a sample, kept in file order
    report = read_json(out.with_name("mcq_report.json"))
    assert report["single_answer_items"] == 30 and report["multiple_answer_skipped"] == 1
    assert report["sampled"] == 10 and report["per_source"] == {"cmmlu-medical": 10}
    assert "10 of 30 single-answer items (1 multiple-answer and 0 malformed skipped)" in done.stdout
    again = run_cli("mcq-data", "--profile", "paper", "--set", f"eval.mcq_source={path}", "--set", "eval.mcq_size=10",
                    "--out", tmp_path / "again.jsonl")
    assert again.returncode == 0 and (tmp_path / "again.jsonl").read_bytes() == out.read_bytes()  # seeded


def test_the_demo_uses_the_generated_items(tmp_path):
    config = load_config("demo")
    report = mcq_data.prepare(config, tmp_path / "mcq.jsonl")
    assert list(read_jsonl(tmp_path / "mcq.jsonl")) == generate_mcq(config.eval.mcq_size, config.data.seed)
    assert report["source"]["type"] == "synthetic" and report["sampled"] == config.eval.mcq_size


def test_the_hub_file_is_downloaded_and_read(tmp_path, monkeypatch):
    commit = "0123456789abcdef0123456789abcdef01234567"
    config = load_config("paper", overrides=["eval.mcq_size=2"])
    cached, calls = fake_hub_download(monkeypatch, tmp_path, commit, config.eval.mcq_hub_file)
    cached.write_text(json.dumps([CMB, {**CMB, "answer": "ABD", "question_type": "多项选择题"}, CMB, CMB],
                                 ensure_ascii=False, indent=4), encoding="utf-8")
    report = mcq_data.prepare(config, tmp_path / "mcq.jsonl")
    assert calls == [{"repo_id": "FreedomIntelligence/CMB", "filename": "CMB-Exam/CMB-train/CMB-train-merge.json",
                      "repo_type": "dataset", "revision": "main"}]  # no endpoint passed: HF_ENDPOINT decides
    assert report["source"]["commit"] == commit and report["multiple_answer_skipped"] == 1
    items = list(read_jsonl(tmp_path / "mcq.jsonl"))
    assert [item["source"] for item in items] == ["CMB/医师考试"] * 2 and items[0]["id"].startswith("cmb-")


def test_no_network_is_one_line_that_names_the_local_file_option(tmp_path, monkeypatch):
    unreachable_hub(monkeypatch, errors.LocalEntryNotFoundError("cannot find the requested files in the local cache"))
    with pytest.raises(UserError) as raised:
        mcq_data.prepare(load_config("paper"), tmp_path / "mcq.jsonl")
    message = str(raised.value)
    assert message.startswith("could not reach the Hugging Face hub") and "\n" not in message
    assert "make data MCQ_SOURCE=path" in message and "HF_ENDPOINT" in message
    assert not (tmp_path / "mcq.jsonl").exists()


def test_the_development_file_reads_as_a_new_user_would(shared_data, tmp_path):
    read = mcq_data.read_items(shared_data / "apollo_zh_dev.mcq.json", "apollo_zh_dev", max_bad_fraction=0.01)
    assert not read.malformed and len(read.examples) + len(read.skipped) == 437
    assert {item["source"] for item in read.examples} == {"cmb-single", "cmexam", "medqa-mcmle", "cmmlu-medical"}
    assert all(item["answer"] in item["options"] and not item["options"]["A"].endswith(".") for item in read.examples)


# --- the general-ability track -------------------------------------------------------------------

CMMLU_COMMIT = load_config("paper").eval.general_hub_revision


def cmmlu_zip(subjects: dict[str, list[dict]]) -> bytes:
    """A zip shaped as CMMLU v1.0.1: test/<subject>.csv (,Question,A,B,C,D,Answer) and dev/ beside it."""
    import io
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for subject, rows in subjects.items():
            text = io.StringIO()
            writer = csv.DictWriter(text, fieldnames=list(CMMLU_ROW), lineterminator="\n")
            writer.writeheader()
            writer.writerows(rows)
            archive.writestr(f"test/{subject}.csv", text.getvalue())
            archive.writestr(f"dev/{subject}.csv", "")
    return buffer.getvalue()


def general_row(i: int, **changes) -> dict:
    return {**CMMLU_ROW, "": str(i), "Question": f"第{i}题：长江注入哪个海？", "A": "东海", "B": "黄海", **changes}


def test_the_general_track_reads_cmmlus_subjects_through_HF_ENDPOINT_and_prints_the_licence(tmp_path, run_cli):
    from builders import hub_mirror

    config = load_config("paper")
    subjects = {"chinese_history": [general_row(i) for i in range(6)] + [general_row(6, Answer="Z")],
                "astronomy": [general_row(i) for i in range(4)], "college_medicine": [general_row(0)]}
    out = tmp_path / "processed" / "general.jsonl"
    with hub_mirror(config.eval.general_hub_repo, CMMLU_COMMIT, {config.eval.general_hub_file: cmmlu_zip(subjects)},
                    repo_type="dataset") as (mirror, requests):
        done = run_cli("mcq-data", "--profile", "paper", "--track", "general", "--set", "eval.general_size=8",
                       "--set", "eval.general_subjects=[chinese_history, astronomy]",
                       "--set", "data.max_bad_fraction=0.2",
                       "--out", out,
                       env={"HF_ENDPOINT": mirror, "HF_HUB_CACHE": str(tmp_path / "cache"), "HF_HUB_OFFLINE": "0"})
    assert done.returncode == 0, done.stderr
    assert requests[-1] == f"GET /datasets/haonan-li/cmmlu/resolve/{CMMLU_COMMIT}/cmmlu_v1_0_1.zip"
    report = read_json(tmp_path / "processed" / "general_report.json")
    assert report["track"] == "general" and report["source"]["commit"] == CMMLU_COMMIT
    assert report["single_answer_items"] == 10 and report["malformed_lines"] == 1  # college_medicine not read
    assert report["malformed_examples"][0]["why"].startswith("chinese_history: answer 'Z'")
    assert report["sampled"] == 8 and set(report["per_source"]) == {"chinese_history", "astronomy"}
    assert report["license"] == "haonan-li/cmmlu: CC BY-NC 4.0 (research use only)"
    assert "mcq-data: general: licence: haonan-li/cmmlu: CC BY-NC 4.0 (research use only)" in done.stdout
    assert not (tmp_path / "processed" / "mcq.jsonl").exists()


def test_a_subject_the_zip_lacks_is_one_error_naming_it(tmp_path, monkeypatch):
    config = load_config("paper", overrides=["eval.general_subjects=[astronomy, geology]"])
    cached, _ = fake_hub_download(monkeypatch, tmp_path, CMMLU_COMMIT, config.eval.general_hub_file)
    cached.write_bytes(cmmlu_zip({"astronomy": [general_row(0)]}))
    with pytest.raises(UserError, match=r"no test/geology\.csv for subject 'geology' \(eval\.general_subjects"):
        mcq_data.prepare(config, tmp_path / "general.jsonl", "general")


def test_the_general_track_offline_is_one_line_naming_its_local_file_option(tmp_path, monkeypatch):
    unreachable_hub(monkeypatch, errors.LocalEntryNotFoundError("cannot find the requested files in the local cache"))
    with pytest.raises(UserError) as raised:
        mcq_data.prepare(load_config("paper"), tmp_path / "general.jsonl", "general")
    message = str(raised.value)
    assert message.startswith("could not reach the Hugging Face hub") and "\n" not in message
    assert "make data GENERAL_SOURCE=path" in message and "haonan-li/cmmlu" in message


def test_a_local_general_file_replaces_the_hub(tmp_path, run_cli):
    path = tmp_path / "general.csv"
    with path.open("w", encoding="gbk", newline="") as handle:  # CMMLU's own CSV shape, in GBK
        writer = csv.DictWriter(handle, fieldnames=list(CMMLU_ROW), lineterminator="\n")
        writer.writeheader()
        writer.writerows(general_row(i) for i in range(5))
    done = run_cli("mcq-data", "--profile", "paper", "--track", "general", "--set", f"eval.general_source={path}",
                   "--out", tmp_path / "out" / "general.jsonl")
    assert done.returncode == 0, done.stderr
    report = read_json(tmp_path / "out" / "general_report.json")
    assert report["sampled"] == 5 and report["license"] == "a local file: its own licence applies"


def test_the_demo_general_items_ask_the_facts_of_the_tiny_bases_pages(tmp_path):
    from lib.data.general_facts import facts, general_pages, generate_general_mcq

    config = load_config("demo")
    report = mcq_data.prepare(config, tmp_path / "general.jsonl", "general")
    items = list(read_jsonl(tmp_path / "general.jsonl"))
    assert items == generate_general_mcq(config.eval.general_size, config.data.seed)
    assert report["license"].startswith("generated by this project") and len(items) == 100
    assert {item["source"] for item in items} == {f"synthetic-general-{d}" for d in ("geography", "history", "science")}
    pages = "".join(text for _, text in general_pages(len(facts()), seed=0))  # one page per fact
    for item in items:  # the right option is stated on the pages; the wrong ones are other facts' answers
        assert item["options"][item["answer"]] in pages
    assert len({(item["question"], item["answer"], tuple(item["options"].values())) for item in items}) == 100
