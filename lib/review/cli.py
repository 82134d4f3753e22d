"""The `review` command: blind side-by-side rating of the runs' answers.

    python -m lib review serve --runs results/demo/runs --db results/demo/review/votes.sqlite
                                                              (make review PROFILE=demo [HOST=... PORT=...])
    python -m lib review invite --db ... --name alice         (make review-invite NAME=alice)
    python -m lib review export --db ... --out results/demo/review/votes.csv      (make review-export)
    python -m lib review analyse --db ... --out results/demo/review/preference.json
                                                              (make report runs it when there are votes)
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import secrets
from pathlib import Path

from lib.errors import UserError
from lib.io import atomic_write, provenance, shown, write_json
from lib.review.store import Store, Vote

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765
MAX_NAME_CHARS = 64


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", required=True, metavar="<action>")
    serve = actions.add_parser("serve", help="serve the rating and browse pages")
    serve.add_argument("--runs", type=Path, required=True, help="folder of run directories (their predictions.jsonl)")
    serve.add_argument("--items", type=int, default=20,
                       help="test items to review; every pair of runs on each (default 20)")
    serve.add_argument("--shared", type=int, default=4,
                       help="of those, items every rater gets first, for inter-rater agreement (default 4)")
    serve.add_argument("--seed", type=int, default=0, help="draws the items, each rater's order and the sides")
    invite = actions.add_parser("invite", help="print a rater's personal link (a new one replaces the old)")
    invite.add_argument("--name", required=True, help="the rater's name")
    export = actions.add_parser("export", help="write every vote to a CSV file")
    export.add_argument("--out", type=Path, required=True, help="the CSV file")
    analyse = actions.add_parser("analyse", help="Bradley-Terry strengths, win rates, agreement -> preference.json")
    analyse.add_argument("--out", type=Path, required=True, help="the JSON file")
    for action in (serve, invite, export, analyse):
        action.add_argument("--db", type=Path, required=True,
                            help="the votes database, e.g. results/demo/review/votes.sqlite")
    for action in (serve, invite):
        action.add_argument("--host", default=DEFAULT_HOST,
                            help=f"address to serve on / of the link (default {DEFAULT_HOST})")
        action.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT})")


def serve(args: argparse.Namespace) -> None:
    import uvicorn

    from lib.review.answers import load_answers
    from lib.review.app import create_app
    from lib.review.schedule import make_schedule

    answers = load_answers(args.runs)
    schedule = make_schedule(answers.runs, list(answers.items), args.items, args.shared, args.seed)
    browse_key = secrets.token_urlsafe(16)  # new at every start; the browse pages show run names
    app = create_app(Store(args.db), answers, schedule, browse_key)
    print(f"review: {len(answers.runs)} runs, {len(schedule.pairs)} pairs x {len(schedule.items)} items "
          f"({schedule.shared} shared) per rater; votes in {shown(args.db)}")
    print(f"review: browse (not blind): http://{args.host}:{args.port}/browse/{browse_key}")
    print("review: rater links: make review-invite NAME=<name>", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")


def invite(args: argparse.Namespace) -> None:
    name = args.name.strip()
    if not name or len(name) > MAX_NAME_CHARS or not name.isprintable():
        raise UserError(f"NAME={args.name!r}: give a rater's name of 1 to {MAX_NAME_CHARS} printable characters")
    token = Store(args.db).invite(name)
    print(f"http://{args.host}:{args.port}/r/{token}")


def export(args: argparse.Namespace) -> None:
    votes = Store(args.db).votes()
    with atomic_write(args.out) as handle:
        writer = csv.DictWriter(handle, fieldnames=[field.name for field in dataclasses.fields(Vote)],
                                lineterminator="\n")
        writer.writeheader()
        writer.writerows(dataclasses.asdict(vote) for vote in votes)
    print(f"review: {len(votes)} votes -> {shown(args.out)}")


def analyse(args: argparse.Namespace) -> None:
    from lib.review.analysis import analyse as analyse_votes

    if not args.db.is_file():
        raise UserError(f"{shown(args.db)}: no such file; start the review with `make review` first")
    result = analyse_votes(Store(args.db).votes())
    write_json(args.out, result | {"provenance": provenance({"db": shown(args.db)})})
    print(f"review: {result['votes']} votes of {result['raters']} raters -> {shown(args.out)}")


def run(args: argparse.Namespace) -> None:
    {"serve": serve, "invite": invite, "export": export, "analyse": analyse}[args.action](args)
