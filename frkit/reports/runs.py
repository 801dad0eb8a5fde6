"""Figures of one run and its data: notebooks 01 (data preparation) and 02 (a trained sequence).

Only reading and drawing."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.express as px
import plotly.graph_objects as go

from frkit.data.marketplace import SPLITS, Marketplace
from frkit.records import RunRecord
from frkit.reports.display import show  # noqa: F401  (notebooks call runs.show)


# -- data preparation (notebook 01) ------------------------------------------------------------
def split_sizes(marketplaces: list[Marketplace]) -> go.Figure:
    rows = [{"marketplace": m.name, "split": s, "pairs": n} for m in marketplaces for s, n in m.sizes().items()]
    return px.bar(
        pd.DataFrame(rows), x="marketplace", y="pairs", color="split", barmode="group", title="Pairs per split"
    )


def label_balance(marketplaces: list[Marketplace]) -> go.Figure:
    rows = [
        {"marketplace": m.name, "split": s, "relevant share": float(m.split(s)["label"].mean())}
        for m in marketplaces
        for s in SPLITS
    ]
    fig = px.bar(
        pd.DataFrame(rows),
        x="marketplace",
        y="relevant share",
        color="split",
        barmode="group",
        title="Share of label 1 (relevant / paraphrase)",
    )
    fig.update_yaxes(range=[0, 1])
    return fig


def text_lengths(marketplaces: list[Marketplace], tokenizer) -> go.Figure:
    """Pair length in tokens as the model sees it (both texts together), per marketplace."""
    rows = []
    for m in marketplaces:
        enc = tokenizer(m.train["text_a"].tolist(), m.train["text_b"].tolist())
        rows += [{"marketplace": m.name, "tokens per pair": len(ids)} for ids in enc["input_ids"]]
    return px.histogram(
        pd.DataFrame(rows),
        x="tokens per pair",
        color="marketplace",
        barmode="overlay",
        opacity=0.6,
        title="Tokens per pair (train)",
    )


def tokenizer_coverage(marketplaces: list[Marketplace], tokenizer) -> pd.DataFrame:
    """Pieces per whitespace word and the share of unknown tokens, per marketplace (train texts)."""
    rows = []
    unk = tokenizer.unk_token_id
    for m in marketplaces:
        texts = m.train["text_a"].tolist() + m.train["text_b"].tolist()
        ids = tokenizer(texts, add_special_tokens=False)["input_ids"]
        pieces = sum(len(x) for x in ids)
        words = sum(len(t.split()) for t in texts)
        unks = sum(sum(1 for i in x if i == unk) for x in ids)
        rows.append(
            {
                "marketplace": m.name,
                "language": m.language,
                "pieces per word": pieces / max(words, 1),
                "unknown token share": unks / max(pieces, 1),
                "characters per piece": sum(len(t) for t in texts) / max(pieces, 1),
            }
        )
    return pd.DataFrame(rows)


def coverage_figure(coverage: pd.DataFrame) -> go.Figure:
    return px.bar(
        coverage,
        x="marketplace",
        y="pieces per word",
        hover_data=["unknown token share"],
        title="Tokenizer: pieces per whitespace word (words in ja are not space-separated)",
    )


# -- results (notebook 02) ------------------------------------------------------------------------
def auc_heatmap(record: RunRecord) -> go.Figure:
    frame = record.auc_matrix()
    text = np.vectorize(lambda x: "" if np.isnan(x) else f"{x:.3f}")(frame.values)
    fig = go.Figure(
        go.Heatmap(
            z=frame.values,
            x=list(frame.columns),
            y=list(frame.index),
            text=text,
            texttemplate="%{text}",
            colorscale="Viridis",
            colorbar={"title": "ROC-AUC"},
        )
    )
    fig.update_layout(
        title=f"ROC-AUC after each marketplace ({record.params['method']})",
        xaxis_title="evaluated on",
        yaxis_title="after learning",
        yaxis_autorange="reversed",
    )
    return fig


def auc_trajectories(record: RunRecord) -> go.Figure:
    """Each marketplace's ROC-AUC across the sequence; dashed before it was learned."""
    frame = record.auc_matrix()
    names = list(frame.columns)
    fig = go.Figure()
    for t, name in enumerate(names):
        ys = frame[name].values
        fig.add_trace(go.Scatter(x=names, y=ys, mode="lines+markers", name=name))
        if t > 0:
            fig.add_trace(
                go.Scatter(
                    x=names[: t + 1],
                    y=ys[: t + 1],
                    mode="lines",
                    showlegend=False,
                    line={"dash": "dot", "color": "gray"},
                    hoverinfo="skip",
                )
            )
    fig.update_layout(
        title="ROC-AUC of each marketplace across the sequence", xaxis_title="after learning", yaxis_title="ROC-AUC"
    )
    return fig


def diagonal_vs_final(record: RunRecord) -> go.Figure:
    """Each marketplace's ROC-AUC just after it was learned (R[t, t]) against after the last one (R[T, t]):
    the gap is what the sequence forgot of it (FR-LoRA section 5.6.3 takes the best R[k, t] instead of R[t, t])."""
    frame = record.auc_matrix()
    names = list(frame.columns)
    learned = [frame.iloc[t, t] for t in range(len(names))]
    final = list(frame.iloc[-1])
    fig = go.Figure(
        [
            go.Bar(name="just after learning it", x=names, y=learned, text=[f"{v:.3f}" for v in learned]),
            go.Bar(name="after the last marketplace", x=names, y=final, text=[f"{v:.3f}" for v in final]),
        ]
    )
    low = np.nanmin(learned + final)
    fig.update_layout(
        barmode="group",
        title="Learned vs final ROC-AUC per marketplace (the drop is forgetting)",
        yaxis_title="ROC-AUC",
        yaxis_range=[max(0.0, low - 0.1), 1.0],
    )
    return fig


def _fit_logs(step_log: dict, prefix: str = ""):
    """(label, fit log) pairs of one marketplace's log: the log itself and its stages (stage1/2, adapter, fusion)."""
    nested = [(k, v) for k, v in step_log.items() if isinstance(v, dict) and ("history" in v or "curve" in v)]
    if nested:
        for key, sub in nested:
            yield from _fit_logs(sub, f"{prefix}{key} ")
    elif "history" in step_log:
        yield prefix.strip(), step_log


def learning_curves(record: RunRecord) -> go.Figure:
    """Train loss and validation ROC-AUC over optimiser steps, per marketplace and stage: every
    ``eval_every_steps`` where the run logged a curve, else once per epoch."""
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=2, subplot_titles=("train loss", "validation ROC-AUC"))
    for s in record.progress["steps"]:
        for stage, log in _fit_logs(s):
            points = log.get("curve") or log.get("history") or []
            if not points:
                continue
            label = f"{s['marketplace']} {stage}".strip()
            x = [p.get("step", p.get("epoch")) for p in points]
            fig.add_trace(
                go.Scatter(
                    x=x, y=[p["train_loss"] for p in points], mode="lines+markers", name=label, legendgroup=label
                ),
                row=1,
                col=1,
            )
            fig.add_trace(
                go.Scatter(
                    x=x,
                    y=[p["val_auc"] for p in points],
                    mode="lines+markers",
                    name=label,
                    legendgroup=label,
                    showlegend=False,
                ),
                row=1,
                col=2,
            )
    fig.update_xaxes(title_text="optimiser step (per marketplace)")
    fig.update_layout(title="Learning curves", height=420)
    return fig


def timing(record: RunRecord) -> pd.DataFrame:
    """Seconds spent learning and evaluating each marketplace, and the run's total."""
    rows = [
        {
            "marketplace": s["marketplace"],
            "learn s": round(s.get("learn_seconds", float("nan")), 1),
            "evaluate s": round(s.get("eval_seconds", float("nan")), 1),
            "trainable params": s["trainable_params"],
        }
        for s in record.progress["steps"]
    ]
    frame = pd.DataFrame(rows).set_index("marketplace")
    frame.loc["total"] = [round(frame["learn s"].sum(), 1), round(frame["evaluate s"].sum(), 1), None]
    return frame
