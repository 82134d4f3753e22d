"""The votes database: results/<profile>/review/votes.sqlite (stdlib sqlite3).

    raters(id, name, token_sha256, created, kind)     one row per invited rater; the link's secret
                                                      token is kept only as its SHA-256; kind is
                                                      human, or model for an LLM judge
                                                      (`review judge`, named judge:<model>, no link)
    votes(rater_id, item, pair, left_run, outcome,     one row per (rater, item, pair): a second
          unsafe_first, unsafe_second, updated)        submit of the same task replaces the first
    secrets(name, value)                               the key that signs what a rating page showed
                                                      (lib.review.app), made once: a page loaded
                                                      before a restart still submits

`pair` is "<run>|<run>" with the two run names sorted; `outcome` is first (the pair's first run
is better), second, tie or both_bad; unsafe_first/unsafe_second flag advice a rater found unsafe.
`left_run` records which answer the rater saw on the left.

A database made before raters had a kind gets the column (every rater in it human) when opened.

Write-ahead logging with synchronous=FULL and one transaction per vote: a vote the server has
acknowledged is on disk, so killing the server (kill -9 too) loses nothing that was answered.
Each call opens its own connection: the web server answers requests on several threads.
"""

from __future__ import annotations

import contextlib
import hashlib
import secrets
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from lib.errors import UserError
from lib.io import shown

OUTCOMES = ("first", "second", "tie", "both_bad")
MODEL_PREFIX = "judge:"  # a model rater's name: judge:<model>; no person may be invited under it

SCHEMA = """
CREATE TABLE IF NOT EXISTS raters (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    token_sha256 TEXT NOT NULL UNIQUE,
    created TEXT NOT NULL,
    kind TEXT NOT NULL DEFAULT 'human' CHECK (kind IN ('human', 'model'))
);
CREATE TABLE IF NOT EXISTS secrets (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS votes (
    id INTEGER PRIMARY KEY,
    rater_id INTEGER NOT NULL REFERENCES raters(id),
    item TEXT NOT NULL,
    pair TEXT NOT NULL,
    left_run TEXT NOT NULL,
    outcome TEXT NOT NULL CHECK (outcome IN ('first', 'second', 'tie', 'both_bad')),
    unsafe_first INTEGER NOT NULL CHECK (unsafe_first IN (0, 1)),
    unsafe_second INTEGER NOT NULL CHECK (unsafe_second IN (0, 1)),
    updated TEXT NOT NULL,
    UNIQUE (rater_id, item, pair)
);
"""


@dataclass(frozen=True)
class Rater:
    id: int  # also the rater's position in invitation order, from 1 (lib.review.schedule spreads raters by it)
    name: str


@dataclass(frozen=True)
class Vote:
    rater: str
    item: str
    pair: str
    left_run: str
    outcome: str
    unsafe_first: bool
    unsafe_second: bool
    updated: str
    kind: str = "human"  # the rater's: human, or model (an LLM judge)


def pair_key(first: str, second: str) -> str:
    """The stored name of a pair of runs: sorted, so either order names the same pair."""
    return "|".join(sorted((first, second)))


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class Store:
    def __init__(self, path: Path):
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise self.unwritable(err.strerror) from None
        with self.connection() as db:
            db.execute("PRAGMA journal_mode=WAL")  # persistent: readers never block the writer
            db.executescript(SCHEMA)
            columns = {row[1] for row in db.execute("PRAGMA table_info(raters)")}
            if "kind" not in columns:  # a database from before model raters: all its raters are people
                with db:
                    db.execute("ALTER TABLE raters ADD COLUMN kind TEXT NOT NULL DEFAULT 'human' "
                               "CHECK (kind IN ('human', 'model'))")

    def unwritable(self, reason: str) -> UserError:
        return UserError(f"{shown(self.path)}: cannot write the votes database ({reason}); "
                         f"make {shown(self.path.parent)} and the files in it writable")

    @contextlib.contextmanager
    def connection(self) -> Iterator[sqlite3.Connection]:
        """A connection whose `with db:` block is one transaction (commit, or rollback on error)."""
        try:
            db = sqlite3.connect(self.path, timeout=30)
            try:
                db.execute("PRAGMA synchronous=FULL")  # in WAL mode NORMAL could lose the last commits on power loss
                db.execute("PRAGMA foreign_keys=ON")
                yield db
            finally:
                db.close()
        except sqlite3.OperationalError as err:
            # a read-only folder or file: "attempt to write a readonly database", "unable to open database file"
            if "readonly" not in str(err) and "unable to open" not in str(err):
                raise
            raise self.unwritable(str(err)) from None

    def secret(self, name: str) -> bytes:
        """A random key kept in the database under `name`, made at its first use."""
        with self.connection() as db, db:
            db.execute("INSERT INTO secrets (name, value) VALUES (?, ?) ON CONFLICT (name) DO NOTHING",
                       (name, secrets.token_hex(32)))
            return bytes.fromhex(db.execute("SELECT value FROM secrets WHERE name = ?", (name,)).fetchone()[0])

    # --- raters ------------------------------------------------------------------------------------

    def invite(self, name: str) -> str:
        """A new secret token for rater `name` (created if new); an older link of theirs stops working."""
        if name.startswith(MODEL_PREFIX):
            raise ValueError(f"rater names starting with {MODEL_PREFIX!r} are kept for LLM judges")
        token = secrets.token_urlsafe(24)
        with self.connection() as db, db:
            db.execute("INSERT INTO raters (name, token_sha256, created) VALUES (?, ?, ?) "
                       "ON CONFLICT (name) DO UPDATE SET token_sha256 = excluded.token_sha256",
                       (name, token_digest(token), now()))
        return token

    def model_rater(self, model: str) -> Rater:
        """The rater judge:<model> of kind model (created if new); it has no link anyone knows."""
        name = MODEL_PREFIX + model
        with self.connection() as db, db:
            db.execute("INSERT INTO raters (name, token_sha256, created, kind) VALUES (?, ?, ?, 'model') "
                       "ON CONFLICT (name) DO NOTHING", (name, token_digest(secrets.token_urlsafe(24)), now()))
            row = db.execute("SELECT id, name, kind FROM raters WHERE name = ?", (name,)).fetchone()
        if row[2] != "model":
            raise ValueError(f"rater {name!r} exists as a person, not as a model")
        return Rater(row[0], row[1])

    def rater_of(self, token: str) -> Rater | None:
        with self.connection() as db:
            row = db.execute("SELECT id, name FROM raters WHERE token_sha256 = ? AND kind = 'human'",
                             (token_digest(token),)).fetchone()
        return Rater(*row) if row else None

    # --- votes -------------------------------------------------------------------------------------

    def record(self, rater: Rater, item: str, pair: str, left_run: str, outcome: str,
               unsafe_first: bool, unsafe_second: bool) -> None:
        """Store a vote, replacing the rater's earlier vote on the same item and pair."""
        if outcome not in OUTCOMES:
            raise ValueError(f"outcome {outcome!r} is not one of {OUTCOMES}")
        with self.connection() as db, db:
            db.execute(
                "INSERT INTO votes (rater_id, item, pair, left_run, outcome, unsafe_first, unsafe_second, updated) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (rater_id, item, pair) DO UPDATE SET "
                "left_run = excluded.left_run, outcome = excluded.outcome, unsafe_first = excluded.unsafe_first, "
                "unsafe_second = excluded.unsafe_second, updated = excluded.updated",
                (rater.id, item, pair, left_run, outcome, int(unsafe_first), int(unsafe_second), now()))

    def votes_of(self, rater: Rater) -> dict[tuple[str, str], Vote]:
        """The rater's own votes by (item, pair)."""
        return {(vote.item, vote.pair): vote for vote in self.votes(rater.id)}

    def votes(self, rater_id: int | None = None) -> list[Vote]:
        """Every vote (or one rater's), oldest rater first."""
        query = ("SELECT raters.name, item, pair, left_run, outcome, unsafe_first, unsafe_second, updated, "
                 "raters.kind FROM votes JOIN raters ON raters.id = votes.rater_id")
        with self.connection() as db:
            if rater_id is None:
                rows = db.execute(query + " ORDER BY raters.id, votes.id").fetchall()
            else:
                rows = db.execute(query + " WHERE rater_id = ? ORDER BY votes.id", (rater_id,)).fetchall()
        return [Vote(name, item, pair, left, outcome, bool(a), bool(b), updated, kind)
                for name, item, pair, left, outcome, a, b, updated, kind in rows]
