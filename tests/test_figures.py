"""lib/figures.py and lib/fonts.py: Chinese renders, partial results draw what they can.

Run directories come from tests/builders.py's `write_run` (the schemas of the run files).
"""

from __future__ import annotations

import io
import json
import logging
import warnings

import pytest
from pypdf import PdfReader

from builders import vote, write_run
from lib import fonts
from lib.cli import main
from lib.errors import UserError
from lib.figures import (
    FIGURES,
    Inputs,
    NothingToDraw,
    compact_count,
    examples,
    read_summary,
    save,
    set_style,
    wrap_text,
)
from lib.review.bradley_terry import analyse
from lib.summarize.fits import power_law

CHINESE = "测试集损失"


def rendering_problems(caplog, draw) -> list[str]:
    """Warnings and log records about fonts while `draw()` runs (missing glyphs, unknown fonts)."""
    caplog.clear()
    with warnings.catch_warnings(record=True) as caught, caplog.at_level(logging.WARNING, logger="matplotlib"):
        warnings.simplefilter("always")
        draw()
    messages = [str(w.message) for w in caught] + [r.getMessage() for r in caplog.records]
    return [m for m in messages if "missing from font" in m or "findfont" in m]


def figure_with_chinese(text: str):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.set_title(f"{text} test loss")
    ax.plot([1, 2], [-1, 1])  # a negative tick label: the minus sign must render too
    return fig


@pytest.fixture
def cjk_font():
    family = set_style()
    if family is None:
        pytest.skip("no Chinese font installed (apt-get install fonts-wqy-microhei, or `make setup-tex`)")
    return family


def test_chinese_renders_with_the_cjk_font_and_embeds_as_truetype(tmp_path, caplog, cjk_font):
    import matplotlib

    problems = rendering_problems(caplog, lambda: save(figure_with_chinese(CHINESE), "chinese", tmp_path, tmp_path))
    assert problems == []
    assert (tmp_path / "chinese.png").stat().st_size > 1_000
    page = PdfReader(tmp_path / "chinese.pdf").pages[0]
    assert CHINESE in page.extract_text()
    subtypes = {font.get_object()["/Subtype"] for font in page["/Resources"]["/Font"].values()}
    assert subtypes == {"/Type0"}  # TrueType (pdf.fonttype 42) CID fonts; Type 3 would mean bitmaps

    # the check can fail: with matplotlib's default font the same figure has missing glyphs
    with matplotlib.rc_context({"font.sans-serif": ["DejaVu Sans"]}):
        problems = rendering_problems(caplog, lambda: figure_with_chinese(CHINESE).savefig(io.BytesIO(), format="png"))
    assert any("missing from font" in message for message in problems)


def test_without_a_cjk_font_labels_are_english_and_examples_are_skipped(monkeypatch, tmp_path):
    monkeypatch.setattr(fonts, "find_cjk_font", lambda: None)
    fonts.register_cjk_font.cache_clear()
    try:
        with pytest.warns(UserWarning, match="no Chinese font found"):
            assert set_style() is None
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert set_style() is None  # warned once, not again
    finally:
        fonts.register_cjk_font.cache_clear()  # the next set_style() looks for the font again
    inputs = Inputs(summary=None, scaling=None, examples={"best_run": "lora-1k", "examples": [{"id": "1"}]},
                    runs_dir=tmp_path, cjk_font=None)
    assert inputs.label("test_loss") == "test loss (nats/token)"
    assert (Inputs(None, None, None, tmp_path, "WenQuanYi Micro Hei").label("test_loss")
            == "测试损失\ntest loss (nats/token)")
    with pytest.raises(NothingToDraw, match="no Chinese font"):
        examples(inputs)


def study(tmp_path, sizes_done):
    """base + lora runs at `sizes_done` (with training logs), qlora-1k trained but not evaluated."""
    runs = tmp_path / "runs"
    write_run(runs, "base", [3.0] * 20)
    log = [{"step": 10, "loss": 2.5}, {"step": 20, "loss": 2.0}, {"step": 20, "eval_loss": 2.2}]
    for size in sizes_done:
        examples_ = int(size[:-1]) * 1_000
        write_run(runs, f"lora-{size}", [float(power_law(examples_, 1.0, 20.0, 0.4))] * 20,
                  cost={"wall_time_s": 90.0, "peak_memory_gb": 2.0, "tokens_per_s": 500.0}, log_history=log)
    write_run(runs, "qlora-1k", evaluated=False, cost={"wall_time_s": 120.0, "peak_memory_gb": 1.0}, log_history=log)
    main(["summarize", "--runs", str(runs), "--out", str(tmp_path), "--profile", "demo",
          "--sizes", "1k", "2k", "4k", "8k"])
    return runs


def test_figures_from_a_partial_summary(tmp_path, cjk_font):
    runs = study(tmp_path, ["1k", "2k"])
    png, pdf = tmp_path / "png", tmp_path / "pdf"
    pdf.mkdir()
    (pdf / "knowledge.pdf").write_text("stale")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        main(["figures", "--summary", str(tmp_path), "--runs", str(runs), "--png", str(png), "--pdf", str(pdf)])
    assert [str(warning.message) for warning in caught] == []  # no missing glyph, no degenerate axis

    manifest = json.loads((png / "figures.json").read_text(encoding="utf-8"))
    assert manifest["made"] == ["metrics_vs_size", "loss_fit", "cost", "loss_curves", "examples"]
    assert manifest["skipped"] == {"knowledge": "no run has MCQ results",
                                   "forgetting": "no trained run has multiple-choice results beside its base row's",
                                   "preference": "no blind review votes yet (make review)"}
    assert manifest["cjk_font"] == cjk_font
    assert json.loads((pdf / "figures.json").read_text(encoding="utf-8"))["made"] == manifest["made"]
    for stem in manifest["made"]:
        assert (png / f"{stem}.png").stat().st_size > 1_000
        assert PdfReader(pdf / f"{stem}.pdf").pages
    assert not (pdf / "knowledge.pdf").exists()  # a figure the data no longer supports is removed
    # the loss figure shows the points but says there is no fit yet (2 sizes < 3 parameters)
    assert "no fit yet" in PdfReader(pdf / "loss_fit.pdf").pages[0].extract_text()
    assert "lora-2k" in PdfReader(pdf / "examples.pdf").pages[0].extract_text()  # best run's column


def test_nothing_finished_skips_every_figure_without_failing(tmp_path):
    runs = tmp_path / "runs"
    runs.mkdir()
    main(["summarize", "--runs", str(runs), "--out", str(tmp_path), "--profile", "demo"])
    inputs = Inputs(read_summary(tmp_path), None, None, runs, cjk_font=None)
    for draw in FIGURES.values():
        with pytest.raises(NothingToDraw):
            draw(inputs)


def test_wrap_text_counts_chinese_characters_double():
    assert wrap_text("一二三四五", width=4) == ["一二", "三四", "五"]
    assert wrap_text("abcdefgh", width=4) == ["abcd", "efgh"]
    assert wrap_text("ab一c", width=3) == ["ab", "一c"]  # 一 would make the first line 4 wide
    assert wrap_text("一二三四五六", width=4, max_lines=2) == ["一二", "三…"]
    assert wrap_text(None) == ["—"]
    assert wrap_text("发\x06热\ufffd", width=4) == ["发热"]  # no font has a glyph for these


def test_compact_count_matches_the_grid_labels():
    assert [compact_count(n) for n in (250, 1_000, 1_500, 10_000, 60_000, 2_000_000)] == \
        ["250", "1k", "1.5k", "10k", "60k", "2M"]


def test_a_single_size_draws_without_degenerate_axes(tmp_path, cjk_font):
    runs = study(tmp_path, ["1k"])
    inputs = Inputs(read_summary(tmp_path), json.loads((tmp_path / "scaling.json").read_text(encoding="utf-8")),
                    None, runs, cjk_font)
    for draw in (FIGURES["metrics_vs_size"], FIGURES["loss_fit"]):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            draw(inputs).savefig(io.BytesIO(), format="png")
        assert [str(warning.message) for warning in caught] == []


def test_knowledge_with_only_the_base_models_mcq_is_skipped(tmp_path):
    runs = tmp_path / "runs"
    accuracy = {"value": 41.0, "ci_low": 37.0, "ci_high": 45.0, "n": 200}
    write_run(runs, "base", [3.0] * 20, mcq={"overall": accuracy, "per_source": {"cmb": accuracy}})
    write_run(runs, "lora-1k", [2.0] * 20)  # evaluated, but without the knowledge track
    main(["summarize", "--runs", str(runs), "--out", str(tmp_path), "--profile", "demo", "--sizes", "1k"])
    inputs = Inputs(read_summary(tmp_path), None, None, runs, cjk_font=None)
    with pytest.raises(NothingToDraw, match="only the base model has MCQ results"):
        FIGURES["knowledge"](inputs)


def test_forgetting_draws_each_runs_paired_change_from_its_own_base_row(tmp_path, cjk_font):
    from builders import track_of_items

    runs = tmp_path / "runs"
    # 40 items; base knows the first 24 by cloze, lora-1k forgot 8 of them on the general track
    # and learnt 4 more medical ones; base-nf4 (QLoRA's base) knows 20 only, as does qlora-1k
    base = [[0, 1, 1]] * 24 + [[0, 0, 0]] * 16
    nf4 = [[0, 1, 1]] * 20 + [[0, 0, 0]] * 20
    write_run(runs, "base", [3.0] * 20, mcq=track_of_items(base), general=track_of_items(base))
    write_run(runs, "base-nf4", [3.0] * 20, mcq=track_of_items(nf4), general=track_of_items(nf4))
    write_run(runs, "lora-1k", [2.0] * 20, mcq=track_of_items([[0, 1, 1]] * 28 + [[0, 0, 0]] * 12),
              general=track_of_items([[0, 0, 0]] * 8 + [[0, 1, 1]] * 16 + [[0, 0, 0]] * 16))
    write_run(runs, "qlora-1k", [2.0] * 20, mcq=track_of_items(nf4), general=track_of_items(nf4))
    main(["summarize", "--runs", str(runs), "--out", str(tmp_path), "--profile", "demo", "--sizes", "1k"])
    scaling = json.loads((tmp_path / "scaling.json").read_text(encoding="utf-8"))
    changes = {change["run"]: change for change in scaling["forgetting"]}
    assert {run: change["base_run"] for run, change in changes.items()} == {"lora-1k": "base", "qlora-1k": "base-nf4"}
    general = changes["lora-1k"]["changes"]["general"]["acc_norm"]
    assert general["value"] == pytest.approx(-20.0) and general["ci_high"] < 0 and general["n"] == 40
    assert changes["lora-1k"]["changes"]["mcq"]["acc"]["value"] == pytest.approx(10.0)
    assert changes["lora-1k"]["changes"]["mcq"]["letter"] == {"value": 0.0, "ci_low": 0.0, "ci_high": 0.0, "n": 40}
    assert changes["qlora-1k"]["changes"]["general"]["acc_norm"]["value"] == 0.0  # against base-nf4, not base
    summary = read_summary(tmp_path)
    assert summary.set_index("run").loc["lora-1k", "general_acc_norm"] == pytest.approx(40.0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fig = FIGURES["forgetting"](Inputs(summary, scaling, None, runs, cjk_font))
        fig.savefig(io.BytesIO(), format="png")
    assert [str(warning.message) for warning in caught] == []
    assert len(fig.axes) == 4 and "general MCQ accuracy, cloze per character (acc_norm) (%)" in fig.axes[3].get_title()


def test_a_summary_without_a_status_column_is_a_user_error(tmp_path):
    (tmp_path / "summary.csv").write_text("run,method,size,examples,seed\nbase,base,0,0,\n", encoding="utf-8")
    with pytest.raises(UserError, match=r"summary.csv:1: no column 'status'"):
        read_summary(tmp_path)


def test_the_loss_fit_says_why_each_method_has_no_fit(tmp_path):
    runs = study(tmp_path, ["1k", "2k"])
    scaling = json.loads((tmp_path / "scaling.json").read_text(encoding="utf-8"))
    scaling["loss_fits"]["qlora"] = scaling["loss_fits"]["lora"] | {"status": "fit_failed"}
    fig = FIGURES["loss_fit"](Inputs(read_summary(tmp_path), scaling, None, runs, cjk_font=None))
    assert fig.axes[0].get_title().splitlines() == ["LoRA: fewer than 3 sizes: no fit yet",
                                                    "QLoRA: the fit did not converge"]


def test_each_method_s_zero_data_row_is_its_own_line(tmp_path):
    runs = study(tmp_path, ["1k", "2k"])
    write_run(runs, "base-nf4", [3.3] * 20)
    main(["summarize", "--runs", str(runs), "--out", str(tmp_path), "--profile", "demo", "--sizes", "1k", "2k"])
    set_style()
    inputs = Inputs(read_summary(tmp_path), None, None, runs, cjk_font=None)
    loss_panel = FIGURES["metrics_vs_size"](inputs).axes[0]
    lines = {line.get_label(): (line.get_linestyle(), line.get_ydata()[0]) for line in loss_panel.get_lines()}
    assert lines["base model (unquantised, LoRA's start)"] == ("--", pytest.approx(3.0))
    assert lines["base model (NF4, QLoRA's start)"] == (":", pytest.approx(3.3))


def test_the_preference_figure_draws_strength_against_training_examples(tmp_path):
    from lib.figures import FIGURES, Inputs, NothingToDraw

    votes = [vote("alice", f"t{i}", pair, "second") for i in range(5)
             for pair in ("base|lora-100", "base|lora-200", "lora-100|lora-200", "base|qlora-100")]
    fig = FIGURES["preference"](Inputs(None, None, None, tmp_path, cjk_font=None,
                                       preference=analyse(votes, n_samples=20)))
    assert fig.axes[0].get_xscale() == "log" and len(fig.axes[0].lines) >= 3
    with pytest.raises(NothingToDraw):
        FIGURES["preference"](Inputs(None, None, None, tmp_path, cjk_font=None, preference=None))
