"""The `summarize` command (lib/summarize/__init__.py) end to end on a synthetic study."""

from __future__ import annotations

import json

from builders import SUMMARY_GRID, SUMMARY_SEED, synthetic_study
from lib.cli import main


def test_one_seed_gives_no_p_value_and_says_its_intervals_cover_test_items_only(tmp_path):
    runs = synthetic_study(tmp_path)
    main(["summarize", "--runs", str(runs), "--out", str(tmp_path), "--profile", "demo", "--methods", "lora",
          "qlora", "--sizes", *SUMMARY_GRID.sizes, "--seeds", str(SUMMARY_SEED), "--set", "eval.bootstrap_samples=50"])
    scaling = json.loads((tmp_path / "scaling.json").read_text(encoding="utf-8"))
    assert scaling["resampled"] == "test items"
    assert all(c[key]["p_value"] is None for c in scaling["lora_vs_qlora"] for key in ("rougeL_diff", "loss_diff"))
    summary = (tmp_path / "summary.md").read_text(encoding="utf-8")
    assert "covers the sampling of test items only, not training randomness, so no p-values" in summary
    assert "p =" not in summary and "p-value " not in summary
