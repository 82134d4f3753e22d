"""Hostile inputs never end in a silently wrong result or a traceback: checkpoints of other
inputs, two processes on one folder, content after a JSON array, pathological records, a run
whose adapter weights are gone, a make step whose target never catches up with its inputs.

Each test here failed before the behaviour it guards was built.
"""

from __future__ import annotations

import csv
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from builders import REPO_ROOT, demo_overrides, write_jsonl, write_stage_inputs
from lib.config import load_config, parse_count
from lib.data.sources import read_examples
from lib.errors import UserError
from lib.io import exclusive, read_json, sha256_file

# --- checkpoints belong to the inputs that made them -----------------------------------------------


@pytest.mark.slow
def test_a_checkpoint_of_other_inputs_is_discarded_not_resumed(tiny_model, demo_data, tmp_path, capsys):
    from lib.train import RunSpec, train

    out = tmp_path / "lora-64"
    config = load_config("demo", "lora", overrides=demo_overrides(tiny_model, "train.learning_rate=5e-3"))

    def run(seed: int) -> dict:
        spec = RunSpec(name="lora-64", profile="demo", method="lora", size="64", examples=parse_count("64"), seed=seed)
        return train(config, spec, demo_data, out)

    first = run(42)
    first_adapter = sha256_file(out / "adapter" / "adapter_model.safetensors")
    assert (out / "checkpoints" / f"checkpoint-{first['steps']}").is_dir()  # a finished run keeps its last one

    second = run(7)  # the same folder, another seed: make reruns training when settings change
    message = capsys.readouterr().out
    assert "discarding" in message and "made from other inputs (run changed)" in message
    assert "resuming" not in message
    assert second["steps"] == first["steps"] and second["tokens_per_s"] > 0  # every step trained anew
    assert sha256_file(out / "adapter" / "adapter_model.safetensors") != first_adapter
    assert read_json(out / "config.json")["run"]["seed"] == 7


# --- one process per run folder and per data folder -------------------------------------------------


def test_a_second_holder_of_a_lock_stops_with_one_line(tmp_path):
    with exclusive(tmp_path / ".lock", "training lora-64"):
        with pytest.raises(UserError, match=r"training lora-64 is already in progress \(pid \d+ on .* since "):
            with exclusive(tmp_path / ".lock", "training lora-64"):
                pass
    with exclusive(tmp_path / ".lock", "training lora-64"):  # released when its holder is done
        pass


def hold_lock(lock_file: Path) -> subprocess.Popen:
    """Another process holding `lock_file`, as a running training or evaluation would."""
    code = ("import sys, time; from lib.io import exclusive\n"
            "with exclusive(sys.argv[1], 'a test'):\n    print('held', flush=True); time.sleep(120)")
    holder = subprocess.Popen([sys.executable, "-c", code, str(lock_file)], cwd=REPO_ROOT, stdout=subprocess.PIPE,
                              text=True)
    assert holder.stdout.readline().strip() == "held"
    return holder


def test_a_run_in_progress_is_not_evaluated_twice_and_a_killed_holder_frees_it(run_cli, tmp_path):
    run_dir = tmp_path / "runs" / "base"
    holder = hold_lock(run_dir / ".lock")
    try:
        second = run_cli("evaluate", "--profile", "demo", "--run-dir", run_dir, "--data", tmp_path / "data")
    finally:
        holder.send_signal(signal.SIGKILL)  # as a crash would: the kernel releases the lock
        holder.wait()
    assert second.returncode == 2
    assert second.stderr.strip().count("\n") == 0 and "evaluating base is already in progress" in second.stderr
    after = run_cli("evaluate", "--profile", "demo", "--run-dir", run_dir, "--data", tmp_path / "data")
    assert "already in progress" not in after.stderr and "test.jsonl: no such split" in after.stderr


def test_the_data_step_takes_its_folder(run_cli, tmp_path):
    out = tmp_path / "processed"
    holder = hold_lock(out / ".data.lock")
    try:
        second = run_cli("data", "--profile", "demo", "--raw-dir", tmp_path / "raw", "--out", out, "--sizes", "64")
    finally:
        holder.kill()
        holder.wait()
    assert second.returncode == 2 and "preparing the data is already in progress" in second.stderr
    assert not (out / "manifest.json").exists()


# --- input files: what JSON cannot say, and what it says after its end ----------------------------


def test_content_after_a_json_array_is_an_error_naming_its_line(tmp_path):
    record = {"instruction": "头痛怎么办？", "output": "建议休息，必要时就医。"}
    path = tmp_path / "two-arrays.json"
    path.write_text(json.dumps([record]) + "\n" + json.dumps([record, record]) + "\n", encoding="utf-8")
    with pytest.raises(UserError, match=r"two-arrays.json:2: content after the end of the JSON array"):
        read_examples(path, "test", max_bad_fraction=1.0)


DEEP = "[" * 100_000 + "]" * 100_000  # deeper than Python's JSON parser recurses
GOOD = {"instruction": "头痛怎么办？", "output": "建议休息，必要时就医。"}


@pytest.mark.parametrize("container", ["jsonl", "json"])
def test_pathological_records_are_malformed_lines_not_crashes(tmp_path, container):
    surrogate = '{"instruction": "\\ud800", "output": "无法写成 UTF-8 的文字"}'  # valid JSON, not Unicode
    lines = [json.dumps(GOOD, ensure_ascii=False), DEEP, surrogate, json.dumps(GOOD, ensure_ascii=False)]
    path = tmp_path / f"records.{container}"
    text = "\n".join(lines) if container == "jsonl" else "[\n" + ",\n".join(lines) + "\n]"
    path.write_text(text + "\n", encoding="utf-8")
    result = read_examples(path, "test", max_bad_fraction=1.0)
    offset = 0 if container == "jsonl" else 1  # the array's "[" is line 1
    assert [line for line, _ in result.malformed] == [2 + offset, 3 + offset]
    assert [why for _, why in result.malformed] == ["nested too deeply to read",
                                                    "a string that is not valid Unicode (a lone surrogate)"]
    assert len(result.examples) == 2


def test_a_split_with_pathological_records_still_writes(run_cli, tmp_path):
    records = [{"instruction": f"第{i}个问题：头痛伴有恶心怎么办？",
                "output": f"第{i}个回答：建议休息，测量血压，必要时就医检查。"}
               for i in range(60)]
    path = write_jsonl(tmp_path / "qa.jsonl",
                       [*records[:30], '{"instruction": "\\udc00", "output": "x"}', *records[30:]])
    finished = run_cli("data", "--profile", "demo", "--raw-dir", tmp_path / "raw", "--out", tmp_path / "out",
                       "--sizes", "20", "--set", f"data.source={path}", "--set", "data.test_size=10",
                       "--set", "data.dev_size=10", "--set", "data.max_bad_fraction=0.05")
    assert finished.returncode == 0, finished.stderr
    assert "line 31: a string that is not valid Unicode" in finished.stderr
    assert read_json(tmp_path / "out" / "cleaning_report.json")["malformed_lines"] == 1


# --- a run whose adapter weights are gone is not a finished run --------------------------------------


def test_an_adapter_without_weights_is_one_line_and_make_trains_it_again(tmp_path):
    from lib.model import check_adapter_base

    adapter = tmp_path / "runs" / "lora-64" / "adapter"
    adapter.mkdir(parents=True)
    (adapter / "adapter_config.json").write_text('{"base_model_name_or_path": "models/tiny-qwen2"}', encoding="utf-8")
    with pytest.raises(UserError, match=r"adapter: no complete adapter here \(adapter_model.safetensors missing\); "
                                        r"`make exp-lora-64` trains it"):
        check_adapter_base(adapter, "models/tiny-qwen2")

    # everything the run depends on exists and is older than the run: only the weights are gone
    data_dir, model = write_stage_inputs(tmp_path)
    run_dir = tmp_path / "results" / "demo" / "runs" / "lora-64"
    (run_dir / "adapter").mkdir(parents=True)
    for name in ("train.done", "eval.json"):
        (run_dir / name).write_text("{}", encoding="utf-8")
    for goal in ("exp-lora-64", "all-experiments"):
        plan = subprocess.run(["make", "-n", goal, "PROFILE=demo", "SIZES=64", "METHODS=lora", f"MODEL={model}",
                               f"DATA_DIR={data_dir}", f"RESULTS_DIR={tmp_path / 'results'}"],
                              cwd=REPO_ROOT, capture_output=True, text=True)
        assert f"--out {run_dir}\n" in plan.stdout and "-m lib evaluate" in plan.stdout, plan.stdout  # not "done"


# --- every make target ends up newer than its inputs --------------------------------------------------


def make(data_dir: Path, *arguments: str) -> subprocess.CompletedProcess:
    settings = "data.synthetic_size=600 data.test_size=20 data.dev_size=20 eval.mcq_size=20"
    return subprocess.run(["make", "PROFILE=demo", f"DATA_DIR={data_dir}", f"SET={settings}", *arguments],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)


def test_the_data_targets_are_satisfied_after_a_settings_change(tmp_path):
    data_dir = tmp_path / "data"
    assert make(data_dir, "data", "SIZES=50").returncode == 0
    items = data_dir / "processed" / "demo" / "mcq.jsonl"
    before = items.stat().st_mtime_ns
    time.sleep(0.01)
    changed = make(data_dir, "data", "SIZES=50 100")  # new sizes rerun the data steps; the items stay the same
    assert changed.returncode == 0, changed.stderr
    assert items.stat().st_mtime_ns == before  # the evaluations that read them are not redone
    plan = make(data_dir, "-n", "data", "SIZES=50 100").stdout
    assert "-m lib" not in plan, plan  # nothing left to do, however often make is asked


# --- corrupt or incomplete outputs are statuses, not crashes ----------------------------------------


def test_corrupt_and_incomplete_runs_are_rows_with_a_note(run_cli, tmp_path):
    from builders import write_run

    runs = tmp_path / "runs"
    write_run(runs, "base", [2.0, 4.0])
    write_run(runs, "lora-1k", [1.0, 2.0])
    write_run(runs, "lora-2k", [0.5, 1.0])
    write_run(runs, "qlora-1k", [1.0, 1.0])
    write_run(runs, "qlora-2k", [1.0, 1.0])
    damaged = json.loads((runs / "lora-1k" / "eval.json").read_text(encoding="utf-8"))
    damaged["metrics"]["rougeL"]["value"] = "high"
    (runs / "lora-1k" / "eval.json").write_text(json.dumps(damaged), encoding="utf-8")
    (runs / "lora-2k" / "adapter" / "adapter_model.safetensors").unlink()
    (runs / "qlora-1k" / "predictions.jsonl").write_text("{not json\n", encoding="utf-8")
    (runs / "qlora-2k" / "train_metrics.json").write_text("[1, 2]", encoding="utf-8")

    summary = run_cli("summarize", "--runs", runs, "--out", tmp_path, "--profile", "demo",
                      "--methods", "lora", "qlora", "--sizes", "1k", "2k", "--seeds", "42")
    assert summary.returncode == 0, summary.stderr
    with (tmp_path / "summary.csv").open(encoding="utf-8") as handle:
        rows = {row["run"]: row for row in csv.DictReader(handle)}
    assert {run: row["status"] for run, row in rows.items()} == {
        "base": "done", "base-nf4": "missing", "lora-1k": "corrupt", "lora-2k": "incomplete", "qlora-1k": "corrupt",
        "qlora-2k": "corrupt"}
    assert rows["lora-1k"]["note"].endswith("lora-1k/eval.json: metrics.rougeL: value 'high': not a finite number; "
                                            "`make eval-lora-1k REDO=1` evaluates it again")
    assert "adapter_model.safetensors missing; `make exp-lora-2k` trains it again" in rows["lora-2k"]["note"]
    assert "qlora-1k/predictions.jsonl:1: not valid JSON" in rows["qlora-1k"]["note"]
    assert "qlora-2k/train_metrics.json: not a mapping" in rows["qlora-2k"]["note"]
    assert rows["lora-1k"]["rougeL"] == ""  # nothing of a corrupt run is reported as a result
    assert summary.stdout.count("note: ") >= 4

    report = run_cli("report", "--results", tmp_path, "--runs", runs, "--data", tmp_path / "data", "--profile",
                     "demo", "--methods", "lora", "qlora", "--sizes", "1k", "2k", "--seeds", "42",
                     "--out", tmp_path / "generated")
    assert report.returncode == 0, report.stderr
    assert "结果文件损坏" in (tmp_path / "generated" / "macros.tex").read_text(encoding="utf-8") + \
        (tmp_path / "generated" / "status.tex").read_text(encoding="utf-8")
    figures = run_cli("figures", "--summary", tmp_path, "--runs", runs, "--png", tmp_path / "png",
                      "--pdf", tmp_path / "pdf")
    assert figures.returncode == 0, figures.stderr


@pytest.mark.parametrize("damage, problem", [
    (lambda result: result["metrics"]["rougeL"].update(value=float("nan")), "metrics.rougeL: value nan: not a finite"),
    (lambda result: result["metrics"]["test_loss"].update(ci_high=float("inf")), "metrics.test_loss: ci_high inf: not"),
    (lambda result: result.update(metrics={}), "an empty `metrics` mapping"),
    (lambda result: result["metrics"].pop("bleu4_char"), "no bleu4_char in `metrics`"),
    (lambda result: result["metrics"]["rouge1"].update(value=None), "metrics.rouge1: no value"),
])
def test_an_eval_json_the_registry_does_not_find_complete_is_a_corrupt_run_named_in_one_line(run_cli, tmp_path,
                                                                                           damage, problem):
    from builders import write_run

    runs = tmp_path / "runs"
    write_run(runs, "base", [2.0, 4.0])
    path = write_run(runs, "lora-1k", [1.0, 2.0]) / "eval.json"
    result = json.loads(path.read_text(encoding="utf-8"))
    damage(result)
    path.write_text(json.dumps(result), encoding="utf-8")  # json writes NaN and Infinity as Python reads them

    summary = run_cli("summarize", "--runs", runs, "--out", tmp_path, "--profile", "demo",
                      "--methods", "lora", "--sizes", "1k", "--seeds", "42")
    assert summary.returncode == 0, summary.stderr
    lines = [line for line in summary.stdout.splitlines() if "lora-1k" in line]
    assert len(lines) == 1 and problem in lines[0], summary.stdout
    assert lines[0].endswith("`make eval-lora-1k REDO=1` evaluates it again")
    with (tmp_path / "summary.csv").open(encoding="utf-8") as handle:
        rows = {row["run"]: row for row in csv.DictReader(handle)}
    assert rows["lora-1k"]["status"] == "corrupt" and rows["lora-1k"]["rougeL"] == ""
    assert rows["base"]["rougeL"] != ""  # the column stays, with the sound runs' values


# --- a folder the user cannot write to --------------------------------------------------------------


@pytest.fixture
def read_only_folder():
    """A folder with a read-only `out` inside, and the command prefix under which it is read-only:
    root writes anywhere, so as root the commands run as the user nobody (setpriv)."""
    import os
    import shutil
    import tempfile

    if os.geteuid() == 0 and not shutil.which("setpriv"):
        pytest.skip("running as root without setpriv: no folder is read-only to root")
    prefix = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"] if os.geteuid() == 0 else []
    root = Path(tempfile.mkdtemp())  # not pytest's tmp_path, which only its owner may enter
    root.chmod(0o755)
    (root / "out").mkdir(mode=0o555)
    (root / "out").chmod(0o555)
    yield root, prefix
    (root / "out").chmod(0o755)
    shutil.rmtree(root)


@pytest.mark.parametrize("command", [
    ["data", "--profile", "demo", "--set", "data.synthetic_size=600", "--raw-dir", "{root}/raw", "--out", "{root}/out"],
    ["train", "--profile", "demo", "--method", "lora", "--size", "64", "--seed", "42", "--data", "{root}",
     "--out", "{root}/out/lora-64"],
    ["evaluate", "--profile", "demo", "--method", "lora", "--run-dir", "{root}/out", "--data", "{root}"],
    ["summarize", "--profile", "demo", "--runs", "{root}", "--out", "{root}/out"],
])
def test_a_folder_that_cannot_be_written_is_one_line_naming_it(read_only_folder, command):
    root, prefix = read_only_folder
    arguments = [argument.format(root=root) for argument in command]
    finished = subprocess.run([*prefix, sys.executable, "-m", "lib", *arguments], cwd=REPO_ROOT, capture_output=True,
                              text=True, timeout=120)
    assert finished.returncode == 2 and "Traceback" not in finished.stderr, finished.stderr
    assert finished.stderr.count("\n") == 1 and finished.stderr.startswith(f"error: cannot write {root}/out"), \
        finished.stderr
    assert finished.stderr.rstrip().endswith(": Permission denied; make its folder writable, or write elsewhere "
                                             "(DATA_DIR=, RESULTS_DIR=)")
