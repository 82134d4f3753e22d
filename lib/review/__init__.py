"""Blind side-by-side review: people rate the runs' answers in a browser (`make review`).

    lib/review/answers.py        the evaluated runs' answers (predictions.jsonl) on the items all of them answered
    lib/review/store.py          the votes database (SQLite, results/<profile>/review/votes.sqlite)
    lib/review/schedule.py       which question and which two answers a rater sees next, and on which side
    lib/review/app.py            the web pages (FastAPI, served by uvicorn)
    lib/review/model_rater.py    an LLM judge as a rater of its own (both orders of each pair), kept apart from people
    lib/review/bradley_terry.py  Bradley-Terry strengths, win rates against the base model, agreement
    lib/review/command.py        the `review` command: serve, invite, export, judge, analyse
"""
