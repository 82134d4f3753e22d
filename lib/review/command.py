"""The `review` command: blind side-by-side rating of the runs' answers.

    python -m lib review serve --runs results/demo/runs --db results/demo/review/votes.sqlite
                                                              (make review PROFILE=demo [HOST=... PORT=...])
    python -m lib review invite --db ... --name alice         (make review-invite NAME=alice)
    python -m lib review export --db ... --out results/demo/review/votes.csv      (make review-export)
    python -m lib review analyse --db ... --out results/demo/review/preference.json
                                                              (make report runs it when there are votes)
    python -m lib review judge --runs ... --db ...            an LLM judge as the rater judge:<model>
                                                              (make review-judge; lib/review/model_rater.py)

While `review serve` runs, server.json beside the database says where it listens, so that an
invitation made without --host/--port links there (a port in use is refused before it starts).
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import dataclasses
import json
import os
import platform
import secrets
import sys
from pathlib import Path

from lib.errors import UserError
from lib.io import atomic_write, provenance, shown, write_json
from lib.review.store import MODEL_PREFIX, Store, Vote
from lib.serve import check_port_free, http_url

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765
MAX_NAME_CHARS = 64


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", required=True, metavar="<action>")
    serve = actions.add_parser("serve", help="serve the rating and browse pages")
    invite = actions.add_parser("invite", help="print a rater's personal link (a new one replaces the old)")
    invite.add_argument("--name", required=True, help="the rater's name")
    export = actions.add_parser("export", help="write every vote to a CSV file")
    export.add_argument("--out", type=Path, required=True, help="the CSV file")
    analyse = actions.add_parser("analyse", help="Bradley-Terry strengths, win rates, agreement -> preference.json")
    analyse.add_argument("--out", type=Path, required=True, help="the JSON file")
    judge = actions.add_parser("judge", help="an LLM judge (MEDQA_JUDGE_* settings) votes as the rater judge:<model>")
    judge.add_argument("--cache", type=Path,
                       help="the judge's reply cache (default: judge_cache.jsonl next to the database)")
    judge.add_argument("--limit", type=int, help="judge only the schedule's first LIMIT tasks")
    judge.add_argument("--concurrency", type=int, default=4, help="requests at a time (default 4)")
    for action in (serve, judge):
        action.add_argument("--runs", type=Path, required=True,
                            help="folder of run directories (their predictions.jsonl)")
        action.add_argument("--items", type=int, default=20,
                            help="test items to review; every pair of runs on each (default 20)")
        action.add_argument("--shared", type=int, default=4,
                            help="of those, items every rater gets first, for inter-rater agreement (default 4)")
        action.add_argument("--seed", type=int, default=0, help="draws the items, each rater's order and the sides")
    for action in (serve, invite, export, analyse, judge):
        action.add_argument("--db", type=Path, required=True,
                            help="the votes database, e.g. results/demo/review/votes.sqlite")
    serve.add_argument("--host", default=DEFAULT_HOST, help=f"address to serve on (default {DEFAULT_HOST})")
    serve.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT})")
    invite.add_argument("--host", help="host of the link (default: where the running review server listens)")
    invite.add_argument("--port", type=int, help="port of the link (default: the running review server's)")


# --- where the server listens: recorded beside the database while it runs, for review-invite's links ---


def server_record(db: Path) -> Path:
    return db.with_name("server.json")


@contextlib.contextmanager
def recorded_server(db: Path, host: str, port: int):
    """server.json names this process and where it listens while the block runs."""
    record = server_record(db)
    write_json(record, {"host": host, "port": port, "pid": os.getpid(), "machine": platform.node()})
    try:
        yield
    finally:
        record.unlink(missing_ok=True)


def running_server(db: Path) -> dict | None:
    """{host, port} of the review server of this database, if one is running (a record left by a
    killed server names a process that is gone; one on another machine is taken as it is)."""
    try:
        record = json.loads(server_record(db).read_text(encoding="utf-8"))
        host, port, pid, machine = record["host"], int(record["port"]), int(record["pid"]), record["machine"]
    except (OSError, ValueError, TypeError, KeyError):
        return None
    if machine == platform.node():
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass  # alive, another user's
    return {"host": host, "port": port}


def serve(args: argparse.Namespace) -> None:
    import uvicorn

    from lib.review.answers import load_answers
    from lib.review.app import create_app
    from lib.review.schedule import make_schedule

    answers = load_answers(args.runs)
    schedule = make_schedule(answers.runs, list(answers.items), args.items, args.shared, args.seed)
    browse_key = secrets.token_urlsafe(16)  # new at every start; the browse pages show run names
    app = create_app(Store(args.db), answers, schedule, browse_key)
    check_port_free(args.host, args.port)
    print(f"review: {len(answers.runs)} runs, {len(schedule.pairs)} pairs x {len(schedule.items)} items "
          f"({schedule.shared} shared) per rater; votes in {shown(args.db)}")
    print(f"review: browse (not blind): {http_url(args.host, args.port, f'/browse/{browse_key}')}")
    print("review: rater links: make review-invite NAME=<name>", flush=True)
    with recorded_server(args.db, args.host, args.port):
        uvicorn.run(app, host=args.host, port=args.port, log_level="warning")


def invite(args: argparse.Namespace) -> None:
    name = args.name.strip()
    if not name or len(name) > MAX_NAME_CHARS or not name.isprintable():
        raise UserError(f"NAME={args.name!r}: give a rater's name of 1 to {MAX_NAME_CHARS} printable characters")
    if name.startswith(MODEL_PREFIX):
        raise UserError(f"NAME={args.name!r}: names starting with {MODEL_PREFIX} are kept for LLM judges "
                        "(make review-judge)")
    server = running_server(args.db)
    if server is None and args.port is None:
        print(f"review: no review server of {shown(args.db)} is running (`make review` starts one); "
              f"the link assumes port {DEFAULT_PORT}", file=sys.stderr)
    server = server or {"host": DEFAULT_HOST, "port": DEFAULT_PORT}
    token = Store(args.db).invite(name)
    print(http_url(args.host or server["host"], args.port or server["port"], f"/r/{token}"))


def export(args: argparse.Namespace) -> None:
    votes = Store(args.db).votes()
    with atomic_write(args.out) as handle:
        writer = csv.DictWriter(handle, fieldnames=[field.name for field in dataclasses.fields(Vote)],
                                lineterminator="\n")
        writer.writeheader()
        writer.writerows(dataclasses.asdict(vote) for vote in votes)
    print(f"review: {len(votes)} votes -> {shown(args.out)}")


def analyse(args: argparse.Namespace) -> None:
    from lib.review.bradley_terry import analyse as analyse_votes

    if not args.db.is_file():
        raise UserError(f"{shown(args.db)}: no such file; start the review with `make review` first")
    result = analyse_votes(Store(args.db).votes())
    write_json(args.out, result | {"provenance": provenance({"db": shown(args.db)})})
    judged = "".join(f", {entry['votes']} votes of {name} apart" for name, entry in result["judges"].items())
    print(f"review: {result['votes']} votes of {result['raters']} raters{judged} -> {shown(args.out)}")


def judge(args: argparse.Namespace) -> None:
    from lib.review.answers import load_answers
    from lib.review.model_rater import judge_review
    from lib.review.schedule import make_schedule

    if args.limit is not None and args.limit < 1 or args.concurrency < 1:
        raise UserError(f"--limit {args.limit} --concurrency {args.concurrency}: expected positive numbers")
    answers = load_answers(args.runs)
    schedule = make_schedule(answers.runs, list(answers.items), args.items, args.shared, args.seed)
    judge_review(Store(args.db), answers, schedule, args.cache or args.db.parent / "judge_cache.jsonl",
                 limit=args.limit, concurrency=args.concurrency)


def run(args: argparse.Namespace) -> None:
    {"serve": serve, "invite": invite, "export": export, "analyse": analyse, "judge": judge}[args.action](args)
