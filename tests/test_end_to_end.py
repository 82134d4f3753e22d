"""The whole study through make, tiny: data -> train -> evaluate -> summary -> figures -> report -> PDF.

The same targets as `make demo`, in a scratch folder, with fewer and smaller runs. The PDF step
runs where TeX is installed (CI installs it with make setup-tex).
"""

from __future__ import annotations

import csv
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from builders import REPO_ROOT

pytestmark = pytest.mark.slow

SMALL = ("train.report_to=none train.max_length=128 train.eval_steps=8 train.save_steps=8 "
         "train.learning_rate=5e-3 eval.max_new_tokens=16 eval.bootstrap_samples=50 eval.mcq_size=40 "
         "data.synthetic_size=1500 data.test_size=32 data.dev_size=32")


def make(scratch: Path, tiny_model: Path, *targets: str) -> subprocess.CompletedProcess:
    variables = ["PROFILE=demo", f"DATA_DIR={scratch}/data", f"RESULTS_DIR={scratch}/results",
                 f"GENERATED_DIR={scratch}/generated", f"BUILD_DIR={scratch}/build", f"MODEL={tiny_model}",
                 "SIZES=64 128", f"SET={SMALL}"]
    return subprocess.run(["make", *variables, *targets], cwd=REPO_ROOT, capture_output=True, text=True, timeout=900)


def test_the_study_runs_end_to_end_and_the_report_quotes_the_summary(tiny_model, tmp_path):
    experiments = make(tmp_path, tiny_model, "all-experiments")
    assert experiments.returncode == 0, experiments.stderr[-3000:]
    runs = tmp_path / "results" / "demo" / "runs"
    for run in ("base", "base-nf4", "lora-64", "lora-128", "qlora-64", "qlora-128"):
        assert (runs / run / "eval.json").is_file(), run
    for run in ("lora-64", "qlora-128"):
        assert (runs / run / "adapter" / "adapter_model.safetensors").is_file()
        assert (runs / run / "train_metrics.json").is_file() and (runs / run / "config.json").is_file()

    assert "-m lib" not in make(tmp_path, tiny_model, "-n", "all-experiments").stdout  # nothing left to do

    figures = make(tmp_path, tiny_model, "figures")
    assert figures.returncode == 0, figures.stderr[-3000:]
    with (tmp_path / "results" / "demo" / "summary.csv").open(encoding="utf-8") as handle:
        rows = {row["run"]: row for row in csv.DictReader(handle)}
    assert set(rows) >= {"base", "base-nf4", "lora-64", "lora-128", "qlora-64", "qlora-128"}
    assert all(row["status"] == "done" for row in rows.values())
    # more data, lower test loss: the smallest signal the study exists to measure
    assert float(rows["lora-128"]["test_loss"]) < float(rows["lora-64"]["test_loss"]) < float(rows["base"]["test_loss"])
    # QLoRA's 0-data row is the base model in NF4: quantising the weights moves its loss
    assert rows["base-nf4"]["mcq_accuracy"] and rows["base-nf4"]["test_loss"] != rows["base"]["test_loss"]
    assert (tmp_path / "results" / "demo" / "figures" / "metrics_vs_size.png").is_file()

    # deleting one run redoes that run only
    shutil.rmtree(runs / "qlora-64")
    plan = make(tmp_path, tiny_model, "-n", "all-experiments").stdout
    assert "--out " + str(runs / "qlora-64") in plan and "lora-128" not in plan.replace("qlora-64", "")

    if not (shutil.which("xelatex") and shutil.which("latexmk")):
        pytest.skip("TeX is not installed (make setup-tex): the PDF step is not checked here")
    assert make(tmp_path, tiny_model, "all-experiments").returncode == 0
    paper = make(tmp_path, tiny_model, "paper")
    assert paper.returncode == 0, paper.stderr[-3000:]
    pdf = tmp_path / "build" / "demo" / "report.pdf"
    assert paper.stdout.strip().splitlines()[-1] == str(pdf)

    from pypdf import PdfReader

    text = " ".join(page.extract_text() for page in PdfReader(pdf).pages)
    assert "演示" in text or "demo" in text.lower()  # the demo's disclaimer
    # a number of summary.csv, as the report formats test losses (3 decimals), is quoted in the PDF
    assert f"{float(rows['lora-128']['test_loss']):.3f}" in text

    # deleting the figures redoes them and what quotes them, nothing upstream
    shutil.rmtree(tmp_path / "generated" / "demo" / "figures")
    steps = re.findall(r"-m lib (\S+)", make(tmp_path, tiny_model, "-n", "paper").stdout)
    assert steps == ["figures", "report", "paper"]
