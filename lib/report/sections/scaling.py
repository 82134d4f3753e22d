"""Section "Scaling": each method's fit of the test loss, L(D) = E + A * D^(-alpha), with its
bootstrap intervals, its residual degrees of freedom, the grid whose sizes it fits (default or
extended, experiments/grid.yaml) and its leave-one-size-out and hold-out checks, the loss per
doubling of the data beside it, and the trends per doubling (scaling.json's grid, loss_fits and
trends)."""

from __future__ import annotations

from lib.config import load_grid
from lib.errors import UserError
from lib.io import nested_value
from lib.report.columns import fixed, interval_macros, metric_column, stat_cell
from lib.report.formatting import CONFIDENCE_TEXT, interval_scope, method_name
from lib.report.section import Section, Table, Tabular
from lib.report.study import Study
from lib.summarize.schema import FIT_PARAMETERS, TREND_METRICS
from lib.tex import escape, format_count, format_number, format_significant, macro_name, texttt

FIT_FORMATS = {"E": fixed(3), "A": format_significant, "alpha": format_significant}  # of FIT_PARAMETERS
# ... and the 2-parameter log-linear slope beside them (lib.summarize.schema.LOSS_ESTIMATES)
LOSS_FORMATS = FIT_FORMATS | {"slope_per_doubling": fixed(3)}
FIT_STATUS_WORDS = {"too_few_points": f"点数不足（{len(FIT_PARAMETERS)} 个参数至少要 {len(FIT_PARAMETERS)} 个规模）",
                    "fit_failed": "拟合未收敛"}


def fit_status_text(status: str | None) -> str:
    return FIT_STATUS_WORDS.get(status, escape(status))


def holdout_percent(holdout: dict) -> float | None:
    """scaling.json's relative hold-out error, |predicted - observed| / observed, in percent."""
    return None if holdout.get("rel_error") is None else 100 * holdout["rel_error"]


GRID_WORDS = {"default": "默认网格", "extended": f"扩展网格（{texttt('GRID=extended')}）", None: "自选的规模"}


def fit_grid_macros(study: Study) -> dict:
    """Which grid the fits come from and what that leaves them: its sizes, the residual degrees of
    freedom, and for the seed's 4 sizes what the extended grid would add."""
    grid = (study.scaling or {}).get("grid") or {}
    sizes = grid.get("sizes") or []
    parameters = len(FIT_PARAMETERS)
    dof = max(len(sizes) - parameters, 0)
    note = ""
    if dof <= 1:
        note = (f"；留出检验只用 {format_count(max(len(sizes) - 1, 0))} 个点定 {format_count(parameters)} 个参数，"
                "几乎只是插值")
        try:
            extended = [size for size in load_grid(study.profile, "extended").sizes if size not in study.sizes]
        except UserError:  # a profile of the user's without extended sizes
            extended = []
        if extended:
            note += (f"（{texttt('make all-experiments GRID=extended')} 加上 {'、'.join(extended)} 条 "
                     f"{len(extended)} 个规模，可多出 {len(extended)} 个自由度）")
    return {"FitGridName": GRID_WORDS[grid.get("name")],
            "FitSizes": "、".join(format_count(size) for size in sizes),
            "FitSizeCount": format_count(len(sizes)),
            "FitParameters": format_count(parameters),
            "FitDegreesOfFreedom": format_count(dof),
            "FitDegreesOfFreedomNote": note,
            "HoldoutFitPoints": format_count(max(len(sizes) - 1, 0))}  # the hold-out fit leaves the largest size out


def leave_one_out_macros(prefix: str, leave_one_out: dict) -> dict:
    """The mean and largest absolute error of predicting each size from the others, and where the largest is."""
    predictions = [p for p in leave_one_out.get("sizes") or [] if p.get("status") == "ok"]
    worst = max(predictions, key=lambda p: p["abs_error"], default={})
    return {f"{prefix}LeaveOneOutMeanError": format_number(leave_one_out.get("mean_abs_error"), 3),
            f"{prefix}LeaveOneOutMaxError": format_number(leave_one_out.get("max_abs_error"), 3),
            f"{prefix}LeaveOneOutMaxSize": format_count(worst.get("size"))}


def scaling_macros(study: Study) -> dict:
    scaling = study.scaling or {}
    macros = fit_grid_macros(study)
    for method in study.quoted_methods:
        prefix = macro_name(method)
        fit = (scaling.get("loss_fits") or {}).get(method) or {}
        for parameter, format_value in LOSS_FORMATS.items():
            macros |= interval_macros(f"{prefix}Fit{macro_name(parameter)}", fit.get(parameter), format_value)
        holdout = fit.get("holdout") or {}
        macros |= {
            f"{prefix}FitPoints": format_count(len(fit.get("points") or [])),
            f"{prefix}FitResidualDof": format_count(fit.get("residual_dof")),
            f"{prefix}HoldoutSize": format_count(holdout.get("size")),
            f"{prefix}HoldoutObserved": format_number(holdout.get("observed"), 3),
            f"{prefix}HoldoutPredicted": format_number(holdout.get("predicted"), 3),
            f"{prefix}HoldoutError": format_number(holdout.get("abs_error"), 3),
            f"{prefix}HoldoutPercent": format_number(holdout_percent(holdout), 1),
        } | leave_one_out_macros(prefix, fit.get("leave_one_out") or {})
        for metric in map(metric_column, TREND_METRICS):
            trend = nested_value(scaling, f"trends.{metric.key}.{method}.slope_per_doubling")
            macros |= interval_macros(f"{prefix}{metric.macro}PerDoubling", trend, metric.format)
    return macros


def fit_rows(study: Study) -> Tabular:
    rows = []
    for method, fit in study.scaling["loss_fits"].items():
        points = format_count(len(fit.get("points") or []))
        if fit.get("status") != "ok":
            rows.append([method_name(method), points,
                         f"\\multicolumn{{8}}{{c}}{{\\textit{{{fit_status_text(fit.get('status'))}}}}}"])
            continue
        holdout, leave_one_out = fit.get("holdout") or {}, fit.get("leave_one_out") or {}
        rows.append([method_name(method), points, *(stat_cell(fit.get(p), f) for p, f in LOSS_FORMATS.items()),
                     format_count(holdout.get("size")),
                     f"{format_number(holdout.get('predicted'), 3)} / {format_number(holdout.get('observed'), 3)}",
                     format_number(holdout_percent(holdout), 1),
                     f"{format_number(leave_one_out.get('mean_abs_error'), 3)} / "
                     f"{format_number(leave_one_out.get('max_abs_error'), 3)}"])
    return Tabular("l r c c c c r c r c",
                   ["方法", "点数", "$E$", "$A$", r"$\alpha$", "每翻一倍", "留出规模", "预测 / 实测", r"误差（\%）",
                    "留一：平均 / 最大"],
                   rows, note=r"$D$ 为训练样本数，$L$ 为参考答案每个 token 的平均负对数似然（nats）。"
                              r"“每翻一倍”是两参数的对数线性描述：$L$ 对 $\log_2 D$ 的最小二乘斜率，"
                              r"即数据每翻一倍损失的变化。"
                              r"留出检验：去掉最大规模后用其余点拟合，预测最大规模的损失；"
                              r"误差 = $|\text{预测} - \text{实测}|$ / 实测。"
                              r"留一：依次去掉每个规模、用其余点拟合再预测它，绝对误差 $|\text{预测} - \text{实测}|$ "
                              r"（nats）的平均与最大。"
                              + interval_scope(study.scaling))


def missing_sentence(study: Study) -> str:
    if not study.present("scaling"):
        return study.absent_files_sentence(["scaling"], "规模拟合")
    return "还没有方法有足够的完成运行来拟合规模曲线（见本报告开头的缺失清单）。"


SECTION = Section(
    name="Scaling",
    present=lambda study: bool((study.scaling or {}).get("loss_fits")),
    missing_sentence=missing_sentence,
    macros=scaling_macros,
    files=(Table("scaling",
                 rf"测试损失的数据规模拟合 $L(D) = E + A\,D^{{-\alpha}}$ 与每翻一倍的变化"
                 rf"（括号内为 bootstrap 的 {CONFIDENCE_TEXT} 区间）",
                 "tab:scaling", fit_rows),),
)
