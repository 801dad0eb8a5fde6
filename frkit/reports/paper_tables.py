"""The papers' tables and figures over a sweep's results (notebook 06): FR-LoRA Tables 1-2 and Figure 3, Attention
Distillation Table 2 and Figure 4, FR-LoRA's Stage II penalty split and the penalty-strength curves."""

from __future__ import annotations

import numpy as np
import pandas as pd

from frkit.errors import FrkitInputError
from frkit.paths import shown
from frkit.reports.collect import SweepResults
from frkit.reports.summary import fmt, mean_std, millions, relative_frame, summary_frame

FR_TABLE_ROWS = [  # FR-LoRA Tables 1-2, in the paper's order (rows the sweep lacks are skipped)
    ("independent", "Independent (1x)"),
    ("joint", "Multilingual (all data, upper bound)"),
    ("sequential", "Sequential"),
    ("replay", "Experience Replay"),
    ("prefix", "Prefix tuning"),
    ("progressive_prefix", "Progressive Prefix"),
    ("lora", "LoRA"),
    ("dora", "DoRA"),
    ("lora_stacking", "LoRA Sequential Stacking"),
    ("lora_merge_linear", "LoRA merge (linear)"),
    ("lora_merge_svd", "LoRA merge (svd)"),
    ("magmax+independent", "MagMax + independent"),
    ("magmax+sequential", "MagMax + sequential"),
    ("opcm+independent", "OPCM + independent"),
    ("opcm+sequential", "OPCM + sequential"),
    ("o_lora", "O-LoRA"),
    ("ewc", "EWC"),
    ("fr_lora", "FR-LoRA"),
    ("fr_lora+proj", "FR-LoRA + Proj."),
    ("fr_lora+lr_decay", "FR-LoRA + Lr-Decay"),
    ("fr_lora+lr_decay+proj", "FR-LoRA + Lr-Decay + Proj."),
    ("fr_dora", "FR-DoRA"),
    ("fr_dora+lr_decay", "FR-DoRA + Lr-Decay"),
]
AD_TABLE_ROWS = [
    ("independent", "SM (single marketplace)"),
    ("sequential", "Sequential fine-tuning"),
    ("adapter", "Adapter"),
    ("adapter_fusion", "Adapter Fusion (all data, not sequential)"),
    ("attention_distillation", "Attention Distillation (30% translated)"),
]
TRANSLATION_ROWS = {
    0.0: "attention_distillation_t0",
    0.1: "attention_distillation_t01",
    0.3: "attention_distillation",
    0.5: "attention_distillation_t05",
}


def _runs_of(results: SweepResults, label: str) -> dict:
    return {k: r for k, r in results.runs.items() if k.label == label}


def relative_paper_table(results: SweepResults, rows=FR_TABLE_ROWS, baseline: str = "independent") -> pd.DataFrame:
    """FR-LoRA Table 1/2: per marketplace and on average, final ROC-AUC minus Independent's (paired), mean ± std."""
    rel = relative_frame(results, baseline)
    names = sorted(results.sweep.orders[0])
    out = {}
    for label, title in rows:
        if label == baseline and any(k.label == baseline for k in results.runs):
            out[title] = {n: "1x" for n in names + ["average"]}
        elif label in rel.index:
            r = rel.loc[label]
            out[title] = {n: fmt(r[f"{n} diff mean"], r[f"{n} diff std"]) for n in names + ["average"]}
            out[title]["pairs"] = int(r["pairs"])
    return pd.DataFrame.from_dict(out, orient="index")


def absolute_table(results: SweepResults, rows, metrics=("average_auc", "forgetting")) -> pd.DataFrame:
    """Final ROC-AUC per marketplace (and ``metrics``), mean ± std, with trainable parameters, for ``rows``."""
    summary = summary_frame(results)
    names = sorted(results.sweep.orders[0])
    out = {}
    for label, title in rows:
        if label not in summary.index or summary.loc[label, "runs"] == 0:
            continue
        r = summary.loc[label]
        out[title] = {
            **{n: fmt(r[f"final {n} mean"], r[f"final {n} std"]) for n in names},
            **{m.replace("_", " "): fmt(r[f"{m} mean"], r[f"{m} std"]) for m in metrics},
            "trainable": millions(r["trainable_params"]),
            "runs": f"{int(r['runs'])}/{int(r['expected'])}",
        }
    return pd.DataFrame.from_dict(out, orient="index")


def bar_figure(results: SweepResults, labels: list[tuple[str, str]], metric: str, title: str, yaxis: str):
    """Bars of ``metric`` (mean, sample-std error bars) for the labels the sweep has."""
    import plotly.graph_objects as go

    summary = summary_frame(results)
    present = [(label, name) for label, name in labels if label in summary.index and summary.loc[label, "runs"] > 0]
    means = [summary.loc[label, f"{metric} mean"] for label, _ in present]
    stds = [summary.loc[label, f"{metric} std"] for label, _ in present]
    fig = go.Figure(
        go.Bar(
            x=[n for _, n in present],
            y=means,
            error_y={"type": "data", "array": [0 if not np.isfinite(s) else s for s in stds]},
            text=[f"{m:.4f}" for m in means],
        )
    )
    fig.update_layout(title=title, yaxis_title=yaxis)
    return fig


def translation_figure(results: SweepResults):
    """AD Figure 4: mean final ROC-AUC of the older marketplaces (those translated into) and wall time per run,
    against the share of the new marketplace's data translated."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=2, subplot_titles=("older marketplaces' final ROC-AUC", "wall time per run (s)"))
    xs, ys, es, ts = [], [], [], []
    for fraction, label in TRANSLATION_ROWS.items():
        runs = _runs_of(results, label)
        if not runs:
            continue
        older = [np.mean([r[f"final {m}"] for m in k.order[:-1]]) for k, r in runs.items()]
        mean, std, _ = mean_std(older)
        xs.append(fraction)
        ys.append(mean)
        es.append(0 if not np.isfinite(std) else std)
        ts.append(mean_std(r["wall_seconds"] for r in runs.values())[0])
    fig.add_trace(
        go.Scatter(x=xs, y=ys, error_y={"type": "data", "array": es}, mode="lines+markers", name="ROC-AUC"),
        row=1,
        col=1,
    )
    fig.add_trace(go.Scatter(x=xs, y=ts, mode="lines+markers", name="seconds"), row=1, col=2)
    fig.update_xaxes(title_text="share of D_t translated into each older language")
    fig.update_layout(title="Attention Distillation, Figure 4: translation share", showlegend=False)
    return fig


def stage2_penalty_frame(results: SweepResults) -> pd.DataFrame:
    """FR-LoRA's Stage II loss split into Eq. 4's penalty and the task loss, per run and marketplace, for the runs
    that logged it (``stage2.eq4_penalty`` in progress.json); empty when none did. ``task loss`` is the mean training
    loss less the mean penalty (both over every Stage II step), ``penalty share`` the penalty's part of that loss;
    ``Fisher < eps``: the share of adapted weights whose Stage I Fisher lies below ``fr_eps``, where eps, not the
    Fisher, sets the weight 1/(F+eps)."""
    rows = []
    for key in results.runs:
        steps = results.steps[key]
        logged = [(s["marketplace"], s["stage2"]) for s in steps if (s.get("stage2") or {}).get("eq4_penalty")]
        if not logged:
            continue
        params = results.params[key]
        for marketplace, stage2 in logged:
            penalty = stage2["eq4_penalty"]
            loss = float(np.mean([h["train_loss"] for h in stage2["history"]]))  # epochs have equal steps
            rows.append(
                {
                    "run": key.label,
                    "order": key.order_tag,
                    "seed": key.seed,
                    "marketplace": marketplace,
                    "beta": params.get("beta"),
                    "Stage II loss": loss,
                    "Eq. 4 penalty": penalty["mean"],
                    "task loss": loss - penalty["mean"],
                    "penalty share": penalty["mean"] / loss,
                    "penalty, last step": penalty["last"],
                    "Fisher < eps": penalty.get("fisher_below_eps"),
                }
            )
    return pd.DataFrame(rows)


def strength_figure(results: SweepResults, prefix: str, parameter: str, groups: dict[str, str]):
    """AUC and forgetting against a penalty strength (ewc_lambda or beta), one line per Fisher scale (``groups``:
    label prefix -> legend name); the x value is read from each run's params."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=2, subplot_titles=("average ROC-AUC", "forgetting (higher = less)"))
    for group, name in groups.items():
        points = []
        for key, record in results.runs.items():
            if not key.label.startswith(group):
                continue
            if parameter not in results.params[key]:
                raise FrkitInputError(
                    f"{shown(results.sweep.result_folder(key) / 'params.yaml')}: no {parameter!r}, "
                    f"which strength_figure plots run {key.label!r} against"
                )
            points.append((results.params[key][parameter], record["average_auc"], record["forgetting"]))
        points.sort()
        if not points:
            continue
        x = [max(p[0], 1e-8) for p in points]  # beta 0 on a log axis: drawn at 1e-8
        fig.add_trace(
            go.Scatter(x=x, y=[p[1] for p in points], mode="lines+markers", name=name, legendgroup=name), row=1, col=1
        )
        fig.add_trace(
            go.Scatter(
                x=x, y=[p[2] for p in points], mode="lines+markers", name=name, legendgroup=name, showlegend=False
            ),
            row=1,
            col=2,
        )
    fig.update_xaxes(type="log", title_text=parameter)
    fig.update_layout(title=f"{prefix}: {parameter} over decades")
    return fig
