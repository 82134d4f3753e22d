"""The Makefile: its reading of the grid and profiles, the plan it makes, and its help."""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from pathlib import Path

import pytest

from builders import MAKE_FILES, REPO_ROOT, make_sections, small_grid_overrides, write_jsonl, write_stage_inputs
from lib.config import load_config, load_grid


def make(*args: str) -> str:
    finished = subprocess.run(["make", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert finished.returncode == 0, finished.stderr
    return finished.stdout


def make_vars(*args: str) -> dict:
    return dict(line.split("=", 1) for line in make("vars", *args).splitlines())


@pytest.mark.parametrize("grid_name", ["default", "extended"])
@pytest.mark.parametrize("profile", ["paper", "demo"])
def test_make_reads_the_grid_and_the_model_as_python_does(profile, grid_name):
    seen = make_vars(f"PROFILE={profile}", *([f"GRID={grid_name}"] if grid_name != "default" else []))
    grid = load_grid(profile, grid_name)
    assert seen["METHODS"].split() == list(grid.methods)
    assert seen["SIZES"].split() == list(grid.sizes)
    assert [int(s) for s in seen["SEEDS"].split()] == list(grid.seeds)
    assert seen["MODEL"] == load_config(profile).model.name_or_path


def test_model_folders_follow_lib_model():
    from lib.model import MODELS_DIR, local_copy

    paper = make_vars("PROFILE=paper")
    assert REPO_ROOT / paper["MODEL_DIR"] == local_copy(paper["MODEL"]) == MODELS_DIR / "Qwen--Qwen2.5-3B-Instruct"
    assert make_vars("PROFILE=demo")["MODEL_DIR"] == "models/tiny-qwen2"


def test_the_plan_of_the_grid_has_one_training_and_one_evaluation_per_cell():
    plan = make("-n", "-B", "all-experiments", "PROFILE=paper", "SEEDS=42 7")
    trainings = re.findall(r"-m lib train .*?--method (\w+) --size (\w+)\s*\\?\s*--seed (\d+)", plan, re.S)
    expected = {(m, s, str(seed)) for m in ("lora", "qlora") for s in ("10k", "20k", "40k", "60k") for seed in (42, 7)}
    assert set(trainings) == expected and len(trainings) == 16
    # the default seed's run has no suffix
    assert re.search(r"--out results/paper/runs/qlora-60k$", plan, re.M)
    assert re.search(r"--out results/paper/runs/qlora-60k-s7$", plan, re.M)
    evaluations = re.findall(r"-m lib evaluate .*?--run-dir (\S+)", plan)
    assert len(evaluations) == 18 and "results/paper/runs/base" in evaluations
    assert "results/paper/runs/base-nf4" in evaluations  # QLoRA's 0-data row


def test_a_size_with_a_decimal_names_a_run_from_the_goal_to_its_split():
    # beyond the default grid: the data step writes its split too
    plan = make("-n", "-B", "exp-lora-2.5k", "PROFILE=paper")
    assert re.search(r"-m lib data .* --sizes 10k 20k 40k 60k 2\.5k$", plan, re.M)
    assert re.search(r"-m lib train .*--method lora --size 2\.5k --seed 42 .*--out results/paper/runs/lora-2\.5k$",
                     plan, re.M)
    assert "--run-dir results/paper/runs/lora-2.5k " in plan
    # base-nf4 (a Slurm task's goal) names no size: the data step writes the grid's splits only
    untuned = make("-n", "-B", "exp-base-nf4", "PROFILE=paper")
    assert re.search(r"-m lib data .* --sizes 10k 20k 40k 60k$", untuned, re.M)
    seeded = make("-n", "-B", "train-qlora-2.5k-s7", "PROFILE=paper", "GRID=extended")
    assert re.search(r"-m lib data .* --sizes 1k 2\.5k 5k 10k 20k 40k 60k$", seeded, re.M)
    assert re.search(r"--method qlora --size 2\.5k --seed 7 .*--out results/paper/runs/qlora-2\.5k-s7$", seeded, re.M)
    # the extended grid: 7 sizes x 2 methods, 2.5k among them, and the summary expects them
    grid = make("-n", "-B", "all-experiments", "report", "PROFILE=paper", "GRID=extended")
    trainings = re.findall(r"-m lib train .*?--method (\w+) --size ([\w.]+) ", grid)
    assert len(trainings) == 14 and ("lora", "2.5k") in trainings and ("qlora", "1k") in trainings
    assert "--sizes 1k 2.5k 5k 10k 20k 40k 60k --seeds 42" in grid
    assert "EXP='lora-2.5k'" not in make("-n", "export", "EXP=lora-2.5k")  # a run name check-variables accepts


def test_the_nf4_base_is_planned_only_with_qlora_and_loads_qlora_s_config():
    evaluation = make("-n", "-B", "eval-base-nf4", "PROFILE=demo")
    assert re.search(r"-m lib evaluate .*--method qlora --run-dir results/demo/runs/base-nf4 ", evaluation)
    lora_only = make("-n", "-B", "all-experiments", "PROFILE=paper", "METHODS=lora")
    assert "runs/base-nf4" not in lora_only and "--run-dir results/paper/runs/base " in lora_only


def test_launchers_wrap_the_same_training_command():
    accelerate = make("-n", "-B", "train-lora-10k", "LAUNCH=accelerate", "NPROC=4")
    assert "accelerate launch --config_file experiments/accelerate/multi-gpu.yaml --num_processes 4" in accelerate
    assert "-m lib train --profile paper" in accelerate
    torchrun = make("-n", "-B", "train-lora-10k", "LAUNCH=torchrun", "NPROC=2")
    assert "torchrun --nproc_per_node 2" in torchrun
    # a launcher of several processes is preceded by one process checking that the batch splits over them
    for plan in (accelerate, torchrun):
        assert re.search(r"-m lib train --profile paper .* --check-layout \d", plan)
    assert "--check-layout" not in make("-n", "-B", "train-lora-10k")


def test_a_process_count_the_batch_cannot_split_over_is_one_line_before_any_launch(tmp_path):
    data_dir, model = write_stage_inputs(tmp_path)
    started = subprocess.run(["make", "train-lora-64", "PROFILE=demo", "LAUNCH=torchrun", "NPROC=3", f"MODEL={model}",
                              f"DATA_DIR={data_dir}", f"RESULTS_DIR={tmp_path / 'results'}"],
                             cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert started.returncode != 0 and "torchrun" not in started.stdout
    errors = [line for line in started.stderr.splitlines() if line.startswith("error:")]
    assert errors == ["error: train.effective_batch_size=8 examples per step cannot be split evenly over 3 processes; "
                      "launch 1, 2, 4, 8 processes, or set an effective batch size that 3 divides"]


def help_sections(text: str) -> dict[str, list[str]]:
    """{heading: targets} as `make help` prints them: a heading at the start of a line, its targets indented."""
    sections, heading = {}, None
    for line in text.splitlines():
        if line.startswith(("usage:", "variables:")):
            heading = None
        elif line and not line.startswith(" "):
            heading = line
            sections[heading] = []
        elif heading and (match := re.match(r"  (\S+)\s+\S", line)):
            sections[heading].append(match.group(1))
    return sections


def test_help_lists_every_target_of_every_make_file_under_its_section():
    expected = {}
    for path in MAKE_FILES:
        for heading, targets in make_sections(path).items():
            assert heading is not None, f"{path.name}: {targets} come before any ##@ section heading"
            expected.setdefault(heading, []).extend(targets)
    assert help_sections(make("help")) == expected
    for target in ("setup", "test", "data", "model", "exp-%", "all-experiments", "figures", "paper", "demo",
                   "chat", "export", "push", "serve", "bench", "bench-gpu", "gpu-check", "plan", "setup-tex"):
        assert any(target in targets for targets in expected.values()), target


def test_the_main_makefile_is_the_study_in_250_lines_and_includes_the_rest():
    source = (REPO_ROOT / "Makefile").read_text(encoding="utf-8")
    assert len(source.splitlines()) <= 250
    assert list(make_sections(REPO_ROOT / "Makefile")) == [
        "The study: data -> base model -> runs -> summary -> figures -> report -> paper"]
    included = {name for line in re.findall(r"^include (.*)$", source, re.M) for name in line.split()}
    assert included == {f"make/{path.name}" for path in MAKE_FILES[1:]}


def test_every_training_and_evaluation_takes_its_gpus_from_the_pool():
    plan = make("-n", "-B", "all-experiments", "PROFILE=demo", "GPUS=0 1")
    commands = [line for line in plan.splitlines() if re.search(r"-m lib (train|evaluate) ", line)]
    assert len(commands) == 8 + 10  # 8 trainings; 8 evaluations, base's and base-nf4's
    for command in commands:
        assert re.match(r"\S+ -m lib on-free-gpu --gpus 0 1 --count 1 --locks \S+ -- \S+ -m lib (train|evaluate) ",
                        command), command


def test_make_finds_the_4_bit_methods_as_lib_config_does(tmp_path):
    from lib.config import EXPERIMENTS_DIR, zero_data_run

    for recipe in sorted(EXPERIMENTS_DIR.glob("*.yaml")):
        if recipe.stem in ("base", "grid"):
            continue
        plan = make("-n", "-B", "all-experiments", "PROFILE=demo", f"METHODS={recipe.stem}")
        assert ("--run-dir results/demo/runs/base-nf4 " in plan) == (zero_data_run(recipe.stem) == "base-nf4")
    # the recipe decides, whatever the method's name: make's reading of two new recipes
    (tmp_path / "fourbit.yaml").write_text("quantization:\n  load_in_4bit: true\nlora:\n  r: 32\n", encoding="utf-8")
    (tmp_path / "sixteen.yaml").write_text("quantization:\n  load_in_4bit: false\n", encoding="utf-8")
    folder = os.path.relpath(tmp_path, EXPERIMENTS_DIR)
    probe = f"probe: ; @echo $(call four_bit,{folder}/fourbit {folder}/sixteen lora qlora)"
    assert make("-s", "--eval", probe, "probe").split() == [f"{folder}/fourbit", "qlora"]


def test_export_push_and_serve_name_the_run_and_its_export():
    export = make("-n", "export", "EXP=qlora-10k")
    assert re.search(r"-m lib export --profile paper .*--method qlora --run-dir results/paper/runs/qlora-10k "
                     r"--data data/processed/paper --out results/paper/export/qlora-10k$", export, re.M)
    serve = make("-n", "serve", "EXP=base", "PORT=9000")
    assert "--run-dir results/paper/runs/base" in serve and "--method" not in serve
    assert re.search(r"--host 127.0.0.1 --port 9000$", serve, re.M)
    push = make("-n", "push", "EXP=lora-10k", "REPO=alice/medqa", "MERGED=1")
    assert "--repo alice/medqa --export-dir results/paper/export/lora-10k" in push
    assert "--export-dir" not in make("-n", "push", "EXP=lora-10k", "REPO=alice/medqa")


@pytest.mark.parametrize("args, message", [
    (["export"], "error: say which run: make export EXP=<method>-<size>"),
    (["serve"], "error: say which run: make serve EXP=<method>-<size> (or EXP=base)"),
    (["push", "EXP=lora-10k"], "error: say where to: make push EXP=lora-10k REPO=<user>/<name>"),
])
def test_export_push_and_serve_without_their_variables_say_which_is_missing(args, message):
    finished = subprocess.run(["make", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert finished.returncode == 2 and finished.stderr.splitlines()[0] == message


# --- the variables a user types: checked before any work, one line naming the variable -------------

@pytest.mark.parametrize("goal, variable, message", [
    ("serve", "PORT=80800", "PORT='80800': a port is a whole number from 1 to 65535"),
    ("review", "PORT=http", "PORT='http': a port is a whole number from 1 to 65535"),
    ("serve", "HOST=a b", "HOST='a b': expected a host name or address"),
    ("all-experiments", "GPUS=0,1", "GPUS='0,1': '0,1': expected GPU ids separated by spaces"),
    ("all-experiments", "GPUS=0 0", "GPUS='0 0': '0' is listed twice"),
    ("all-experiments", "SEEDS=42 x", "SEEDS='42 x': 'x': a seed is a whole number from 0 up"),
    ("data", "SEED=-1", "SEED='-1': a seed is a whole number from 0 up"),
    ("data", "SIZES=1k 2x", "SIZES='1k 2x': '2x': size '2x': expected a count such as 300, 10k or 1.5k"),
    ("data", "TEST_SIZE=0", "TEST_SIZE='0': size '0': not a positive whole number of examples"),
    ("all-experiments", "METHODS=lora dora", "METHODS='lora dora': 'dora': no method 'dora' (experiments/: lora, "),
    ("summary", "PROFILE=papr", "PROFILE='papr': no profile 'papr' (experiments/profiles/: demo, paper)"),
    ("plan", "GRID=extend", "GRID='extend': expected default or extended"),
    ("data", "VARIANT=seed", "VARIANT='seed': 'seed': no variant 'seed' (experiments/variants/: seed-study)"),
    ("data", "SOURCE=my data.jsonl", "SOURCE='my data.jsonl': a space cannot pass through make's file names"),
    ("data", "SOURCE=nowhere.jsonl", "SOURCE='nowhere.jsonl': no such file (or hub, synthetic)"),
    ("data", "DATA_DIR=my data", "DATA_DIR='my data': a space cannot pass through make's file names and commands; "
                                 "use a path without it"),
    ("data", "SET=data.system_prompt='医生 你好'",
     "SET=\"data.system_prompt='医生 你好'\": \"data.system_prompt='医生\": the character ' cannot pass"),
    ("data", "SET=epochs=1", "SET='epochs=1': 'epochs=1': expected section.key=value"),
    ("data", "COLUMNS=question=患者 anser=医生",
     "COLUMNS='question=患者 anser=医生': 'anser=医生': 'anser' is not a role"),
    ("chat", "EXP=../../etc", "EXP='../../etc': expected a run: <method>-<size>[-s<seed>]"),
    ("export", "EXP=lora-10k'", "EXP=\"lora-10k'\": expected a run"),
    ("review-invite", "NAME=a\nb", "NAME: a value on several lines cannot pass through make's commands"),
    ("review-invite", "NAME=a\tb", "NAME='a\\tb': expected a name of printable characters on one line"),
    ("push", "REPO=medqa", "REPO='medqa': expected a Hugging Face repository, <user or organisation>/<name>"),
    ("train-lora-10k", "LAUNCH=deepspeed", "LAUNCH='deepspeed': expected python or accelerate or torchrun"),
    ("train-lora-10k", "NPROC=0", "NPROC='0': a process count is a whole number from 1 up"),
    ("train-lora-10k", "ACCELERATE_CONFIG=fsdp", "ACCELERATE_CONFIG='fsdp': no accelerate configuration 'fsdp'"),
    ("model", "MODEL_SOURCE=hf", "MODEL_SOURCE='hf': expected huggingface or modelscope"),
    ("summary", "REDO=1", "REDO=1 redoes what is out of date in the runs the goals name: make exp-<run> REDO=1"),
    ("exp-lora-10k", "REDO=yes", "REDO='yes': expected 1 (or leave it out)"),
    ("exp-lora-10kk", "PROFILE=demo", "make exp-lora-10kk: expected a run: <method>-<size>[-s<seed>]"),
    ("eval-dora-10k", "PROFILE=demo", "make eval-dora-10k: no method 'dora' (experiments/: lora, qlora)"),
])
def test_a_wrong_variable_stops_make_before_any_work_with_one_line_naming_it(goal, variable, message):
    finished = subprocess.run(["make", "-n", goal, variable], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert finished.returncode == 2 and finished.stdout == "", finished.stdout
    lines = finished.stderr.splitlines()
    assert len(lines) == 1 and message in lines[0], finished.stderr


def test_the_terminal_s_columns_in_the_environment_are_not_a_column_mapping():
    finished = subprocess.run(["make", "-n", "data", "PROFILE=demo"], cwd=REPO_ROOT, capture_output=True, text=True,
                              timeout=60, env={**os.environ, "COLUMNS": "80"})
    assert finished.returncode == 0 and "data.columns" not in finished.stdout, finished.stderr
    mapped = make("-n", "-B", "data", "PROFILE=demo", "COLUMNS=question=患者 answer=医生")
    assert "--set data.columns=question=患者,answer=医生 " in mapped


def test_a_name_with_a_quote_reaches_the_review_as_it_was_typed():
    plan = make("-n", "review-invite", "NAME=O'Brien")
    assert "--name 'O'\\''Brien'" in plan


# --- finished runs are kept: real make calls on the demo profile -------------------------------------

def run_files(run_dir: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in (run_dir / "eval.json", run_dir / "config.json",
                                                      run_dir / "adapter" / "adapter_model.safetensors")}


@pytest.mark.slow
def test_a_finished_run_is_kept_whatever_changes_until_redo_names_it(tiny_model, tmp_path):
    settings = small_grid_overrides(tiny_model)
    common = ["PROFILE=demo", f"DATA_DIR={tmp_path}/data", f"RESULTS_DIR={tmp_path}/results",
              f"GENERATED_DIR={tmp_path}/generated", f"MODEL={tiny_model}", "METHODS=lora", "SIZES=32",
              f"SET={' '.join(settings)}"]
    processed, run_dir = tmp_path / "data" / "processed" / "demo", tmp_path / "results" / "demo" / "runs" / "lora-32"

    def make(*arguments: str) -> str:
        finished = subprocess.run(["make", *common, *arguments], cwd=REPO_ROOT, capture_output=True, text=True,
                                  timeout=600)
        assert finished.returncode == 0, finished.stderr[-3000:]
        return finished.stdout

    make("exp-lora-32")
    trained = run_files(run_dir)
    split = (processed / "train-32.jsonl").read_bytes()

    # a report target with another data seed reads what is there: no data step, no training
    summary = make("summary", "SEED=7")
    assert "-m lib data" not in summary and "-m lib train" not in summary and "-m lib evaluate" not in summary
    assert (processed / "train-32.jsonl").read_bytes() == split and run_files(run_dir) == trained
    (processed / "test.jsonl").touch()
    assert "-m lib" not in make("-n", "exp-lora-32")  # a touched test set re-evaluates nothing

    # the data changes: the run is kept as it is, and named stale
    make("data", "SEED=7")
    assert (processed / "train-32.jsonl").read_bytes() != split
    assert "-m lib" not in make("exp-lora-32", "SEED=7") and run_files(run_dir) == trained
    notes = [line for line in make("summary", "SEED=7").splitlines() if line.startswith("note: lora-32")]
    assert notes == ["note: lora-32: done: stale: train-32.jsonl, dev.jsonl, test.jsonl, mcq.jsonl, general.jsonl "
                     "changed since it was made from them; `make exp-lora-32 REDO=1` redoes what changed"]

    # REDO=1 names it: trained and evaluated again on today's data; then nothing is left to redo
    redone = make("exp-lora-32", "SEED=7", "REDO=1")
    assert "-m lib train" in redone and "-m lib evaluate" in redone and run_files(run_dir) != trained
    assert "stale" not in make("summary", "SEED=7")
    again = make("exp-lora-32", "SEED=7", "REDO=1")
    assert "nothing to redo" in again and "-m lib train" in again

    # make train-<run> trains a run whose weights are gone
    (run_dir / "adapter" / "adapter_model.safetensors").unlink()
    assert "-m lib train" in make("train-lora-32", "SEED=7")
    assert (run_dir / "adapter" / "adapter_model.safetensors").is_file()


def test_make_data_reads_a_file_of_other_keys_through_columns(tmp_path):
    from lib.data.synthetic import generate

    path = write_jsonl(tmp_path / "dialog.jsonl", [  # the generated records under other keys
        {"患者": f"{record['instruction']}\n{record['input']}".strip(), "医生": record["output"]}
        for record in generate(600, seed=3)])
    arguments = ["make", "data", "PROFILE=demo", f"DATA_DIR={tmp_path}/data", f"SOURCE={path}", "SIZES=50",
                 "TEST_SIZE=20", "DEV_SIZE=20", "SET=eval.mcq_size=20"]
    refused = subprocess.run(arguments, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    errors = [line for line in refused.stderr.splitlines() if line.startswith("error:")]
    assert refused.returncode != 0 and len(errors) == 1 and "Traceback" not in refused.stderr
    assert errors[0].endswith('map its keys: COLUMNS="question=患者 answer=医生" (or data.columns in a YAML file)')
    read = subprocess.run([*arguments, "COLUMNS=question=患者 answer=医生"], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=300)
    assert read.returncode == 0, read.stderr
    manifest = json.loads((tmp_path / "data" / "processed" / "demo" / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["source"]["columns"] == {"question": "患者", "answer": "医生"}
    assert manifest["files"]["train-50.jsonl"]["count"] == 50


def test_the_plan_keeps_finished_runs_and_redoes_those_redo_names(tmp_path):
    data_dir, model = write_stage_inputs(tmp_path)
    runs = tmp_path / "results" / "demo" / "runs"
    for run in ("base", "lora-64", "lora-64-s7"):
        names = ["eval.json"] if run == "base" else ["train.done", "eval.json", "adapter/adapter_config.json",
                                                      "adapter/adapter_model.safetensors"]
        for name in names:
            (runs / run / name).parent.mkdir(parents=True, exist_ok=True)
            (runs / run / name).write_text("{}", encoding="utf-8")
    time.sleep(0.01)
    for path in (data_dir / "processed" / "demo").iterdir():  # every input newer than the runs
        path.touch()
    (model / ".ready").touch()
    common = ["-n", "PROFILE=demo", "METHODS=lora", "SIZES=64", "SEEDS=42 7", f"MODEL={model}", f"DATA_DIR={data_dir}",
              f"RESULTS_DIR={tmp_path / 'results'}"]

    def plan(*arguments: str) -> str:
        return make(*common, *arguments)

    assert "-m lib" not in plan("all-experiments") and "-m lib" not in plan("exp-lora-64", "SEED=7")
    assert "-m lib data" not in plan("summary", "SEED=7") and "-m lib summarize" in plan("summary", "SEED=7")
    redone = plan("exp-lora-64", "REDO=1")
    assert re.findall(r"-m lib (train|evaluate) .*--out (\S+)$|-m lib (evaluate) .*--run-dir (\S+) ", redone, re.M) == [
        ("train", str(runs / "lora-64"), "", ""), ("", "", "evaluate", str(runs / "lora-64"))]
    evaluated = plan("eval-lora-64", "REDO=1")
    assert "-m lib train" not in evaluated and f"--run-dir {runs / 'lora-64'} " in evaluated
    grid = plan("all-experiments", "REDO=1")
    assert grid.count("-m lib train") == 2 and grid.count("-m lib evaluate") == 3
    (runs / "lora-64-s7" / "adapter" / "adapter_config.json").unlink()  # an incomplete adapter: trained again
    assert re.findall(r"-m lib train .*--out (\S+)$", plan("all-experiments"), re.M) == [str(runs / "lora-64-s7")]
    assert "-m lib train" in plan("train-lora-64-s7")
    assert "-m lib" not in plan("summary").replace("-m lib summarize", "")  # a report target trains nothing
