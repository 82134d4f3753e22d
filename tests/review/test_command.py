"""The `review` command (lib/review/command.py): export of the votes, their analysis in the report,
and make's review targets."""

from __future__ import annotations

import csv
import itertools
import subprocess

from builders import REPO_ROOT, read_macros, write_study
from lib.review.store import Store


def test_export_writes_every_vote_and_the_report_gets_a_preference_section(tmp_path, run_cli):
    paths = write_study(tmp_path / "study")
    db = paths["results"] / "review" / "votes.sqlite"
    store = Store(db)
    runs = ["base", "lora-100", "lora-200"]
    for rater in ("alice", "bob"):
        token = store.invite(rater)
        for item, (first, second) in itertools.product(("t1", "t2", "t3"), itertools.combinations(runs, 2)):
            store.record(store.rater_of(token), item, f"{first}|{second}", first, "second", False, rater == "bob")
    exported = run_cli("review", "export", "--db", db, "--out", tmp_path / "votes.csv")
    assert exported.returncode == 0, exported.stderr
    rows = list(csv.DictReader((tmp_path / "votes.csv").open(encoding="utf-8")))
    assert len(rows) == 18 and {row["rater"] for row in rows} == {"alice", "bob"}

    out = tmp_path / "generated"
    report = [*("report", "--results", paths["results"], "--runs", paths["runs"], "--data", paths["data"]),
              *("--profile", "demo", "--out", out)]
    assert run_cli(*report).returncode == 0
    assert (read_macros(out)["PreferenceVotes"] == r"\NA{}"
            and "make review" in (out / "tables" / "preference.tex").read_text(encoding="utf-8"))

    analysed = run_cli("review", "analyse", "--db", db, "--out", paths["results"] / "review" / "preference.json")
    assert analysed.returncode == 0, analysed.stderr
    assert run_cli(*report).returncode == 0
    macros = read_macros(out)
    assert (macros["PreferenceRaters"], macros["PreferenceVotes"], macros["PreferenceAgreement"]) == ("2", "18", "100")
    assert macros["PreferenceTopRun"] == r"\texttt{lora-200}"
    table = (out / "tables" / "preference.tex").read_text(encoding="utf-8")
    assert r"\texttt{lora-200}" in table and "100\\%（6）" in table
    assert r"\newif\ifHavePreference" in (out / "status.tex").read_text(encoding="utf-8")


def test_make_serves_where_asked_and_analyses_the_votes_before_the_report(tmp_path):
    def plan(*args: str) -> str:
        # figures.json taken as up to date (-o): its recipe checks TeX, which a dry run would still do
        finished = subprocess.run(["make", "-n", *args, "PROFILE=demo", f"RESULTS_DIR={tmp_path}",
                                   f"GENERATED_DIR={tmp_path}/generated",
                                   "-o", f"{tmp_path}/generated/demo/figures/figures.json"],
                                  cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
        assert finished.returncode == 0, finished.stderr
        return finished.stdout

    serve = plan("review", "HOST=0.0.0.0", "PORT=9000")
    assert (f"-m lib review serve --runs {tmp_path}/demo/runs --db {tmp_path}/demo/review/votes.sqlite"
            " --host 0.0.0.0 --port 9000" in serve)
    assert "review analyse" not in plan("report")  # no review started: nothing to analyse
    Store(tmp_path / "demo" / "review" / "votes.sqlite")
    report = plan("report")
    analyse_at = report.index(f"-m lib review analyse --db {tmp_path}/demo/review/votes.sqlite "
                              f"--out {tmp_path}/demo/review/preference.json")
    assert analyse_at < report.index("-m lib report")
