"""What the tests build: study files by the schemas the stages agree on, and fakes of the outside
world. Test files import these; no test file imports another.

    write_jsonl      records (or raw lines) one a line
    demo_overrides   settings that make a demo-profile run take seconds
    small_grid_overrides  demo_overrides with a small data step, for the make tests that run a grid
    write_stage_inputs  empty stand-ins for a demo run's Make prerequisites (make -n plans)
    quick_learning_overrides / demo_config   demo_overrides with a learning rate that moves an
                     adapter in a few steps / the demo configuration of a method with them
    cached_model     a model folder kept in .cache/tests/ across sessions, rebuilt when its sources
                     change or the folder no longer matches its manifest (the fixtures tiny_model and
                     untrained_tiny_model; build_untrained_tiny: the tiny model before pretraining)
    run_unprivileged `python -m lib ...` as a user to whom a read-only folder is read-only (root too)
    fake_hub_download / unreachable_hub   huggingface_hub.hf_hub_download served from a local
                     file laid out like the hub cache / failing as offline machines see it
    hub_mirror       a loopback HTTP server that answers the real huggingface_hub (through
                     HF_ENDPOINT) as the hub does, for one repository at one commit
    fake_judge_server  an OpenAI-compatible judge on loopback (loopback_server, send_json)
    write_run        one run directory (config.json, train_metrics.json, train.done,
                     predictions.jsonl, eval.json) from per-item scores
    write_study      every input of `python -m lib report` (processed data, runs, summary,
                     scaling, examples), with numbers chosen so that each macro's expected text
                     can be worked out by hand; read_macros reads the macros.tex it leads to
    synthetic_study  runs whose per-item losses follow a known power law, on SUMMARY_GRID;
                     scaling_of computes their scaling.json as `summarize` does
    MAKE_FILES / make_sections   the Makefile and make/*.mk, and the targets under each `##@` heading
    REVIEW_RUNS / vote   the runs of the review's tests, and a vote of its database
"""

from __future__ import annotations

import contextlib
import csv
import fcntl
import hashlib
import http.server
import json
import math
import os
import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import pytest

from lib.config import UNTUNED_RUNS, Grid, load_grid, parse_count, run_name
from lib.errors import UserError
from lib.evaluate.metrics import METRICS
from lib.io import nested_value, write_json
from lib.review.store import Vote
from lib.runs import MCQ_PREDICTIONS
from lib.stats import bootstrap, token_weighted_loss
from lib.summarize import scaling_analysis
from lib.summarize.fits import power_law
from lib.summarize.forgetting import read_track_items
from lib.summarize.item_scores import read_item_scores, read_predictions
from lib.summarize.table import collect_runs

REPO_ROOT = Path(__file__).resolve().parent.parent
# the Makefile and the files it includes, each a section of `make help` or more
MAKE_FILES = (REPO_ROOT / "Makefile", *sorted((REPO_ROOT / "make").glob("*.mk")))


def make_sections(path: Path) -> dict[str, list[str]]:
    """{`##@` heading: the targets with a `##` help line under it} of one make file; targets before
    its first heading come under None."""
    sections, heading = {}, None
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("##@ "):
            heading = line[4:]
            sections.setdefault(heading, [])
        elif match := re.match(r"([A-Za-z0-9_%.-]+):.*## ", line):
            sections.setdefault(heading, []).append(match.group(1))
    return sections


def write_jsonl(path: Path, records: list, encoding: str = "utf-8") -> Path:
    """Write records (dicts, or raw strings written as they are) one a line."""
    lines = (r if isinstance(r, str) else json.dumps(r, ensure_ascii=False) for r in records)
    path.write_text("".join(line + "\n" for line in lines), encoding=encoding)
    return path


def demo_overrides(tiny_model: Path, *extra: str) -> list[str]:
    """Settings that make a demo-profile run take seconds in a test."""
    return [f"model.name_or_path={tiny_model}", "train.report_to=none", "train.eval_steps=4",
            "train.save_steps=4", "train.logging_steps=2",
            "eval.max_new_tokens=16", "eval.bootstrap_samples=50", *extra]


def small_grid_overrides(tiny_model: Path) -> list[str]:
    """demo_overrides for the make tests that run a grid end to end: a data step of 8 test, 8 dev
    and 8 multiple-choice items, enough for every stage to write what it writes."""
    return demo_overrides(tiny_model, "data.synthetic_size=1000", "data.test_size=8", "data.dev_size=8",
                          "eval.mcq_size=8")


def write_stage_inputs(root: Path, sizes: tuple[str, ...] = ("64",)) -> tuple[Path, Path]:
    """Empty stand-ins for what a demo run's Make rules depend on (the data step's files, the
    model's ready marker), under `root`: enough for make to decide what to run, nothing to train on.
    Returns (DATA_DIR, MODEL)."""
    processed, model = root / "data" / "processed" / "demo", root / "model"
    names = ["manifest.json", "mcq_report.json", "dev.jsonl", "test.jsonl", "mcq.jsonl",
             *(f"train-{size}.jsonl" for size in sizes)]
    for path in (*(processed / name for name in names), model / ".ready"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("", encoding="utf-8")
    return root / "data", model


def quick_learning_overrides(tiny_model: Path, *extra: str) -> list[str]:
    """demo_overrides with a learning rate that moves the adapter in a few steps."""
    return demo_overrides(tiny_model, "train.learning_rate=5e-3", *extra)


def demo_config(tiny_model: Path, method: str = "lora", *extra: str):
    """The demo configuration of a method with quick_learning_overrides (as the command line gets them)."""
    from lib.config import load_config

    return load_config("demo", method, overrides=quick_learning_overrides(tiny_model, *extra))


# --- the tiny models, built once and kept in .cache/tests/ across sessions --------------------------

# What the tiny model is made of: its recipe, its pages, its shape; and the demo profile that runs it.
TINY_MODEL_SOURCES = ("lib/tiny_model.py", "lib/data/synthetic.py", "lib/architecture.py",
                      "experiments/profiles/demo.yaml")
MODEL_CACHE = REPO_ROOT / ".cache" / "tests"


def cache_key(*parts: str) -> str:
    """A digest of the source files that define a model and of the libraries that build it: any
    change to either gives another key, so a stale model is never reused."""
    from lib.io import library_versions, sha256_file

    digest = hashlib.sha256(json.dumps(library_versions(), sort_keys=True).encode())
    for part in parts:
        digest.update(part.encode() + b"\0" + sha256_file(REPO_ROOT / part).encode())
    return digest.hexdigest()[:16]


def folder_digests(folder: Path) -> dict[str, str]:
    from lib.io import sha256_file

    return {path.name: sha256_file(path) for path in sorted(folder.iterdir()) if path.is_file()}


def cached_model(name: str, build, cache: Path = MODEL_CACHE, sources: tuple[str, ...] = TINY_MODEL_SOURCES) -> Path:
    """The folder `build(folder)` writes, kept in <cache>/<name>-<key>/ for later sessions (the key:
    cache_key of `sources`).

    An entry is trusted only when its manifest (<name>-<key>.json, written last) lists exactly the
    folder's files with their SHA-256: a build killed mid-way leaves no manifest, and a file damaged
    or changed since gives another digest; either way the model is built again. A lock makes a
    second session (or an xdist worker) wait for the first's build instead of doing it twice."""
    from lib.io import atomic_folder, read_json

    key = cache_key(*sources)
    folder, manifest = cache / f"{name}-{key}", cache / f"{name}-{key}.json"
    cache.mkdir(parents=True, exist_ok=True)
    with (cache / f"{name}.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, or the process dies
        with contextlib.suppress(UserError):  # no manifest, or not one that parses
            if folder.is_dir() and read_json(manifest) == folder_digests(folder):
                return folder
        manifest.unlink(missing_ok=True)
        remove_other_entries(cache, name, keep=folder.name)
        with atomic_folder(folder) as work:
            build(work)
        write_json(manifest, folder_digests(folder))
    return folder


def remove_other_entries(cache: Path, name: str, keep: str) -> None:
    """What the lock's holder finds of `name` besides `keep`: entries of older sources, and the
    temporary folders of builds that were killed. The cache keeps one model a name."""
    entry = re.compile(rf"\.?{re.escape(name)}-[0-9a-f]{{16}}(\.json|\..*\.(tmp|old))?")
    for path in cache.iterdir():
        if entry.fullmatch(path.name) and path.name != keep:
            shutil.rmtree(path) if path.is_dir() else path.unlink()


def build_untrained_tiny(out: Path) -> Path:
    """The tiny model's tokenizer and random weights, as lib.tiny_model builds them before pretraining."""
    from lib.model import READY_MARKER
    from lib.tiny_model import TinySpec, build_model, pages, train_tokenizer

    spec = TinySpec()
    tokenizer = train_tokenizer(pages(spec), spec)
    tokenizer.save_pretrained(out)
    build_model(tokenizer, spec).save_pretrained(out, safe_serialization=True)
    (out / READY_MARKER).write_text("built\n", encoding="utf-8")
    return out


def run_unprivileged(*args, timeout: float = 300) -> subprocess.CompletedProcess:
    """`python -m lib <args>` from the repository root, as the run_cli fixture runs it, but without
    root's power to write anywhere (CAP_DAC_OVERRIDE, dropped with util-linux's setpriv), so that a
    folder without write permission refuses it as it refuses any other user."""
    command = [sys.executable, "-m", "lib", *map(str, args)]
    if os.geteuid() == 0:
        if shutil.which("setpriv") is None:
            pytest.skip("root, and no setpriv (util-linux) to give up the power to write anywhere")
        command = ["setpriv", "--bounding-set=-dac_override", "--", *command]
    return subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout)


# --- the Hugging Face hub ------------------------------------------------------------------------


def fake_hub_download(monkeypatch, cache: Path, commit: str, filename: str) -> tuple[Path, list[dict]]:
    """huggingface_hub.hf_hub_download replaced by one that returns the file
    <cache>/snapshots/<commit>/<filename> (the hub cache's layout; the caller writes it) and
    records the arguments of each call. Returns that path and the list of calls."""
    import huggingface_hub

    cached = cache / "snapshots" / commit / filename
    cached.parent.mkdir(parents=True)
    calls = []

    def download(repo_id, filename, **kwargs):
        calls.append({"repo_id": repo_id, "filename": filename, **kwargs})
        return str(cached)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", download)
    return cached, calls


@contextlib.contextmanager
def loopback_server(handler: type[http.server.BaseHTTPRequestHandler]):
    """A threaded HTTP server of `handler` on a free 127.0.0.1 port, for the body of a with block."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def send_json(handler: http.server.BaseHTTPRequestHandler, status: int, payload, headers: dict | None = None) -> None:
    data = json.dumps(payload, ensure_ascii=False).encode("utf-8")
    handler.send_response(status)
    for name, value in {"Content-Type": "application/json", "Content-Length": str(len(data)),
                        **(headers or {})}.items():
        handler.send_header(name, value)
    handler.end_headers()
    handler.wfile.write(data)


@contextlib.contextmanager
def fake_judge_server(monkeypatch, handler: type[http.server.BaseHTTPRequestHandler], api_key: str, model: str):
    """An OpenAI-compatible judge on loopback (`handler` answers POST /v1/chat/completions), named
    to lib.evaluate.judge by the MEDQA_JUDGE_* variables; server.seen collects what handlers record."""
    with loopback_server(handler) as server:
        server.seen = []
        monkeypatch.setenv("MEDQA_JUDGE_BASE_URL", f"http://127.0.0.1:{server.server_address[1]}/v1")
        monkeypatch.setenv("MEDQA_JUDGE_API_KEY", api_key)
        monkeypatch.setenv("MEDQA_JUDGE_MODEL", model)
        yield server


@contextlib.contextmanager
def hub_mirror(repo: str, commit: str, files: dict[str, bytes], repo_type: str = "model"):
    """A hub on 127.0.0.1 serving `files` of `repo` at `commit` (reached as revision main or as the
    commit): the revision and tree APIs, then HEAD and GET of each file with the commit and etag
    headers huggingface_hub checks. Yields (the endpoint, the requests it received)."""
    prefix = "" if repo_type == "model" else f"{repo_type}s/"
    requests: list[str] = []

    class Hub(http.server.BaseHTTPRequestHandler):
        def answer(self, body: bytes, content_type: str = "application/octet-stream") -> None:
            self.send_response(200)
            self.send_header("Content-Type", content_type)
            self.send_header("X-Repo-Commit", commit)
            self.send_header("ETag", f'"{hashlib.sha256(body).hexdigest()}"')
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command == "GET":
                self.wfile.write(body)

        def do_GET(self):
            requests.append(f"{self.command} {self.path}")
            path = urlparse(self.path).path
            api = f"/api/{repo_type}s/{repo}"
            if path in (f"{api}/revision/main", f"{api}/revision/{commit}"):
                siblings = [{"rfilename": name} for name in files]
                return self.answer(json.dumps({"id": repo, "sha": commit, "siblings": siblings}).encode(),
                                   "application/json")
            if path == f"{api}/tree/{commit}":
                tree = [{"type": "file", "path": name, "size": len(body), "oid": hashlib.sha1(body).hexdigest()}
                        for name, body in files.items()]
                return self.answer(json.dumps(tree).encode(), "application/json")
            for revision in ("main", commit):
                name = path.removeprefix(f"/{prefix}{repo}/resolve/{revision}/")
                if name != path and name in files:
                    return self.answer(files[name])
            self.send_error(404)

        do_HEAD = do_GET

        def log_message(self, *args):
            pass

    with loopback_server(Hub) as server:
        yield f"http://127.0.0.1:{server.server_address[1]}", requests


def unreachable_hub(monkeypatch, error: Exception) -> None:
    """huggingface_hub.hf_hub_download replaced by one that raises `error`, as without a network."""
    import huggingface_hub

    def unreachable(*args, **kwargs):
        raise error

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", unreachable)


def hide_packages(monkeypatch, *modules: str) -> None:
    """importlib.util.find_spec answers None for `modules`, as where they are not installed."""
    import importlib.util

    real_find_spec = importlib.util.find_spec

    def find_spec(name, package=None):
        return None if name in modules else real_find_spec(name, package)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)


# --- runs ----------------------------------------------------------------------------------------


def write_adapter(folder: Path) -> None:
    """The files PEFT saves for an adapter (a one-matrix one: the summary only checks they are there)."""
    from safetensors.numpy import save_file

    folder.mkdir(parents=True)
    write_json(folder / "adapter_config.json", {"base_model_name_or_path": "models/tiny-qwen2", "r": 1})
    save_file({"base_model.model.lora_A.weight": np.zeros((1, 4), dtype=np.float32)},
              str(folder / "adapter_model.safetensors"))


# the grid of the summary's tests, and its default seed
SUMMARY_SEED = 42
SUMMARY_GRID = Grid(methods=("lora", "qlora"), sizes=("1k", "2k", "4k", "8k"), seeds=(SUMMARY_SEED,))


def scaling_of(runs, grid=SUMMARY_GRID, n_samples=100, profile="demo"):
    """scaling.json's content for the runs in `runs` (as `summarize` computes it)."""
    rows = collect_runs(runs, grid, SUMMARY_SEED)
    item_scores = read_item_scores(rows, runs, read_predictions(rows, runs))
    return scaling_analysis(rows, grid, SUMMARY_SEED, item_scores, n_samples, profile, read_track_items(rows, runs))


def synthetic_study(tmp_path, alpha=0.4, n_items=300, seed=0, seed_effects=None, sizes=SUMMARY_GRID.sizes):
    """Runs whose per-item losses are L(D) = 1.2 + 30 D^-alpha, plus an item difficulty shared by
    every run (sd 0.5) and independent noise (sd 0.3); ROUGE-L 20 + 3 log2(D / 1k) and MCQ answers
    right with probability 40% + 2% log2(D / 1k), per item. `seed_effects` {training seed: [shift of
    each size's metrics]} trains each size once per seed, shifted by that seed's effect (on the
    loss; 10 times it on ROUGE-L and MCQ accuracy, in points)."""
    rng = np.random.default_rng(seed)
    difficulty = rng.normal(0, 0.5, n_items)
    runs = tmp_path / "runs"
    for training_seed, shifts in (seed_effects or {SUMMARY_SEED: [0.0] * len(sizes)}).items():
        suffix = "" if training_seed == SUMMARY_SEED else f"-s{training_seed}"
        for size, shift in zip(sizes, shifts):
            examples = parse_count(size)
            for method, offset in (("lora", 0.0), ("qlora", 0.05)):
                losses = (power_law(examples, 1.2 + offset, 30.0, alpha) + shift + difficulty
                          + rng.normal(0, 0.3, n_items))
                rouge = 20 + 3 * np.log2(examples / 1_000) - 10 * offset + 10 * shift + rng.normal(0, 5, n_items)
                right = 0.4 + 0.02 * np.log2(examples / 1_000) + 0.1 * shift
                write_run(runs, f"{method}-{size}{suffix}", losses, rouge, mcq_correct=rng.random(n_items) < right,
                          cost={"wall_time_s": 100.0 * (1 + offset * 10), "peak_memory_gb": 10.0 - 100 * offset,
                                "tokens_per_s": 1000.0})
    return runs


# the runs of the review's tests: the base model and three fine-tuned runs, every pair of them
REVIEW_RUNS = ("base", "lora-100", "lora-200", "qlora-100")
REVIEW_PAIRS = len(REVIEW_RUNS) * (len(REVIEW_RUNS) - 1) // 2


def vote(rater: str, item: str, pair: str, outcome: str) -> Vote:
    """A vote of the review's database (lib.review.store), its pair's first run shown on the left."""
    return Vote(rater, item, pair, pair.split("|")[0], outcome, False, False, "2026-12-03T00:00:00+00:00")


def sequence_logprob(model, prompt: list[int], continuation: list[int]) -> float:
    """log p(continuation | prompt) from one forward pass over the whole sequence, no cache, no padding:
    what lib.evaluate.multiple_choice.option_logprobs computes in batches with a shared prompt cache."""
    import torch

    ids = torch.tensor([prompt + continuation])
    with torch.inference_mode():
        logprobs = torch.log_softmax(model(input_ids=ids).logits[0].float(), dim=-1)
    return sum(float(logprobs[len(prompt) - 1 + j, token]) for j, token in enumerate(continuation))


def write_run(runs_dir, name, item_losses=None, rouge=None, *, trained=True, evaluated=True,
              cost=None, mcq=None, mcq_correct=None, general=None, tokens=None, log_history=None, metrics=None):
    """One run directory; eval.json's test_loss, perplexity and rougeL are computed from the
    per-item scores given, `metrics` adds others (as corpus_metrics returns them), and every
    other metric each evaluation has (lib.runs checks eval.json against the registry) is 1.0;
    `mcq` is eval.json's mcq object ({"overall": {...}, "per_source": {...}}), or `mcq_correct`,
    whether each knowledge-track item was answered right, gives it and mcq_predictions.jsonl;
    `general` is eval.json's general object."""
    run_dir = runs_dir / name
    run_dir.mkdir(parents=True)
    method, _, size = name.partition("-")
    if name not in UNTUNED_RUNS:
        write_json(run_dir / "config.json", {"run": {"name": name, "method": method, "size": size}})
    if trained and name not in UNTUNED_RUNS:
        write_adapter(run_dir / "adapter")
        write_json(run_dir / "train_metrics.json", {"steps": 10, "log_history": log_history or [], **(cost or {})})
        (run_dir / "train.done").write_text("")
    if not evaluated or item_losses is None:
        return run_dir
    n = len(item_losses)
    tokens = tokens if tokens is not None else [10] * n
    rouge = rouge if rouge is not None else [20.0] * n
    write_jsonl(run_dir / "predictions.jsonl", [
        {"id": f"t{i}", "question": f"问题{i}", "reference": f"参考{i}", "prediction": f"{name}回答{i}",
         "scores": {"rougeL": rouge[i], "loss": item_losses[i], "ref_tokens": tokens[i]}}
        for i in range(n)
    ])
    rows = np.column_stack([np.multiply(item_losses, tokens), tokens])  # [summed NLL, tokens]
    loss = bootstrap(rows, token_weighted_loss, 200)
    measured = {"test_loss": loss, "perplexity": {key: math.exp(loss[key]) for key in ("value", "ci_low", "ci_high")},
                "rougeL": bootstrap(rouge, n_samples=200)}
    others = {name: {"value": 1.0, "ci_low": 1.0, "ci_high": 1.0, "n": n} for name, metric in METRICS.items()
              if metric.always and name not in measured}
    metrics = others | (metrics or {}) | measured
    result = {"run": name, "n_items": n, "metrics": metrics}
    if mcq_correct is not None:
        write_jsonl(run_dir / MCQ_PREDICTIONS, [{"id": f"m{i}", "source": "cmb", "answer": "A",
                                                 "correct": {"letter": bool(right)}}
                                                for i, right in enumerate(mcq_correct)])
        mcq = {"overall": bootstrap(100.0 * np.asarray(mcq_correct), n_samples=200)}
    if mcq is not None:
        result["mcq"] = mcq
    if general is not None:
        result["general"] = general
    write_json(run_dir / "eval.json", result)
    return run_dir


# --- a whole study, for the report -----------------------------------------------------------------

PROFILE = "demo"
QUESTION = "高血压患者能不能喝咖啡？"
BEST_ANSWER = "可以适量饮用，但每天不宜超过两杯，并注意监测血压。"


def stat(value: float, half_width: float) -> dict:
    return {"value": value, "ci_low": value - half_width, "ci_high": value + half_width, "n": 200}


def run_metrics(method: str, size_index: int) -> dict:
    """Metrics of one run: loss falls and ROUGE-L rises with size; QLoRA a little behind LoRA; the
    untuned rows: base (size_index 0) and base-nf4 (size_index 1, a little behind base)."""
    if method == "base":
        loss, rouge = 3.14159 + 0.1 * size_index, 12.345 - size_index
    else:
        loss = 2.5 - 0.2 * size_index + (0.05 if method == "qlora" else 0.0)
        rouge = 20.0 + 2.5 * size_index - (0.5 if method == "qlora" else 0.0)
    return {
        "test_loss": stat(loss, 0.05), "perplexity": stat(2.718281828 ** loss, 0.5),
        "rouge1": stat(rouge + 5, 1.0), "rouge2": stat(rouge / 2, 1.0), "rougeL": stat(rouge, 1.0),
        "bleu4_char": stat(rouge / 3, 0.8), "bleu4_word": stat(rouge / 4, 0.8),
        "distinct1": stat(40.0, 2.0), "distinct2": stat(60.0, 2.0), "answer_chars": stat(88.0, 5.0),
        "empty_rate": stat(0.5, 0.5), "truncated_rate": stat(2.0, 1.0),
    }


def track_of_items(correct: list[list[int]]) -> dict:
    """eval.json's object of a multiple-choice track from each item's [letter, acc, acc_norm] right (1) or wrong (0)."""
    columns = np.array(correct, dtype=float) * 100
    return {"overall": bootstrap(columns[:, 0], n_samples=200), "per_source": {},
            "acc": bootstrap(columns[:, 1], n_samples=200), "acc_norm": bootstrap(columns[:, 2], n_samples=200),
            "chance": 25.0, "items": {f"q{i}": row for i, row in enumerate(correct)}}


def mcq(method: str, size_index: int) -> dict:
    """eval.json's medical track: letter accuracy overall and per source, cloze accuracy."""
    accuracy = 41.25 - size_index if method == "base" else 40.0 - size_index
    return {"overall": stat(accuracy, 4.0),
            "per_source": {"cmb": stat(accuracy + 2, 6.0), "cmexam": stat(accuracy - 2, 6.0)},
            "acc": stat(accuracy + 10, 4.0), "acc_norm": stat(accuracy + 12, 4.0), "chance": 25.0}


def general(method: str, size_index: int) -> dict:
    """eval.json's general track: the base knows most, each size forgets a little more."""
    accuracy = 52.5 if method == "base" else 50.0 - 2 * size_index
    return {"overall": stat(accuracy, 4.0), "per_source": {"chinese_history": stat(accuracy, 6.0)},
            "acc": stat(accuracy + 5, 4.0), "acc_norm": stat(accuracy + 8, 4.0), "chance": 25.0}


def forgetting_entry(run: str, method: str, size: str, seed: int, index: int) -> dict:
    """scaling.json's change of a run from its own base row: medical gains, general losses growing with size."""
    def change(value: float) -> dict:
        return {"value": value, "ci_low": value - 3.0, "ci_high": value + 3.0, "n": 60}

    return {"run": run, "method": method, "examples": parse_count(size), "seed": seed,
            "base_run": "base-nf4" if method == "qlora" else "base",
            "changes": {"mcq": {s: change(1.5 + index) for s in ("letter", "acc", "acc_norm")},
                        "general": {s: change(-1.0 - 2.5 * index) for s in ("letter", "acc", "acc_norm")}}}


def config(method: str, size: str, seed: int, profile: str) -> dict:
    return {
        "run": {"name": run_name(method, size, seed, seed), "profile": profile, "method": method, "size": size,
                "examples": parse_count(size), "seed": seed},
        "data": {"source": "synthetic", "seed": 42},
        "model": {"name_or_path": "models/tiny-qwen2"},
        "lora": {"r": 16, "alpha": 32, "dropout": 0.05, "target_modules": "all-linear"},
        "quantization": {"load_in_4bit": method == "qlora", "quant_type": "nf4", "double_quant": True},
        "train": {"epochs": 1.0, "learning_rate": 2e-3, "lr_scheduler": "cosine", "warmup_ratio": 0.03,
                  "effective_batch_size": 8, "per_device_batch_size": 8, "max_length": 256, "batching": "auto"},
        "eval": {"max_new_tokens": 64, "bootstrap_samples": 200},
        "resolved": {"dtype": "float32", "processes": 1, "gradient_accumulation_steps": 1, "batching": "padded"},
        "provenance": provenance_record(seed),
    }


def provenance_record(seed: int) -> dict:
    return {"created": "2026-11-28T10:00:00+00:00", "git": {"commit": "0123456789abcdef0123", "dirty": False},
            "versions": {"python": "3.11.2", "torch": "2.13.0", "transformers": "5.23.0"},
            "hardware": {"platform": "Linux-6.1-x86_64", "cpu_count": 2}, "seed": seed}


def cost(method: str, size_index: int) -> dict:
    return {"wall_time_s": 90.0 * (size_index + 1) * (1.5 if method == "qlora" else 1.0),
            "tokens_per_s": 12345.6 / (1.5 if method == "qlora" else 1.0),
            "peak_memory_gb": 1.2 if method == "qlora" else 2.0, "trainable_params": 45_000,
            "total_params": 1_400_000, "train_tokens": 250_000.0 * (size_index + 1), "steps": 32 * (size_index + 1),
            "examples_per_step": 16, "tokens_per_step": 250_000.0 / 32, "final_train_loss": 2.0, "best_dev_loss": 2.1}


def write_study(root: Path, profile: str = PROFILE, unfinished: dict[str, str] | None = None,
                seeds: tuple[int, ...] | None = None) -> dict[str, Path]:
    """Every input of `report` for the profile's grid under `root` (its training seeds, or
    `seeds`: the first is the default one); `unfinished` maps run names to a status other than
    done (missing, training, not_evaluated) for a partial study. With several seeds the
    comparisons have p-values and the intervals resample the seeds, as lib.summarize writes them.
    Returns the command's paths."""
    unfinished = unfinished or {}
    grid = load_grid(profile)
    seeds = seeds or grid.seeds
    seed = seeds[0]
    data, results = root / "data", root / "results"
    runs = results / "runs"
    data.mkdir(parents=True)
    runs.mkdir(parents=True)

    rules = [("normalise", "全角转半角、去除首尾空白", 0), ("too_short", "问题 < 4 字或回答 < 8 字", 25),
             ("ads_urls_phones", "含网址（如 http://a.b/c_d?x=1&y=2）、电话或 100% 广告的回答 #spam", 8),
             ("near_duplicate", "MinHash 估计 Jaccard ≥ 0.8 的重复问题", 55)]
    (data / "cleaning_report.json").write_text(json.dumps({
        "input_records": 1200, "malformed_lines": 3,
        "rules": [{"rule": r, "description": d, "dropped": n, "examples": []} | ({"changed": 12} if n == 0 else {})
                  for r, d, n in rules],
        "kept": 1112}, ensure_ascii=False), encoding="utf-8")
    files = {"test.jsonl": 200, "dev.jsonl": 100, "mcq.jsonl": 60}
    files |= {f"train-{size}.jsonl": parse_count(size) for size in grid.sizes}
    (data / "manifest.json").write_text(json.dumps({
        "clean_records": 1112, "sizes": {size: parse_count(size) for size in grid.sizes},
        "files": {name: {"count": count, "sha256": f"{count:064x}"} for name, count in files.items()}}),
        encoding="utf-8")

    rows = []
    identities = [("base", "base", "0", 0, ""), ("base-nf4", "base", "0", 1, "")] + [
        (run_name(m, s, run_seed, seed), m, s, i, run_seed)
        for m in grid.methods for i, s in enumerate(grid.sizes) for run_seed in seeds]
    for run, method, size, index, run_seed in identities:
        status = unfinished.get(run, "done")
        row = {"run": run, "method": method, "size": size, "examples": parse_count(size) if method != "base" else 0,
               "seed": run_seed, "status": status}
        run_dir = runs / run
        if status != "missing":
            run_dir.mkdir()
        if method != "base" and status in ("done", "not_evaluated", "training"):
            (run_dir / "config.json").write_text(json.dumps(config(method, size, run_seed, profile)), encoding="utf-8")
        if method != "base" and status in ("done", "not_evaluated"):
            row |= cost(method, index)
            (run_dir / "train_metrics.json").write_text(json.dumps(
                cost(method, index) | {"peak_memory_kind": "process_rss", "mfu": None}), encoding="utf-8")
            (run_dir / "train.done").write_text("")
        if status == "done":
            metrics = run_metrics(method, index)
            (run_dir / "eval.json").write_text(json.dumps({
                "run": run, "n_items": 200, "metrics": metrics, "mcq": mcq(method, index),
                "general": general(method, index),
                "provenance": provenance_record(seed)}), encoding="utf-8")
            tracks = {"mcq": mcq(method, index), "general": general(method, index)}
            track_metrics = {name: nested_value(tracks, metric.from_eval)
                             for name, metric in METRICS.items() if metric.from_eval}
            for name, value in (metrics | {k: v for k, v in track_metrics.items() if v}).items():
                row |= {name: value["value"], f"{name}_ci_low": value["ci_low"], f"{name}_ci_high": value["ci_high"]}
        rows.append(row)
    columns = ["run", "method", "size", "examples", "seed", "status", "note"]
    quoted = [name for name, metric in METRICS.items() if not metric.optional]  # summary.csv's metric columns
    columns += [f"{m}{s}" for m in quoted for s in ("", "_ci_low", "_ci_high")]
    columns += list(cost("lora", 0))
    with (results / "summary.csv").open("w", encoding="utf-8", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)

    def done(method: str) -> list[tuple[int, dict]]:
        return [(i, r) for i, r in enumerate(rows) if r["method"] == method and r["status"] == "done"
                and r["seed"] == seed]

    fits = {}
    for method in grid.methods:
        points = [[r["examples"], r["test_loss"]] for _, r in done(method)]
        if len(points) < 3:
            fits[method] = {"status": "too_few_points", "points": points}
            continue
        fits[method] = {
            "status": "ok", "E": {"value": 1.2345, "ci_low": 1.1, "ci_high": 1.3},
            "A": {"value": 56.789, "ci_low": 40.0, "ci_high": 80.0},
            "alpha": {"value": 0.4321 if method == "lora" else 0.3876, "ci_low": 0.25, "ci_high": 0.61},
            "slope_per_doubling": {"value": -0.2, "ci_low": -0.26, "ci_high": -0.14},
            "points": points, "residual_dof": len(points) - 3,
            "holdout": {"status": "ok", "size": points[-1][0], "observed": 1.9, "predicted": 1.957,
                        "abs_error": 0.057, "rel_error": 0.03},
            "leave_one_out": {"status": "ok", "mean_abs_error": 0.0405, "max_abs_error": 0.071, "sizes": [
                {"status": "ok", "size": size,
                 "abs_error": 0.071 if i == 0 else 0.057 if i == len(points) - 1 else 0.017}
                for i, (size, _) in enumerate(points)]}}
    comparisons = []
    for size in grid.sizes:
        lora, qlora = (next((r for r in rows if r["run"] == run_name(m, size, seed, seed)), None)
                       for m in ("lora", "qlora"))
        if lora and qlora and lora["status"] == qlora["status"] == "done":
            several = len(seeds) > 1  # p-values only where the seeds are resampled too
            comparisons.append({
                "size": size, "examples": parse_count(size), "lora_run": lora["run"], "qlora_run": qlora["run"],
                "rougeL_diff": {"difference": -0.5, "ci_low": -1.26, "ci_high": 0.31,
                                "p_value": 0.21 if several else None, "n": 200, "seeds": len(seeds)},
                "loss_diff": {"difference": 0.05, "ci_low": 0.02, "ci_high": 0.08,
                              "p_value": 0.0001 if several else None, "n": 200, "seeds": len(seeds)},
                "time_ratio": 1.5, "memory_ratio": 0.6, "throughput_ratio": 1 / 1.5})
    (results / "scaling.json").write_text(json.dumps({
        "resampled": "training seeds and test items" if len(seeds) > 1 else "test items",
        "grid": {"name": "default", "sizes": sorted({point[0] for fit in fits.values() for point in fit["points"]})},
        "loss_fits": fits,
        "trends": {metric: {m: {"status": "ok", "slope_per_doubling": slope} for m in grid.methods}
                   for metric, slope in (("rougeL", {"value": 2.5, "ci_low": 1.75, "ci_high": 3.25}),
                                         ("mcq_accuracy", {"value": -1.0, "ci_low": -4.0, "ci_high": 2.0}))},
        "lora_vs_qlora": comparisons,
        "forgetting": [forgetting_entry(r["run"], r["method"], r["size"], r["seed"], grid.sizes.index(r["size"]))
                       for r in rows if r["method"] != "base" and r["status"] == "done"]}), encoding="utf-8")
    trained = [r for r in rows if r["method"] != "base" and r["status"] == "done"]
    if trained:
        best = min(trained, key=lambda r: r["test_loss"])["run"]
        examples = {"best_run": best, "examples": [
            {"id": "test-0007", "question": QUESTION, "reference": "高血压患者可以适量喝咖啡，" * 30,
             "base": "咖啡 咖啡 $%&_#{}~^\\ 咖啡", "best": BEST_ANSWER}]}
        (results / "examples.json").write_text(json.dumps(examples, ensure_ascii=False), encoding="utf-8")
    return {"results": results, "runs": runs, "data": data}


def read_macros(folder: Path) -> dict[str, str]:
    text = (folder / "macros.tex").read_text(encoding="utf-8")
    return dict(re.findall(r"^\\newcommand\{\\([A-Za-z]+)\}\{(.*)\}$", text, flags=re.MULTILINE))
