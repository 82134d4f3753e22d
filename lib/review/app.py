"""The review's web pages, served by uvicorn (`make review`).

FastAPI because it is small, runs in-process under uvicorn on 127.0.0.1, and every page is plain
server-rendered HTML (f-strings, every value through html.escape): no JavaScript to build, and a
headless browser or a plain HTTP client drives it in the tests exactly as a person does.

    /                          what this server is, and how a rater gets a link
    /r/<token>                 the rater's next task (where they left off): one question, answers A and B
    /r/<token>/task/<n>        task n of their schedule again, to change that vote
    /r/<token>/votes           their own votes so far
    POST /r/<token>/vote       item, pair, shown, choice (a, b, tie, both_bad), unsafe_a, unsafe_b
    /browse/<key>              every test question, searchable, runs' disagreement first (not blind:
    /browse/<key>/item/<id>    the key is printed only to whoever starts the server)

A wrong token is 403, a task that is not in the rater's schedule 404, a malformed or oversized
form 400/413/415; nothing is written for any of them.

A page names its pair of runs by a number (the page is blind), and what that number means depends
on the runs the server was started with. So the form also carries `shown`: a signature (HMAC with
a key kept in the votes database) of the item, the two runs in the order shown and their answers'
text. A vote whose signature does not match the task as the server now has it (a run was added or
re-evaluated and the server restarted, or the sides were drawn with another --seed) is answered
409 and not stored: it would be counted for answers the rater never saw.
"""

from __future__ import annotations

import hashlib
import hmac
import html
import json
import secrets
from urllib.parse import parse_qs, quote

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from lib.review.answers import Answers, Item
from lib.review.schedule import Schedule, Task
from lib.review.store import Rater, Store, Vote

MAX_FORM_BYTES = 2_048  # a vote's form is under 200 bytes
CHOICES = {"a": "A 更好 / A is better", "b": "B 更好 / B is better", "tie": "差不多 / tie",
           "both_bad": "都不好 / both bad"}
BROWSE_ROWS = 50

STYLE = """body{font-family:sans-serif;max-width:72rem;margin:1rem auto;padding:0 1rem;line-height:1.5}
.answers{display:flex;gap:1rem}.answers>div{flex:1;border:1px solid #ccc;padding:.5rem 1rem;white-space:pre-wrap}
.question{background:#f4f4f4;padding:.5rem 1rem;white-space:pre-wrap}fieldset{margin-top:1rem}
table{border-collapse:collapse}td,th{border:1px solid #ddd;padding:.2rem .5rem;vertical-align:top}"""


ABOUT = ("<h1>medqa-scaling 盲评 / blind review</h1>"
         "<p>这里给医学问答模型的回答做盲评：每次一个问题和两个匿名的回答，选出更好的一个。"
         "每位评审者有自己的链接 <code>/r/&lt;token&gt;</code>，向组织者索取。</p>"
         "<p>This server collects blind side-by-side ratings of medical answers: one question and two "
         "anonymous answers at a time. Each rater has a personal link (<code>/r/&lt;token&gt;</code>): ask "
         "the organiser for yours.</p>"
         "<p>组织者 / Organisers: <code>make review-invite NAME=&lt;name&gt;</code> on the machine that runs "
         "this server prints a rater's link; the browse link (every answer, not blind) was printed when "
         "the server started.</p>")
CHANGED = ("The runs or their answers changed after this page was loaded (the review was restarted with "
           "other runs or settings), so your vote was not stored: it would count for answers you did not see.")


def page(title: str, body: str, status_code: int = 200) -> HTMLResponse:
    return HTMLResponse(f"<!doctype html><html lang='zh'><head><meta charset='utf-8'><title>{html.escape(title)}"
                        f"</title><style>{STYLE}</style></head><body>{body}</body></html>", status_code=status_code)


def text(value: str) -> str:
    return html.escape(value, quote=True)


def create_app(store: Store, answers: Answers, schedule: Schedule, browse_key: str) -> FastAPI:
    app = FastAPI(title="medqa-scaling review", docs_url=None, redoc_url=None, openapi_url=None)
    form_key = store.secret("form")

    def shown_signature(task: Task) -> str:
        """What a rating page shows, signed: the item, its two runs in the order shown and their answers."""
        item = answers.items[task.item]
        shown = [task.item, task.left, task.right, item.answers[task.left], item.answers[task.right]]
        return hmac.new(form_key, json.dumps(shown, ensure_ascii=False).encode("utf-8"), hashlib.sha256).hexdigest()

    def rater_of(token: str) -> Rater:
        rater = store.rater_of(token)
        if rater is None:
            raise HTTPException(403, "unknown link: ask for a new one (make review-invite NAME=<name>)")
        return rater

    def tasks_of(rater: Rater) -> list[Task]:
        return schedule.tasks(rater.name, rater.id)

    @app.get("/health", response_class=PlainTextResponse)
    def health() -> str:
        return "ok"

    @app.get("/")
    def about() -> HTMLResponse:
        return page("medqa-scaling review", ABOUT)

    @app.get("/r/{token}")
    def next_task(token: str) -> HTMLResponse:
        rater = rater_of(token)
        tasks, done = tasks_of(rater), store.votes_of(rater)
        position = next((n for n, t in enumerate(tasks) if (t.item, schedule.pair_name(t.pair)) not in done), None)
        if position is None:
            return page("谢谢", f"<h1>全部完成 / All done</h1><p>{len(done)} votes. "
                                f"<a href='/r/{quote(token)}/votes'>你的投票 / your votes</a></p>")
        return task_page(token, rater, tasks, position, done)

    @app.get("/r/{token}/task/{position}")
    def one_task(token: str, position: int) -> HTMLResponse:
        rater = rater_of(token)
        tasks = tasks_of(rater)
        if not 0 <= position < len(tasks):
            raise HTTPException(404, "no such task in your schedule")
        return task_page(token, rater, tasks, position, store.votes_of(rater))

    def task_page(token: str, rater: Rater, tasks: list[Task], position: int, done: dict) -> HTMLResponse:
        task = tasks[position]
        item = answers.items[task.item]
        earlier = done.get((task.item, schedule.pair_name(task.pair)))
        chosen = earlier and side_choice(earlier.outcome, task, earlier.pair)
        unsafe = earlier and unsafe_sides(earlier, task)
        radios = "".join(
            f"<label><input type='radio' name='choice' value='{value}' required"
            f"{' checked' if chosen == value else ''}> {text(label)}</label><br>" for value, label in CHOICES.items())
        flags = "".join(
            f"<label><input type='checkbox' name='unsafe_{side}' value='1'"
            f"{' checked' if unsafe and unsafe[side] else ''}>"
            f" 回答 {side.upper()} 含不安全的建议 / answer {side.upper()} gives unsafe advice</label><br>"
            for side in "ab")
        body = (f"<p>{text(rater.name)} · {len(done)} / {len(tasks)} · "
                f"<a href='/r/{quote(token)}/votes'>你的投票 / your votes</a></p>"
                f"<h2>问题 / Question</h2><div class='question'>{text(item.question)}</div>"
                f"<div class='answers'><div><h3>回答 A</h3>{text(item.answers[task.left])}</div>"
                f"<div><h3>回答 B</h3>{text(item.answers[task.right])}</div></div>"
                f"<form method='post' action='/r/{quote(token)}/vote'>"
                f"<input type='hidden' name='item' value='{text(task.item)}'>"
                f"<input type='hidden' name='pair' value='{task.pair}'>"
                f"<input type='hidden' name='shown' value='{shown_signature(task)}'>"
                f"<fieldset><legend>哪个回答更好？ / Which answer is better?</legend>{radios}</fieldset>"
                f"<fieldset><legend>安全 / Safety</legend>{flags}</fieldset>"
                f"<p><button type='submit'>提交，下一题 / Submit, next</button></p></form>")
        return page(f"review {position + 1}", body)

    @app.get("/r/{token}/votes")
    def own_votes(token: str) -> HTMLResponse:
        rater = rater_of(token)
        tasks, done = tasks_of(rater), store.votes_of(rater)
        rows = "".join(
            f"<tr><td><a href='/r/{quote(token)}/task/{n}'>{n + 1}</a></td>"
            f"<td>{text(answers.items[t.item].question[:60])}"
            f"</td><td>{text(CHOICES[side_choice(vote.outcome, t, vote.pair)])}</td></tr>"
            for n, t in enumerate(tasks) if (vote := done.get((t.item, schedule.pair_name(t.pair)))))
        return page("your votes", f"<h1>你的投票 / Your votes ({len(done)})</h1><p><a href='/r/{quote(token)}'>"
                                  f"继续 / continue</a></p><table>{rows}</table>")

    @app.post("/r/{token}/vote")
    async def vote(token: str, request: Request) -> Response:
        rater = rater_of(token)
        form = await read_form(request)
        task = checked_task(form, rater)
        if not secrets.compare_digest(form.get("shown", ""), shown_signature(task)):
            return page("changed", f"<h1>这道题已经变了 / This task has changed</h1><p>{text(CHANGED)} "
                                   f"<a href='/r/{quote(token)}'>重新载入 / load the current task</a></p>",
                        status_code=409)
        choice = form.get("choice")
        if choice not in CHOICES:
            raise HTTPException(400, f"choice must be one of {', '.join(CHOICES)}")
        first, second = schedule.pairs[task.pair]
        unsafe = {task.left: form.get("unsafe_a") == "1", task.right: form.get("unsafe_b") == "1"}
        # the database write waits on the disk: off the event loop, so other raters' pages still load
        await run_in_threadpool(store.record, rater, task.item, schedule.pair_name(task.pair), task.left,
                                stored_outcome(choice, task, first), unsafe[first], unsafe[second])
        return RedirectResponse(f"/r/{quote(token)}", status_code=303)

    def checked_task(form: dict[str, str], rater: Rater) -> Task:
        """The task the form names, or 404 where the item or pair is not one of the review's."""
        item, pair = form.get("item", ""), form.get("pair", "")
        if item not in schedule.items or not pair.isdecimal() or int(pair) >= len(schedule.pairs):
            raise HTTPException(404, "no such task in your schedule (item or pair unknown); "
                                     "nothing was stored: open your link again for the current task")
        return schedule.task(rater.name, item, int(pair))

    @app.get("/browse/{key}")
    def browse(key: str, q: str = "") -> HTMLResponse:
        check_browse_key(key)
        found = [item for item in answers.items.values() if q in item.question or q in item.reference]
        found.sort(key=lambda item: -item.spread())
        rows = "".join(f"<tr><td><a href='/browse/{quote(key)}/item/{quote(item.id)}'>{text(item.id)}</a></td>"
                       f"<td>{item.spread():.1f}</td><td>{text(item.question[:80])}</td></tr>"
                       for item in found[:BROWSE_ROWS])
        return page("browse", f"<h1>测试题 / Test questions ({len(found)})</h1>"
                              f"<form><input name='q' value='{text(q)}' placeholder='搜索 / search'> "
                              f"<button>搜索 / search</button></form><p>按各运行 ROUGE-L 的极差排序（分歧大的在前）/ "
                              f"sorted by the spread of the runs' ROUGE-L, largest first</p>"
                              f"<table><tr><th>id</th><th>spread</th><th>question</th></tr>{rows}</table>")

    @app.get("/browse/{key}/item/{item_id}")
    def browse_item(key: str, item_id: str) -> HTMLResponse:
        check_browse_key(key)
        item = answers.items.get(item_id)
        if item is None:
            raise HTTPException(404, "no such test item")
        return page(item.id, item_view(item))

    def check_browse_key(key: str) -> None:
        if not secrets.compare_digest(key, browse_key):
            raise HTTPException(403, "wrong browse key: use the link `make review` printed")

    return app


def item_view(item: Item) -> str:
    """Question, reference and every run's answer side by side, with its per-item scores."""
    columns = "".join(
        f"<div><h3>{text(run)}</h3><p>"
        f"{text(', '.join(f'{k} {v:.2f}' for k, v in item.scores[run].items() if isinstance(v, int | float)))}"
        f"</p>{text(answer)}</div>" for run, answer in item.answers.items())
    return (f"<h2>问题 / Question</h2><div class='question'>{text(item.question)}</div>"
            f"<h2>参考答案 / Reference</h2><div class='question'>{text(item.reference)}</div>"
            f"<div class='answers'>{columns}</div>")


def stored_outcome(choice: str, task: Task, first: str) -> str:
    """The rater's choice (a: the left answer, b: the right one) as the outcome of the pair's runs."""
    if choice in ("tie", "both_bad"):
        return choice
    better = task.left if choice == "a" else task.right
    return "first" if better == first else "second"


def side_choice(outcome: str, task: Task, pair: str) -> str:
    """A stored outcome as the rater saw it (stored_outcome's inverse): a, b, tie or both_bad."""
    if outcome in ("tie", "both_bad"):
        return outcome
    better = pair.split("|")[0 if outcome == "first" else 1]
    return "a" if better == task.left else "b"


def unsafe_sides(vote: Vote, task: Task) -> dict[str, bool]:
    """The stored unsafe flags as the rater saw them: {"a": left answer flagged, "b": right}."""
    first = vote.pair.split("|")[0]
    left_is_first = task.left == first
    return {"a": vote.unsafe_first if left_is_first else vote.unsafe_second,
            "b": vote.unsafe_second if left_is_first else vote.unsafe_first}


async def read_form(request: Request) -> dict[str, str]:
    """An url-encoded form of at most MAX_FORM_BYTES with each field once; 413/415/400 otherwise."""
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/x-www-form-urlencoded":
        raise HTTPException(415, "expected an url-encoded form (application/x-www-form-urlencoded)")
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            raise HTTPException(413, f"form larger than {MAX_FORM_BYTES} bytes")
    try:
        fields = parse_qs(body.decode("utf-8"), keep_blank_values=True, strict_parsing=bool(body),
                          max_num_fields=10)
    except (UnicodeDecodeError, ValueError):
        raise HTTPException(400, "malformed form data") from None
    if any(len(values) > 1 for values in fields.values()):
        raise HTTPException(400, "a form field given twice")
    return {key: values[0] for key, values in fields.items()}
