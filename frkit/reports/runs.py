"""Plotly figures over marketplaces and run folders (no training here, only reading and drawing)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.express as px
import plotly.graph_objects as go

from frkit.artifacts import RunRecord
from frkit.data.marketplace import SPLITS, Marketplace

_PLOTLY_JS_SENT = False


def show(fig: go.Figure) -> None:
    """Display a figure so that it also works offline in the static HTML report.

    plotly.js is embedded once per kernel (the first figure), the later figures reuse it: the report
    stays self-contained without a CDN, and JupyterLab shows the same interactive figures.
    """
    global _PLOTLY_JS_SENT
    from IPython.display import HTML, display

    display(HTML(fig.to_html(include_plotlyjs=not _PLOTLY_JS_SENT, full_html=False)))
    _PLOTLY_JS_SENT = True


# -- data preparation (notebook 01) ------------------------------------------------------------
def split_sizes(marketplaces: list[Marketplace]) -> go.Figure:
    rows = [{"marketplace": m.name, "split": s, "pairs": n} for m in marketplaces for s, n in m.sizes().items()]
    return px.bar(pd.DataFrame(rows), x="marketplace", y="pairs", color="split", barmode="group", title="Pairs per split")


def label_balance(marketplaces: list[Marketplace]) -> go.Figure:
    rows = [{"marketplace": m.name, "split": s, "relevant share": float(m.split(s)["label"].mean())}
            for m in marketplaces for s in SPLITS]
    fig = px.bar(pd.DataFrame(rows), x="marketplace", y="relevant share", color="split", barmode="group",
                 title="Share of label 1 (relevant / paraphrase)")
    fig.update_yaxes(range=[0, 1])
    return fig


def text_lengths(marketplaces: list[Marketplace], tokenizer) -> go.Figure:
    """Pair length in tokens as the model sees it (both texts together), per marketplace."""
    rows = []
    for m in marketplaces:
        enc = tokenizer(m.train["text_a"].tolist(), m.train["text_b"].tolist())
        rows += [{"marketplace": m.name, "tokens per pair": len(ids)} for ids in enc["input_ids"]]
    return px.histogram(pd.DataFrame(rows), x="tokens per pair", color="marketplace", barmode="overlay",
                        opacity=0.6, title="Tokens per pair (train)")


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
        rows.append({"marketplace": m.name, "language": m.language, "pieces per word": pieces / max(words, 1),
                     "unknown token share": unks / max(pieces, 1), "characters per piece":
                     sum(len(t) for t in texts) / max(pieces, 1)})
    return pd.DataFrame(rows)


def coverage_figure(coverage: pd.DataFrame) -> go.Figure:
    return px.bar(coverage, x="marketplace", y="pieces per word", hover_data=["unknown token share"],
                  title="Tokenizer: pieces per whitespace word (words in ja are not space-separated)")


# -- results (notebook 02) ------------------------------------------------------------------------
def auc_heatmap(record: RunRecord) -> go.Figure:
    frame = record.auc_matrix()
    text = np.vectorize(lambda x: "" if np.isnan(x) else f"{x:.3f}")(frame.values)
    fig = go.Figure(go.Heatmap(z=frame.values, x=list(frame.columns), y=list(frame.index), text=text,
                               texttemplate="%{text}", colorscale="Viridis", colorbar={"title": "ROC-AUC"}))
    fig.update_layout(title=f"ROC-AUC after each marketplace ({record.params['method']})",
                      xaxis_title="evaluated on", yaxis_title="after learning", yaxis_autorange="reversed")
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
            fig.add_trace(go.Scatter(x=names[: t + 1], y=ys[: t + 1], mode="lines", showlegend=False,
                                     line={"dash": "dot", "color": "gray"}, hoverinfo="skip"))
    fig.update_layout(title="ROC-AUC of each marketplace across the sequence", xaxis_title="after learning",
                      yaxis_title="ROC-AUC")
    return fig
