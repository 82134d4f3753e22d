"""summary.md (lib/summarize/markdown.py)."""

from __future__ import annotations

import re

from builders import scaling_of, synthetic_study
from lib.summarize.markdown import summary_markdown


def test_summary_md_shows_every_metric_judge_scores_included():
    rows = [{"run": "lora-1k", "status": "done", "examples": 1000, "method": "lora", "test_loss": 1.5,
             "test_loss_ci_low": 1.4, "test_loss_ci_high": 1.6, "judge_accuracy": 3.5,
             "judge_accuracy_ci_low": 3.1, "judge_accuracy_ci_high": 3.9}]
    scaling = {"resampled": "test items", "loss_fits": {}, "trends": {}, "lora_vs_qlora": [], "notes": []}
    text = summary_markdown("demo", rows, scaling)
    assert "| run | status | examples | test_loss | judge_accuracy |" in text
    assert "| lora-1k | done | 1,000 | 1.50 [1.40, 1.60] | 3.50 [3.10, 3.90] |" in text


def test_summary_md_names_the_grid_of_the_fit_and_its_checks(tmp_path):
    runs = synthetic_study(tmp_path, n_items=40)
    text = summary_markdown("demo", [], scaling_of(runs, n_samples=40))
    assert "Fitted on sizes of neither grid: 1,000, 2,000, 4,000, 8,000 examples." in text
    assert ("| residual dof | holdout: largest size predicted vs observed | leave one size out: mean / max error |"
            in text)
    assert re.search(r"\| lora \| ok \|.* \| 1 \| D=8,000: .* \| [0-9.]+ / [0-9.]+ over 4 sizes \|", text)


def test_summary_md_lists_each_runs_change_from_its_own_base_row():
    change = {"value": -5.0, "ci_low": -9.0, "ci_high": -1.0, "n": 100}
    scaling = {"resampled": "test items", "loss_fits": {}, "trends": {}, "lora_vs_qlora": [], "notes": [],
               "forgetting": [{"run": "qlora-1k", "method": "qlora", "examples": 1000, "seed": 42,
                               "base_run": "base-nf4", "changes": {"general": {"acc_norm": change}}}]}
    text = summary_markdown("demo", [], scaling)
    assert "| run | base row | mcq letter | mcq acc_norm | general letter | general acc_norm |" in text
    assert "| qlora-1k | base-nf4 |  |  |  | -5.00 [-9.00, -1.00] |" in text
