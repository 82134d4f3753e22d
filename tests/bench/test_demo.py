"""make bench-demo's arithmetic: the demo's stages, and its total once the tiny model is built."""

from __future__ import annotations

from lib.bench.demo import TARGET_SECONDS, markdown, stages, summary


def test_the_target_leaves_out_the_stage_paid_once_per_machine():
    names = [name for name, _ in stages()]
    assert names[:2] == ["data", "tiny model"] and names[2] == "train 8 runs"  # 2 methods x 4 sizes
    seconds = dict(zip(names, [5, 88, 279, 205, 26], strict=False))
    timings = [{"stage": name, "seconds": s} for name, s in seconds.items()]
    timings.append({"stage": names[-1], "seconds": None, "note": "skipped: no TeX (make setup-tex)"})
    result = summary(timings)
    assert result["total_seconds"] == 603 and result["model_built_seconds"] == 603 - 88
    assert result["within_target"] == (515 < TARGET_SECONDS)
    table = markdown(result)
    assert "| **total** | **603** | |" in table and "| **total, tiny model already built** | **515** | |" in table
    assert "skipped: no TeX" in table and table.rstrip().endswith("met.")
