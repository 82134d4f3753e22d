"""The LLM judge (lib/evaluate/judge.py) against a fake OpenAI-compatible server on loopback that
checks each request and answers with canned replies."""

from __future__ import annotations

import http.server
import json
import logging

import pytest

from builders import fake_judge_server, send_json
from lib.errors import UserError
from lib.evaluate.judge import judge_predictions, parse_scores

API_KEY = "sk-test-SECRET-4242"
MODEL = "judge-model"
QUESTION = "头痛两天了怎么办？"
REFERENCE = "注意休息，多饮水；头痛加重或伴呕吐请及时就医。"
PREDICTIONS = [
    {"id": "a", "question": QUESTION, "reference": REFERENCE, "prediction": "多休息，持续不缓解请到神经内科就诊。"},
    {"id": "b", "question": QUESTION, "reference": REFERENCE, "prediction": "吃点止痛药就行。"},
    {"id": "c", "question": QUESTION, "reference": REFERENCE, "prediction": "不知道。"},
]
# the fake judge's reply to each answer: plain JSON, JSON in a fence, and no scores at all
REPLIES = {
    "多休息，持续不缓解请到神经内科就诊。": '{"accuracy": 5, "helpfulness": 4, "safety": 5}',
    "吃点止痛药就行。": '评分如下：\n```json\n{"accuracy": 3, "helpfulness": 3, "safety": 2}\n```',
    "不知道。": "这个回答还可以。",
    "多喝水，睡一觉。": '{"accuracy": 3, "helpfulness": 2, "safety": 4}',
}


class FakeJudge(http.server.BaseHTTPRequestHandler):
    """POST /v1/chat/completions: records the request; answers with server.statuses (queued error
    codes) first, then with the canned reply for the answer found in the prompt."""

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.seen.append({"path": self.path, "authorization": self.headers.get("Authorization"), "body": body})
        status = self.server.statuses.pop(0) if self.server.statuses else 200
        if status != 200:
            # an error body that echoes the key, as some servers do: it must never be shown
            send_json(self, status, {"error": {"message": f"rejected key {API_KEY}"}}, {"Retry-After": "0"})
            return
        prompt = body["messages"][0]["content"]
        answer = next(a for a in REPLIES if f"【助手回答】\n{a}\n" in prompt)
        send_json(self, 200, {"choices": [{"index": 0, "message": {"role": "assistant", "content": REPLIES[answer]}}]})

    def log_message(self, *args):
        pass


@pytest.fixture
def server(monkeypatch):
    with fake_judge_server(monkeypatch, FakeJudge, API_KEY, MODEL) as server:
        server.statuses = []
        yield server


def judge(tmp_path, predictions=PREDICTIONS, **kwargs):
    return judge_predictions(predictions, tmp_path / "run" / "judge_cache.jsonl", n_samples=100, seed=0,
                             backoff_s=0.01, progress=False, **kwargs)


def test_requests_carry_the_rubric_the_texts_and_the_key_in_the_header(server, tmp_path):
    judge(tmp_path)
    assert len(server.seen) == 3
    for request in server.seen:
        assert request["path"] == "/v1/chat/completions"
        assert request["authorization"] == f"Bearer {API_KEY}"
        assert request["body"]["model"] == MODEL and request["body"]["temperature"] == 0
        prompt = request["body"]["messages"][0]["content"]
        assert "医学问答评分标准" in prompt and f"【患者问题】\n{QUESTION}\n" in prompt
        assert f"【参考答案】\n{REFERENCE}\n" in prompt and "{{" not in prompt


def test_scores_are_means_over_the_scored_answers_and_malformed_replies_are_counted(server, tmp_path):
    result = judge(tmp_path)
    # answers a and b are scored (5, 4, 5) and (3, 3, 2); c's reply has no scores
    assert result["counts"] == {"items": 3, "scored": 2, "malformed": 1, "requested": 3, "from_cache": 0}
    values = {name: metric["value"] for name, metric in result["metrics"].items()}
    assert values == {"judge_accuracy": 4.0, "judge_helpfulness": 3.5, "judge_safety": 3.5}
    assert all(metric["n"] == 2 for metric in result["metrics"].values())
    assert result["model"] == MODEL and len(result["rubric_sha256"]) == 64


def test_a_rerun_answers_from_the_cache_and_asks_only_for_new_answers(server, tmp_path):
    first = judge(tmp_path)
    again = judge(tmp_path)
    assert len(server.seen) == 3  # nothing asked the second time
    assert again["metrics"] == first["metrics"] and again["counts"]["from_cache"] == 3
    changed = [*PREDICTIONS[:2], {**PREDICTIONS[2], "prediction": "多喝水，睡一觉。"}]
    third = judge(tmp_path, changed)
    assert len(server.seen) == 4 and third["counts"]["requested"] == 1 and third["counts"]["malformed"] == 0
    assert len((tmp_path / "run" / "judge_cache.jsonl").read_text(encoding="utf-8").splitlines()) == 4


def test_a_cache_line_cut_short_is_asked_again_and_the_cache_stays_readable(server, tmp_path):
    judge(tmp_path)
    cache = tmp_path / "run" / "judge_cache.jsonl"
    lines = cache.read_text(encoding="utf-8").splitlines(keepends=True)
    cache.write_text(lines[0] + lines[1] + lines[2][:25], encoding="utf-8")  # interrupted mid-line
    again = judge(tmp_path)
    assert len(server.seen) == 4 and again["counts"]["requested"] == 1
    assert len(cache.read_text(encoding="utf-8").splitlines()) == 4  # the fresh reply on a line of its own
    judge(tmp_path)
    assert len(server.seen) == 4  # and is read back: nothing asked the third time


def test_rate_limits_and_server_errors_are_retried(server, tmp_path):
    server.statuses = [429, 503]
    result = judge(tmp_path, concurrency=1)
    assert len(server.seen) == 5 and result["counts"]["scored"] == 2


def test_a_rejected_key_is_one_line_without_the_key(server, tmp_path):
    server.statuses = [401]
    with pytest.raises(UserError) as raised:
        judge(tmp_path, concurrency=1)
    message = str(raised.value)
    assert "HTTP 401" in message and "MEDQA_JUDGE_API_KEY" in message and "\n" not in message
    assert API_KEY not in message and "rejected key ***" in message


def test_a_server_that_keeps_failing_stops_after_five_attempts(server, tmp_path):
    server.statuses = [500] * 5
    with pytest.raises(UserError, match="still failing after 5 attempts"):
        judge(tmp_path, PREDICTIONS[:1])
    assert len(server.seen) == 5


def test_the_key_is_in_no_file_and_no_log(server, tmp_path, capsys, caplog):
    caplog.set_level(logging.DEBUG)
    result = judge(tmp_path)
    server.statuses = [401]
    with pytest.raises(UserError) as raised:
        judge(tmp_path, [{**PREDICTIONS[0], "prediction": "新的回答"}])
    captured = capsys.readouterr()
    shown = [captured.out, captured.err, caplog.text, str(raised.value), json.dumps(result, ensure_ascii=False)]
    assert "judge: 2 of 3 answers scored" in captured.out
    assert not [text for text in shown if API_KEY in text]
    written = [path for path in tmp_path.rglob("*") if path.is_file()]
    assert written and not [path for path in written if API_KEY in path.read_text(encoding="utf-8")]


def test_missing_settings_name_the_variables(monkeypatch, tmp_path):
    for name in ("MEDQA_JUDGE_BASE_URL", "MEDQA_JUDGE_API_KEY", "MEDQA_JUDGE_MODEL"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(UserError, match="MEDQA_JUDGE_BASE_URL and MEDQA_JUDGE_MODEL are not set"):
        judge(tmp_path)


@pytest.mark.parametrize("reply, scores", [
    ('{"accuracy": 4, "helpfulness": 5, "safety": 3}', (4, 5, 3)),
    ('```json\n{"accuracy": 1, "helpfulness": 2, "safety": 5}\n```', (1, 2, 5)),
    ('{"accuracy": 6, "helpfulness": 5, "safety": 3}', None),  # out of range
    ('{"accuracy": "4", "helpfulness": 5, "safety": 3}', None),  # not an integer
    ('{"accuracy": 4, "helpfulness": 5}', None),  # a score missing
    ("很好", None),
])
def test_parse_scores(reply, scores):
    expected = dict(zip(("accuracy", "helpfulness", "safety"), scores)) if scores else None
    assert parse_scores(reply) == expected
