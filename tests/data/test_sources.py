"""Reading local files (lib/data/sources.py): every shape, container and encoding the field uses,
and the errors for files that are not question-answer data."""

from __future__ import annotations

import csv
import io
import json

import pytest

from builders import write_jsonl
from lib.data import sources
from lib.data.sources import read_examples
from lib.errors import UserError


def read(path, max_bad_fraction=0.01):
    return read_examples(path, source="test", max_bad_fraction=max_bad_fraction)


def triples(result):
    return [(e.question, e.answer, e.history) for e in result.examples]


def test_alpaca_json_lines_appends_input_to_instruction(tmp_path):
    path = write_jsonl(tmp_path / "a.jsonl", [
        {"instruction": "头痛怎么办？", "input": "女，30岁", "output": "多休息，必要时服用布洛芬。"},
        "",
        {"instruction": "发烧怎么办？", "input": "", "output": "多喝水，体温超过38.5度可以退热。"},
    ])
    result = read(path)
    assert triples(result) == [
        ("头痛怎么办？\n女，30岁", "多休息，必要时服用布洛芬。", []),
        ("发烧怎么办？", "多喝水，体温超过38.5度可以退热。", []),
    ]
    assert [e.line for e in result.examples] == [1, 3]  # the blank line 2 is skipped, not counted
    assert (result.shape, result.encoding, result.malformed) == ("alpaca", "utf-8", [])
    assert {e.source for e in result.examples} == {"test"}


def test_json_array_keeps_the_line_each_record_starts_on(tmp_path):
    records = [{"instruction": "问题一", "input": "", "output": "回答一"},
               {"instruction": "问题二", "input": "", "output": "回答二"}]
    path = tmp_path / "a.json"
    path.write_text(json.dumps(records, ensure_ascii=False, indent=2), encoding="utf-8")
    # "[" on line 1, then each record spans 5 lines: "  {", three fields, "  }"
    result = read(path)
    assert [(e.question, e.line) for e in result.examples] == [("问题一", 2), ("问题二", 7)]


@pytest.mark.parametrize("question_field, answer_field, shape", [
    ("question", "answer", "question/answer"),
    ("query", "response", "query/response"),
    ("prompt", "response", "prompt/response"),
    ("ask", "answer", "title+ask/answer"),
])
def test_question_answer_pairs(tmp_path, question_field, answer_field, shape):
    path = write_jsonl(tmp_path / "p.jsonl", [{question_field: "胃痛吃什么药？", answer_field: "可以先服用奥美拉唑。"}])
    result = read(path)
    assert triples(result) == [("胃痛吃什么药？", "可以先服用奥美拉唑。", [])]
    assert result.shape == shape


def test_sharegpt_turns_become_history(tmp_path):
    conversation = [
        {"from": "system", "value": "你是医生"},
        {"from": "human", "value": "我咳嗽三天了"}, {"from": "gpt", "value": "有没有发热？"},
        {"from": "human", "value": "没有发热"}, {"from": "gpt", "value": "可以先多喝水观察。"},
    ]
    result = read(write_jsonl(tmp_path / "s.jsonl", [{"conversations": conversation}]))
    assert triples(result) == [("没有发热", "可以先多喝水观察。", [("我咳嗽三天了", "有没有发热？")])]
    assert result.shape == "sharegpt"


def test_openai_messages(tmp_path):
    messages = [{"role": "system", "content": "你是医生"}, {"role": "user", "content": "牙疼怎么办？"},
                {"role": "assistant", "content": "建议到口腔科检查是否有龋齿。"}]
    result = read(write_jsonl(tmp_path / "m.jsonl", [{"messages": messages}]))
    assert triples(result) == [("牙疼怎么办？", "建议到口腔科检查是否有龋齿。", [])]
    assert result.shape == "messages"


def test_gbk_csv_with_department_title_ask_answer(tmp_path):
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["department", "title", "ask", "answer"])
    writer.writerow(["心血管科", "高血压能吃党参吗？", "我有高血压，最近家人买了党参泡水喝，可以吗？",
                     "党参性平，一般可以少量食用。"])
    writer.writerow(["内科", "失眠怎么办", "失眠怎么办，已经一个月了", "规律作息，\n睡前不要看手机。"])
    path = tmp_path / "dialogue.csv"
    path.write_bytes(buffer.getvalue().encode("gbk"))
    result = read(path)
    assert result.encoding == "gb18030"
    assert triples(result) == [
        ("高血压能吃党参吗？\n我有高血压，最近家人买了党参泡水喝，可以吗？", "党参性平，一般可以少量食用。", []),
        ("失眠怎么办，已经一个月了", "规律作息，\n睡前不要看手机。", []),  # the title repeats the question
    ]
    assert [e.line for e in result.examples] == [2, 3]


def test_a_csv_field_longer_than_csvs_default_limit_is_read(tmp_path):
    answer = "多休息，注意饮食。" * 20_000  # 180,000 characters; csv's default limit is 131,072
    path = tmp_path / "long.csv"
    path.write_text(f"question,answer\n头痛怎么办,{answer}\n", encoding="utf-8")
    assert triples(read(path)) == [("头痛怎么办", answer, [])]


def test_a_csv_the_csv_module_refuses_is_one_error_naming_the_line(tmp_path, monkeypatch):
    path = tmp_path / "rows.csv"
    path.write_text("question,answer\n头痛怎么办,多休息\n发烧怎么办,多喝水，体温超过38.5度可以退热\n", encoding="utf-8")
    process_limit = csv.field_size_limit()  # csv's limit is global: put it back afterwards
    monkeypatch.setattr(sources, "CSV_FIELD_LIMIT", 10)  # a real csv.Error, on a small file
    try:
        with pytest.raises(UserError) as error:
            read(path)
    finally:
        csv.field_size_limit(process_limit)
    assert str(error.value).endswith("rows.csv:3: not readable as CSV (field larger than field limit (10))")


def test_a_line_separator_inside_a_json_string_does_not_split_the_line(tmp_path):
    # json.dumps(ensure_ascii=False) leaves U+2028 and U+0085 unescaped
    answer = "先测血压\u2028再看结果\x85"
    path = write_jsonl(tmp_path / "sep.jsonl", [{"question": "头晕", "answer": answer},
                                                {"question": "咳嗽", "answer": "多喝水"}])
    result = read(path)
    assert triples(result) == [("头晕", answer, []), ("咳嗽", "多喝水", [])]
    assert [e.line for e in result.examples] == [1, 2] and result.malformed == []


def test_utf8_with_bom(tmp_path):
    path = tmp_path / "bom.jsonl"
    path.write_bytes(b"\xef\xbb\xbf"
                     + json.dumps({"question": "头晕", "answer": "测一下血压"}, ensure_ascii=False).encode())
    assert triples(read(path)) == [("头晕", "测一下血压", [])]


def test_list_of_strings_fields_are_joined(tmp_path):
    path = tmp_path / "lists.json"
    path.write_text(json.dumps([{"question": ["孩子发烧", "38度"],
                                 "answer": ["先物理降温。", "超过38.5度服用退热药。"]}],
                               ensure_ascii=False), encoding="utf-8")
    assert triples(read(path)) == [("孩子发烧\n38度", "先物理降温。\n超过38.5度服用退热药。", [])]


def test_history_field(tmp_path):
    path = write_jsonl(tmp_path / "h.jsonl", [
        {"instruction": "那要吃药吗？", "input": "", "output": "血压持续偏高需要服药。",
         "history": [["血压140/90高吗？", "属于高血压。"]]},
    ])
    assert triples(read(path)) == [("那要吃药吗？", "血压持续偏高需要服药。", [("血压140/90高吗？", "属于高血压。")])]


def test_unknown_shape_is_one_error_naming_file_and_fields(tmp_path):
    path = write_jsonl(tmp_path / "odd.jsonl", [{"text": "随便一段文字", "label": 1}])
    with pytest.raises(UserError, match=r"odd\.jsonl:1: unknown record shape \(fields: text, label\)"):
        read(path)


def test_keys_of_another_language_are_refused_with_the_mapping_that_reads_them(tmp_path):
    path = write_jsonl(tmp_path / "dialog.jsonl", [{"患者": "头痛三天了怎么办？", "医生": "先测量血压，必要时就诊。"}])
    with pytest.raises(UserError) as error:
        read(path)
    message = str(error.value)
    assert "dialog.jsonl:1: unknown record shape (fields: 患者, 医生); expected instruction/input/output" in message
    assert message.endswith('map its keys: COLUMNS="question=患者 answer=医生" (or data.columns in a YAML file)')


@pytest.mark.parametrize("record, hint", [
    ({"Question": "头痛怎么办？", "Answer": "多休息。"}, 'did you mean question/answer (question/answer)? '
                                                   'COLUMNS="question=Question answer=Answer" reads it as it is'),
    ({"instruction": "头痛怎么办？", "input": "", "ouput": "多休息。"},
     'did you mean instruction/output (alpaca)? COLUMNS="question=instruction query=input answer=ouput"'),
    ({"Messages": []}, 'did you mean \'messages\' (messages)? COLUMNS="messages=Messages"'),
])
def test_keys_close_to_a_known_shape_are_named_with_a_did_you_mean(tmp_path, record, hint):
    with pytest.raises(UserError) as error:
        read(write_jsonl(tmp_path / "close.jsonl", [record]))
    assert hint in str(error.value)


def test_a_column_mapping_reads_a_file_of_any_keys(tmp_path):
    path = write_jsonl(tmp_path / "dialog.jsonl", [
        {"患者": "头痛三天了怎么办？", "补充": "女，30岁", "医生": "先测量血压。", "此前": [["发烧吗？", "不发烧。"]]},
    ])
    columns = {"question": "患者", "query": "补充", "answer": "医生", "history": "此前"}
    result = read_examples(path, "test", 0.01, columns)
    assert triples(result) == [("头痛三天了怎么办？\n女，30岁", "先测量血压。", [("发烧吗？", "不发烧。")])]
    assert result.shape == "columns question=患者, query=补充, answer=医生, history=此前"
    # LLaMA-Factory's names of the same roles
    same = {"prompt": "患者", "query": "补充", "response": "医生", "history": "此前", "system": "系统"}
    assert triples(read_examples(path, "test", 0.01, same)) == triples(result)


def test_a_column_mapping_of_dialogues_names_the_keys_and_roles_of_their_turns(tmp_path):
    turns = [{"说话人": speaker, "内容": text} for speaker, text in (
        ("旁白", "问诊"), ("病人", "咳嗽一周"), ("大夫", "有痰吗？"), ("病人", "有黄痰"),
        ("大夫", "可能是支气管炎，建议就诊。"))]
    path = write_jsonl(tmp_path / "turns.jsonl", [{"对话": turns}])
    columns = {"messages": "对话", "role_tag": "说话人", "content_tag": "内容", "user_tag": "病人",
               "assistant_tag": "大夫", "system_tag": "旁白"}
    assert triples(read_examples(path, "test", 0.01, columns)) == [
        ("有黄痰", "可能是支气管炎，建议就诊。", [("咳嗽一周", "有痰吗？")])]


@pytest.mark.parametrize("columns, message", [
    ({"question": "患着", "answer": "医生"}, "data.columns names the key '患着', which the record lacks "
                                          "(fields: 患者, 医生); did you mean '患者'?"),
    ({"question": "患者"}, "data.columns: no answer (or response); map the key of the question and of the answer"),
    ({"question": "患者", "prompt": "患者", "answer": "医生"}, "data.columns: question and prompt are the same role"),
    ({"messages": "对话", "answer": "医生"}, "data.columns: messages holds whole dialogues; answer belong"),
    ({"question": "患者", "answer": "医生", "role_tag": "x"}, "data.columns: role_tag name the keys of the turns"),
])
def test_a_column_mapping_that_cannot_read_the_file_is_one_error(tmp_path, columns, message):
    path = write_jsonl(tmp_path / "dialog.jsonl", [{"患者": "头痛怎么办？", "医生": "先测量血压。"}])
    with pytest.raises(UserError) as error:
        read_examples(path, "test", 0.01, columns)
    assert message in str(error.value) and "\n" not in str(error.value)


def test_a_json_lines_file_whose_first_line_is_not_an_object_is_read_with_that_line_counted(tmp_path):
    path = write_jsonl(tmp_path / "first.jsonl", ["[1, 2]", *good_records(199)])
    result = read(path)
    assert len(result.examples) == 199
    assert result.malformed == [(1, "a list, not a JSON object")]


def test_a_few_lines_in_another_encoding_are_counted_not_the_whole_file_misread(tmp_path):
    lines = [json.dumps(record, ensure_ascii=False).encode("utf-8") for record in good_records(199)]
    lines.insert(50, json.dumps({"instruction": "胃痛", "input": "", "output": "少食多餐"},
                                ensure_ascii=False).encode("gbk"))
    path = tmp_path / "mixed.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    result = read(path)
    assert result.encoding == "utf-8"
    assert [e.question for e in result.examples] == [f"问题{i}" for i in range(199)]  # no GB18030 mojibake
    assert result.malformed == [(51, "bytes that are not text in the file's encoding (a line in another encoding)")]
    gbk = [json.dumps(record, ensure_ascii=False).encode("gbk") for record in good_records(60)]
    gbk.insert(3, lines[0])  # a GBK file with a UTF-8 line in it
    path.write_bytes(b"\n".join(gbk))
    with pytest.raises(UserError, match=r"1 of 61 records are malformed .* first at line 4: bytes that are not text"):
        read(path)  # 1 of 61 lines: above 1%
    result = read(path, max_bad_fraction=0.05)
    assert (result.encoding, len(result.examples), result.examples[-1].answer) == ("gb18030", 60, "回答59")


def test_multiple_choice_file_is_named_as_such(tmp_path):
    items = [{"question": "高血压首选就诊科室是", "options": "(A) 骨科\n(B) 心内科", "answer": "(B)", "source": "x"}]
    path = tmp_path / "exam.mcq.json"
    path.write_text(json.dumps(items, ensure_ascii=False), encoding="utf-8")
    with pytest.raises(UserError, match="looks like a multiple-choice file") as error:
        read(path)
    assert "\n" not in str(error.value)


def good_records(n):
    return [{"instruction": f"问题{i}", "input": "", "output": f"回答{i}"} for i in range(n)]


def test_malformed_lines_below_the_threshold_are_counted_with_line_numbers(tmp_path):
    records = good_records(298)
    records[10:10] = ["{not json"]
    records[20:20] = [{"instruction": "缺少回答", "input": ""}]
    records[30:30] = [{"instruction": "回答是数字", "input": "", "output": 5}]
    result = read(write_jsonl(tmp_path / "m.jsonl", records))  # 3 of 301 = 1.0% <= 1%
    assert len(result.examples) == 298
    assert [line for line, _ in result.malformed] == [11, 21, 31]
    assert "not valid JSON" in result.malformed[0][1]
    assert result.malformed[1][1] == "missing field 'output'"
    assert result.malformed[2][1] == "field 'output' is a int, expected text"


def test_malformed_lines_above_the_threshold_reject_the_file(tmp_path):
    records = good_records(10)
    records[4:4] = ["{not json", "[1, 2]"]
    path = write_jsonl(tmp_path / "bad.jsonl", records)
    with pytest.raises(UserError, match=r"bad\.jsonl: 2 of 12 records are malformed .*first at line 5: not valid JSON"):
        read(path)
    assert len(read(path, max_bad_fraction=0.2).examples) == 10


def test_turns_that_do_not_alternate_are_malformed(tmp_path):
    turns = [{"from": "human", "value": "问题"}, {"from": "human", "value": "又一个问题"}]
    records = [{"conversations": [{"from": "human", "value": "问"}, {"from": "gpt", "value": "答"}]}] * 200
    path = write_jsonl(tmp_path / "s.jsonl", [*records, {"conversations": turns}])
    assert read(path).malformed == [(201, "turns are not user/assistant pairs ending with the assistant")]


def test_missing_file(tmp_path):
    with pytest.raises(UserError, match="no such file"):
        read(tmp_path / "nothing.jsonl")


# --- the real public files of ../shared/data, as a new user would bring them -------------------


def test_shared_alpaca_and_sharegpt_files_read_cleanly(shared_data):
    alpaca = read(shared_data / "huatuo_llama_kg_instruct.alpaca.jsonl")
    assert (alpaca.shape, len(alpaca.examples), alpaca.malformed) == ("alpaca", 8658, [])
    sharegpt = read(shared_data / "medicalgpt_sft_1k.sharegpt.jsonl")
    assert (sharegpt.shape, len(sharegpt.examples), sharegpt.malformed) == ("sharegpt", 1000, [])


def test_shared_multiple_choice_file_is_refused_in_one_line(shared_data):
    with pytest.raises(UserError, match=r"apollo_zh_dev\.mcq\.json:2: looks like a multiple-choice file"):
        read(shared_data / "apollo_zh_dev.mcq.json")
