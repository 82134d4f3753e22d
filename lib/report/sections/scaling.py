"""Section "Scaling": each method's fit of the test loss, L(D) = E + A * D^(-alpha), with its
bootstrap intervals and hold-out check, the loss per doubling of the data beside it, and the
trends per doubling (scaling.json's loss_fits and trends)."""

from __future__ import annotations

from lib.io import nested_value
from lib.report.columns import fixed, interval_macros, metric_column, stat_cell
from lib.report.formatting import CONFIDENCE_TEXT, interval_scope, method_name
from lib.report.section import Section, Table, Tabular
from lib.report.study import Study
from lib.summarize.schema import FIT_PARAMETERS, TREND_METRICS
from lib.tex import escape, format_count, format_number, format_significant, macro_name

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


def scaling_macros(study: Study) -> dict:
    scaling = study.scaling or {}
    parameters, sizes = len(FIT_PARAMETERS), len(study.sizes)
    macros = {"FitParameters": format_count(parameters),
              "FitDegreesOfFreedom": format_count(max(sizes - parameters, 0)),
              "HoldoutFitPoints": format_count(sizes - 1)}  # the hold-out fit leaves the largest size out
    for method in study.quoted_methods:
        prefix = macro_name(method)
        fit = (scaling.get("loss_fits") or {}).get(method) or {}
        for parameter, format_value in LOSS_FORMATS.items():
            macros |= interval_macros(f"{prefix}Fit{macro_name(parameter)}", fit.get(parameter), format_value)
        holdout = fit.get("holdout") or {}
        macros |= {
            f"{prefix}FitPoints": format_count(len(fit.get("points") or [])),
            f"{prefix}HoldoutSize": format_count(holdout.get("size")),
            f"{prefix}HoldoutObserved": format_number(holdout.get("observed"), 3),
            f"{prefix}HoldoutPredicted": format_number(holdout.get("predicted"), 3),
            f"{prefix}HoldoutError": format_number(holdout.get("abs_error"), 3),
            f"{prefix}HoldoutPercent": format_number(holdout_percent(holdout), 1),
        }
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
                         f"\\multicolumn{{7}}{{c}}{{\\textit{{{fit_status_text(fit.get('status'))}}}}}"])
            continue
        holdout = fit.get("holdout") or {}
        rows.append([method_name(method), points, *(stat_cell(fit.get(p), f) for p, f in LOSS_FORMATS.items()),
                     format_count(holdout.get("size")),
                     f"{format_number(holdout.get('predicted'), 3)} / {format_number(holdout.get('observed'), 3)}",
                     format_number(holdout_percent(holdout), 1)])
    return Tabular("l r c c c c r c r",
                   ["方法", "点数", "$E$", "$A$", r"$\alpha$", "每翻一倍", "留出规模", "预测 / 实测", r"误差（\%）"],
                   rows, note=r"$D$ 为训练样本数，$L$ 为参考答案每个 token 的平均负对数似然（nats）。"
                              r"“每翻一倍”是两参数的对数线性描述：$L$ 对 $\log_2 D$ 的最小二乘斜率，"
                              r"即数据每翻一倍损失的变化。"
                              r"留出检验：去掉最大规模后用其余点拟合，预测最大规模的损失；"
                              r"误差 = $|\text{预测} - \text{实测}|$ / 实测。"
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
