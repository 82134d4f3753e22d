"""The review's web pages (lib/review/app.py): the real server on 127.0.0.1 driven over HTTP by
several raters at once, killed with SIGKILL midway, fed bad input, restarted with other runs under a
rater's open page, and driven by a real headless Chromium. The runs are synthetic predictions.jsonl
files (builders.write_run)."""

from __future__ import annotations

import itertools
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from builders import (
    REPO_ROOT,
    REVIEW_PAIRS,
    REVIEW_RUNS,
    run_unprivileged,
    write_jsonl,
    write_run,
)
from lib.review.store import Store

ITEMS, SHARED = 4, 2  # review items per rater, of which every rater gets the first SHARED


def write_runs(runs_dir: Path, n_items: int = 8) -> Path:
    """Evaluated runs whose answers differ, as lib.evaluate.run writes them."""
    for name in REVIEW_RUNS:
        write_run(runs_dir, name, item_losses=[1.0] * n_items, rouge=[float(i * len(name)) for i in range(n_items)])
    return runs_dir


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Server:
    """`python -m lib review serve` in its own process on a free loopback port."""

    def __init__(self, runs: Path, db: Path):
        self.runs, self.db, self.port = Path(runs), Path(db), free_port()
        self.process = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Server:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "lib", "review", "serve", "--runs", self.runs, "--db", self.db, "--port",
             str(self.port), "--items", str(ITEMS), "--shared", str(SHARED)],
            cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=1):
                    return self
            except OSError:
                assert self.process.poll() is None, self.process.stdout.read()
                time.sleep(0.1)
        raise AssertionError("the review server did not answer within 60 s")

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()
        self.process.stdout.close()


@pytest.fixture
def server(tmp_path):
    served = Server(write_runs(tmp_path / "runs"), tmp_path / "review" / "votes.sqlite").start()
    yield served
    if served.process.poll() is None:
        served.kill()


def request(url: str, data: bytes | None = None,
            content_type: str = "application/x-www-form-urlencoded") -> tuple[int, str]:
    """(status, body) of a GET, or of a POST of `data`; redirects are not followed."""
    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):
            return None

    headers = {"Content-Type": content_type} if data is not None else {}
    try:
        with urllib.request.build_opener(NoRedirect).open(urllib.request.Request(url, data, headers),
                                                          timeout=30) as answer:
            return answer.status, answer.read().decode("utf-8")
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode("utf-8")


def shown_task(page: str) -> dict[str, str]:
    """The hidden fields of the task a page shows: item, pair and the signature of what it shows."""
    return dict(re.findall(r"<input type='hidden' name='(item|pair|shown)' value='([^']*)'>", page))


def post_vote(server: Server, token: str, fields: dict) -> int:
    return request(f"{server.url}/r/{token}/vote", urllib.parse.urlencode(fields).encode())[0]


def test_a_rater_votes_resumes_and_changes_a_vote_that_counts_once(server):
    store = Store(server.db)
    token, other = store.invite("alice"), store.invite("bob")
    status, page = request(f"{server.url}/r/{token}")
    outside_answers = re.sub(r"[\w-]+回答\d+", "", page)  # write_run's answers quote their run's name
    assert status == 200 and not any(run in outside_answers for run in REVIEW_RUNS)  # blind: no run name on the page
    first = shown_task(page)
    for _ in range(2):  # a double submit
        assert post_vote(server, token, {**first, "choice": "a", "unsafe_b": "1"}) == 303
    assert shown_task(request(f"{server.url}/r/{token}")[1]) != first  # the next task
    [flagged] = store.votes()
    assert flagged.unsafe_first != flagged.unsafe_second  # the right answer's run, B, is the one flagged
    assert flagged.pair.split("|")[0 if flagged.unsafe_first else 1] != flagged.left_run
    assert post_vote(server, token, {**first, "choice": "tie"}) == 303  # changed
    votes = store.votes()
    assert len(votes) == 1 and votes[0].outcome == "tie" and votes[0].rater == "alice"
    assert "(1)" in request(f"{server.url}/r/{token}/votes")[1]
    assert "(0)" in request(f"{server.url}/r/{other}/votes")[1]  # bob sees only his own


def test_bad_requests_are_refused_and_write_nothing(server):
    token = Store(server.db).invite("alice")
    task = shown_task(request(f"{server.url}/r/{token}")[1])
    good = {**task, "choice": "a"}
    assert request(f"{server.url}/r/")[0] == 404  # no token
    assert post_vote(server, "not-a-token", good) == 403
    assert post_vote(server, token, {**good, "item": "t-unknown"}) == 404
    assert post_vote(server, token, {**good, "pair": str(REVIEW_PAIRS)}) == 404
    assert post_vote(server, token, {**good, "pair": "-1"}) == post_vote(server, token, {**good, "pair": "²"}) == 404
    assert post_vote(server, token, {**good, "choice": "left"}) == 400
    assert post_vote(server, token, {**good, "shown": "0" * 64}) == post_vote(server, token, task | {"choice": "a",
                                                                                                    "shown": ""}) == 409
    assert request(f"{server.url}/r/{token}/vote", b"item=%ZZ&&pair", )[0] == 400  # malformed
    assert request(f"{server.url}/r/{token}/vote",
                   b"choice=a&choice=b&" + urllib.parse.urlencode(task).encode())[0] == 400
    assert request(f"{server.url}/r/{token}/vote", urllib.parse.urlencode({**good, "x": "y" * 5000}).encode())[0] == 413
    assert request(f"{server.url}/r/{token}/vote", json.dumps(good).encode(), "application/json")[0] == 415
    assert request(f"{server.url}/r/{token}/task/999")[0] == 404
    assert request(f"{server.url}/browse/wrong-key")[0] == 403
    assert Store(server.db).votes() == []


def test_concurrent_raters_lose_no_acknowledged_vote_when_the_server_is_killed(server):
    store = Store(server.db)
    tokens = {name: store.invite(name) for name in ("r1", "r2", "r3", "r4")}
    acknowledged, attempted, lock = set(), set(), threading.Lock()

    def rate(name: str) -> None:
        """Vote task after task until the server goes away."""
        for _ in range(ITEMS * REVIEW_PAIRS):
            try:
                task = shown_task(request(f"{server.url}/r/{tokens[name]}")[1])
                key = (name, task["item"], task["pair"])
                with lock:
                    attempted.add(key)
                if post_vote(server, tokens[name], {**task, "choice": "b"}) == 303:
                    with lock:
                        acknowledged.add(key)
            except (OSError, KeyError):  # the server was killed (KeyError: a page cut short)
                return

    threads = [threading.Thread(target=rate, args=(name,)) for name in tokens]
    for thread in threads:
        thread.start()
    while len(acknowledged) < 24 and any(t.is_alive() for t in threads):
        time.sleep(0.01)
    server.kill()
    for thread in threads:
        thread.join(timeout=60)
    server.start()  # the same database, a new process

    pair_numbers = {"|".join(pair): str(i) for i, pair in enumerate(itertools.combinations(sorted(REVIEW_RUNS), 2))}
    stored = {(v.rater, v.item, pair_numbers[v.pair]) for v in store.votes()}
    assert len(acknowledged) >= 24
    assert acknowledged <= stored <= attempted  # every acknowledged vote is there; nothing invented
    assert len(store.votes()) == len(stored)  # none twice
    for name, token in tokens.items():  # each rater resumes at a task not voted yet
        task = shown_task(request(f"{server.url}/r/{token}")[1])
        assert (name, task["item"], task["pair"]) not in stored


def test_a_vote_counts_only_for_the_answers_the_rater_saw(server):
    store = Store(server.db)
    token = store.invite("alice")
    page = request(f"{server.url}/r/{token}")[1]
    task = shown_task(page)
    shown_answers = re.findall(r"<h3>回答 [AB]</h3>([^<]*)</div>", page)

    server.kill()  # restarted as it was: the open page still votes
    server.start()
    assert post_vote(server, token, {**task, "choice": "a"}) == 303
    [first] = store.votes()
    assert re.search(r"([\w-]+)回答", shown_answers[0]).group(1) == first.left_run

    page = request(f"{server.url}/r/{token}")[1]
    task = shown_task(page)
    left_run = re.search(r"<h3>回答 A</h3>([\w-]+)回答", page).group(1)
    server.kill()  # a run added: pair numbers now name other pairs
    write_run(server.runs, "lora-50", item_losses=[1.0] * 8, rouge=[5.0] * 8)
    server.start()
    status, answer = request(f"{server.url}/r/{token}/vote", urllib.parse.urlencode({**task, "choice": "b"}).encode())
    assert status == 409 and "not stored" in answer and f"/r/{token}" in answer
    assert store.votes() == [first]

    server.kill()  # back to the runs of the page, but the left answer re-evaluated: its text changed
    shutil.rmtree(server.runs / "lora-50")
    predictions = server.runs / left_run / "predictions.jsonl"
    records = [json.loads(line) for line in predictions.read_text(encoding="utf-8").splitlines()]
    write_jsonl(predictions, [r | {"prediction": r["prediction"] + "（新）"} if r["id"] == task["item"] else r
                              for r in records])
    server.start()
    assert post_vote(server, token, {**task, "choice": "b"}) == 409 and store.votes() == [first]
    fresh = shown_task(request(f"{server.url}/r/{token}")[1])
    assert fresh["item"] == task["item"] and fresh["shown"] != task["shown"]
    assert post_vote(server, token, {**fresh, "choice": "b"}) == 303 and len(store.votes()) == 2


def test_the_root_page_says_what_the_server_is_and_how_to_get_a_link(server):
    status, page = request(f"{server.url}/")
    assert status == 200 and "blind review" in page and "make review-invite NAME=" in page


def test_an_invite_links_to_where_the_server_listens(tmp_path):
    results = tmp_path / "results"
    served = Server(write_runs(results / "demo" / "runs"), results / "demo" / "review" / "votes.sqlite").start()
    try:
        invited = subprocess.run(["make", "review-invite", "NAME=alice", "PROFILE=demo", f"RESULTS_DIR={results}"],
                                 cwd=REPO_ROOT, capture_output=True, text=True, timeout=120,
                                 env={k: v for k, v in os.environ.items() if k not in ("HOST", "PORT")})
        assert invited.returncode == 0, invited.stderr
        link = invited.stdout.strip().splitlines()[-1]
        assert link.startswith(f"{served.url}/r/") and request(link)[0] == 200
    finally:
        served.kill()
    stale = subprocess.run([sys.executable, "-m", "lib", "review", "invite", "--db", served.db, "--name", "bob"],
                           cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)  # its server was killed
    assert stale.stdout.startswith("http://127.0.0.1:8765/r/") and "no review server" in stale.stderr


def test_a_port_in_use_and_a_read_only_review_folder_are_one_line(server, tmp_path):
    taken = subprocess.run([sys.executable, "-m", "lib", "review", "serve", "--runs", server.runs, "--db",
                            tmp_path / "other.sqlite", "--port", str(server.port)],
                           cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert taken.returncode == 2 and taken.stderr == (f"error: cannot serve on 127.0.0.1:{server.port} "
                                                      "(Address already in use); choose another with PORT=\n")
    db, csv_folder = tmp_path / "review" / "votes.sqlite", tmp_path / "csv"
    Store(db).invite("alice")
    csv_folder.mkdir()
    read_only = [db.parent, *db.parent.iterdir(), csv_folder]
    for path in read_only:
        path.chmod(0o555)
    try:
        invited = run_unprivileged("review", "invite", "--db", db, "--name", "bob")
        db.chmod(0o755)
        db.parent.chmod(0o755)
        exported = run_unprivileged("review", "export", "--db", db, "--out", csv_folder / "votes.csv")
    finally:
        for path in read_only:
            path.chmod(0o755)
    assert invited.returncode == 2 and invited.stderr.count("\n") == 1, invited.stderr
    assert invited.stderr.startswith(f"error: {db}: cannot write the votes database (")
    assert exported.returncode == 2 and exported.stderr.count("\n") == 1, exported.stderr
    assert exported.stderr.startswith(f"error: cannot write {csv_folder}/")
    assert exported.stderr.endswith("Permission denied; make its folder writable, or write elsewhere "
                                    "(DATA_DIR=, RESULTS_DIR=)\n")


def test_browse_shows_every_runs_answer_with_its_scores_and_finds_by_text(server):
    key = re.search(r"/browse/(\S+)", server_log_line(server)).group(1)
    status, page = request(f"{server.url}/browse/{key}?q={urllib.parse.quote('问题3')}")
    assert status == 200 and "/item/t3" in page and "/item/t4" not in page
    status, page = request(f"{server.url}/browse/{key}/item/t3")
    assert status == 200 and all(f"{run}回答3" in page for run in REVIEW_RUNS) and "参考3" in page and "rougeL" in page


def server_log_line(server: Server) -> str:
    """The line where `review serve` printed the browse link."""
    for line in server.process.stdout:
        if "/browse/" in line:
            return line
    raise AssertionError("no browse link printed")


CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"


@pytest.fixture
def browser():
    if not (os.path.exists(CHROMIUM) and shutil.which(CHROMEDRIVER)):
        pytest.skip("no /usr/bin/chromium and chromedriver: `make setup-browser` installs them (CI does)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(argument)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    yield driver
    driver.quit()


def test_a_rater_votes_through_the_page_in_a_real_browser(server, browser, run_cli, tmp_path):
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.wait import WebDriverWait

    invited = run_cli("review", "invite", "--db", server.db, "--name", "alice", "--port", server.port)
    link = invited.stdout.strip()
    assert invited.returncode == 0 and link.startswith(f"{server.url}/r/")
    browser.get(link)
    for done, choice in enumerate(("a", "b", "tie"), start=1):
        browser.find_element(By.CSS_SELECTOR, f"input[name=choice][value={choice}]").click()
        browser.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
        # the next page counts the votes; while it loads, the old page's elements fail to read
        WebDriverWait(browser, 30, ignored_exceptions=[WebDriverException]).until(
            lambda page, done=done: f"{done} / {ITEMS * REVIEW_PAIRS}" in page.find_element(By.TAG_NAME, "body").text)
    votes = Store(server.db).votes()
    assert len(votes) == 3 and {v.rater for v in votes} == {"alice"}
    analysed = run_cli("review", "analyse", "--db", server.db, "--out", tmp_path / "preference.json")
    assert analysed.returncode == 0, analysed.stderr
    result = json.loads((tmp_path / "preference.json").read_text(encoding="utf-8"))
    assert result["votes"] == 3 and result["raters"] == 1 and "strength" in next(iter(result["runs"].values()))
