"""The LLM judge as a rater of the blind review (lib/review/model_rater.py): `review judge` against a fake
OpenAI-compatible server on loopback (as tests/evaluate/test_judge.py builds one) with canned verdicts, its
votes stored apart as judge:<model>, analysed apart from people's, and shown apart in the report."""

from __future__ import annotations

import http.server
import json
import re
import sqlite3

import pytest

from builders import fake_judge_server, read_macros, send_json, write_run, write_study
from lib.review.bradley_terry import analyse
from lib.review.model_rater import parse_verdict
from lib.review.store import Store

MODEL = "judge-model"
RATER = f"judge:{MODEL}"
RUNS = ("base", "lora-100", "lora-200")
ITEMS = 2  # review items: 2 items x 3 pairs = 6 tasks, 12 requests


def verdict(a_run: str, b_run: str) -> str:
    """The fake judge: lora-200 wins and base beside it is unsafe, whatever the order; base against
    lora-100 it always picks A (the two orders disagree: a tie); lora-100 shown as A gets no JSON."""
    if {a_run, b_run} == {"base", "lora-200"}:
        letter, unsafe = ("A", "B") if a_run == "lora-200" else ("B", "A")
        return f'评判如下：\n```json\n{{"winner": "{letter}", "unsafe": ["{unsafe}"]}}\n```'
    if {a_run, b_run} == {"base", "lora-100"}:
        return '{"winner": "A", "unsafe": ["A"]}'
    if a_run == "lora-100":
        return "我认为 A 更好。"  # malformed
    return '{"winner": "A", "unsafe": []}'


class FakeJudge(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        prompt = body["messages"][0]["content"]
        runs = [re.search(rf"【回答 {letter}】\n([\w-]+)回答\d+\n", prompt).group(1) for letter in "AB"]
        self.server.seen.append({"model": body["model"], "prompt": prompt, "order": tuple(runs)})
        send_json(self, 200, {"choices": [{"message": {"role": "assistant", "content": verdict(*runs)}}]})

    def log_message(self, *args):
        pass


@pytest.fixture
def server(monkeypatch):
    with fake_judge_server(monkeypatch, FakeJudge, "sk-test", MODEL) as server:
        yield server


def test_the_judge_votes_in_both_orders_apart_from_people_and_the_report_shows_it_apart(server, tmp_path, run_cli):
    runs = tmp_path / "runs"
    for name in RUNS:
        write_run(runs, name, item_losses=[1.0] * 4)
    paths = write_study(tmp_path / "study")
    db = paths["results"] / "review" / "votes.sqlite"
    store = Store(db)
    alice = store.rater_of(store.invite("alice"))
    judge = ["review", "judge", "--runs", runs, "--db", db, "--items", ITEMS, "--shared", 0]
    judged = run_cli(*judge)
    assert judged.returncode == 0, judged.stderr
    assert "4 of 6 tasks voted by judge:judge-model (2 inconsistent" in judged.stdout
    assert "2 malformed replies" in judged.stdout

    # every task asked in both orders, with the Chinese pairwise rubric and the reference
    assert len(server.seen) == 12 and {request["model"] for request in server.seen} == {MODEL}
    orders = {request["order"] for request in server.seen}
    assert all((b, a) in orders for a, b in orders)
    prompt = server.seen[0]["prompt"]
    assert "比较两个 AI 助手" in prompt and "【参考答案】\n参考" in prompt and "{{" not in prompt

    votes = store.votes()
    assert {(vote.rater, vote.kind) for vote in votes} == {(RATER, "model")} and len(votes) == 4
    outcomes = {(vote.pair, vote.outcome, vote.unsafe_first, vote.unsafe_second) for vote in votes}
    # lora-200 beats base in both orders, base flagged in both; base-lora-100 disagree: a tie, no flag
    assert outcomes == {("base|lora-200", "second", True, False), ("base|lora-100", "tie", False, False)}
    assert store.rater_of("") is None  # the judge has no link
    items = sorted({vote.item for vote in votes})

    again = run_cli(*judge)  # from the cache: nothing asked, nothing added
    assert again.returncode == 0 and len(server.seen) == 12 and len(store.votes()) == 4

    for item in items:  # people prefer lora-100 to lora-200, the judge the other way round
        for pair, outcome in (("lora-100|lora-200", "first"), ("base|lora-200", "tie"), ("base|lora-100", "second")):
            store.record(alice, item, pair, pair.split("|")[0], outcome, False, False)
    analysed = run_cli("review", "analyse", "--db", db, "--out", paths["results"] / "review" / "preference.json")
    assert analysed.returncode == 0, analysed.stderr
    result = json.loads((paths["results"] / "review" / "preference.json").read_text(encoding="utf-8"))
    assert (result["raters"], result["votes"]) == (1, 6)  # people only
    assert result["runs"]["lora-100"]["strength"]["value"] > result["runs"]["lora-200"]["strength"]["value"]
    judged_result = result["judges"][RATER]
    assert judged_result["votes"] == 4 and judged_result["runs"]["base"]["unsafe"] == 2
    assert judged_result["runs"]["lora-200"]["win_rate_vs_base"] == {"value": 1.0, "n": 2}
    assert "lora-100|lora-200" not in {vote.pair for vote in votes}  # its replies were malformed
    # people tied base-lora-200 (judge: lora-200) and preferred lora-100 to base (judge: tie)
    assert judged_result["agreement_with_people"] == {"votes": 4, "percent": 0.0}
    assert "4 votes of judge:judge-model apart" in analysed.stdout

    out = tmp_path / "generated"
    report = run_cli("report", "--results", paths["results"], "--runs", paths["runs"], "--data", paths["data"],
                     "--profile", "demo", "--out", out)
    assert report.returncode == 0, report.stderr
    macros = read_macros(out)
    assert (macros["PreferenceVotes"], macros["PreferenceJudgeVotes"]) == ("6", "4")
    assert "judge-model" in macros["PreferenceJudges"] and macros["PreferenceJudgeTopRun"] == r"\texttt{lora-200}"
    table = (out / "tables" / "preference.tex").read_text(encoding="utf-8")
    rows, note = table.split(r"\TableNote")
    assert "judge" not in rows  # people's rows and numbers hold no judge vote
    assert "LLM 评审 \\texttt{judge:judge-model} 的 4 票" in note and "不计入本表" in note
    assert re.search(r"排序：\\texttt\{lora-200\}（[\d.]+） \$>\$ \\texttt\{lora-100\}", note)
    assert "4 票中有 0\\%" in note


def test_a_person_cannot_take_a_judges_name_and_old_databases_get_the_kind(tmp_path, run_cli):
    refused = run_cli("review", "invite", "--db", tmp_path / "votes.sqlite", "--name", "judge:gpt")
    assert refused.returncode != 0 and "LLM judges" in refused.stderr
    old = tmp_path / "old.sqlite"  # the schema before raters had a kind
    with sqlite3.connect(old) as db:
        db.executescript("""
            CREATE TABLE raters (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE,
                                 token_sha256 TEXT NOT NULL UNIQUE, created TEXT NOT NULL);
            CREATE TABLE votes (id INTEGER PRIMARY KEY, rater_id INTEGER NOT NULL REFERENCES raters(id),
                item TEXT NOT NULL, pair TEXT NOT NULL, left_run TEXT NOT NULL, outcome TEXT NOT NULL,
                unsafe_first INTEGER NOT NULL, unsafe_second INTEGER NOT NULL, updated TEXT NOT NULL,
                UNIQUE (rater_id, item, pair));
            INSERT INTO raters VALUES (1, 'bob', 'x', '2026-12-01');
            INSERT INTO votes VALUES (1, 1, 't0', 'a|b', 'a', 'first', 0, 0, '2026-12-01');
        """)
    db.close()
    store = Store(old)
    store.model_rater(MODEL)
    [vote] = store.votes()
    assert vote.kind == "human" and Store(old).votes() == [vote]
    assert analyse(store.votes(), n_samples=5)["judges"] == {}
    with pytest.raises(ValueError):
        store.invite(RATER)


@pytest.mark.parametrize("reply, expected", [
    ('{"winner": "A", "unsafe": ["B"]}', ("A", frozenset({"B"}))),
    ('好的\n```json\n{"winner": "both_bad"}\n```', ("both_bad", frozenset())),
    ('{"winner": "C", "unsafe": []}', None),
    ('{"winner": "tie", "unsafe": "A"}', None),
    ("A 更好", None),
])
def test_parse_verdict(reply, expected):
    assert parse_verdict(reply) == expected
