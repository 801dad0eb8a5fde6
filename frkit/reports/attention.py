"""Fusion attention of Attention Distillation runs: KL per layer, figures and explorer of notebook 04 (no training)."""

from __future__ import annotations

import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
import torch

from frkit.core.distill import attention_kl, old_adapter_scores
from frkit.reports.display import show


def teacher_student_kl(method, table: pd.DataFrame) -> pd.DataFrame:
    """Per layer: KL(teacher || student old-adapter scores) (Eq. 9, token mean) on ``table``, the last step's
    teacher being the previous fusion (or the first adapter alone after step 2)."""
    k = len(method.learned) - 1
    if k < 1:
        raise ValueError("distillation starts at the second marketplace")
    student, mask, _ = method.fusion_scores(table, {"fusion": method.fusion_name(k)})
    teacher, _, _ = method.fusion_scores(table, method.teacher_setup(k))
    rows = []
    for layer in sorted(student):
        omega = old_adapter_scores(student[layer], teacher[layer].shape[-1], method.cfg.distill_renormalise)
        rows.append(
            {
                "layer": layer,
                "KL": float(attention_kl(teacher[layer], omega, mask)),
                "teacher mean": teacher[layer][mask.bool()].mean(0).numpy().round(4).tolist(),
                "student mean (old adapters)": omega[mask.bool()].mean(0).numpy().round(4).tolist(),
            }
        )
    return pd.DataFrame(rows)


def attention_by_marketplace_figure(artifact: dict[str, torch.Tensor], adapters: list[str]) -> go.Figure:
    """Heatmap layer x adapter of the mean attention each marketplace's data pays; dropdown picks the marketplace."""
    fig = go.Figure()
    names = list(artifact)
    for i, name in enumerate(names):
        z = artifact[name].numpy()
        fig.add_trace(
            go.Heatmap(
                z=z,
                x=adapters[: z.shape[1]],
                y=[f"layer {layer}" for layer in range(z.shape[0])],
                zmin=0,
                zmax=1,
                colorscale="Blues",
                visible=i == 0,
                texttemplate="%{z:.2f}",
            )
        )
    buttons = [
        dict(
            label=n,
            method="update",
            args=[{"visible": [j == i for j in range(len(names))]}, {"title": f"Mean fusion attention on {n} data"}],
        )
        for i, n in enumerate(names)
    ]
    fig.update_layout(
        updatemenus=[dict(buttons=buttons, x=0, y=1.15, xanchor="left")],
        title=f"Mean fusion attention on {names[0]} data",
        xaxis_title="adapter",
        yaxis_autorange="reversed",
    )
    return fig


def token_attention_figure(method, table: pd.DataFrame, row: int = 0) -> go.Figure:
    """Per-token attention over adapters for one example; a dropdown picks the layer."""
    scores, mask, ids = method.fusion_scores(table.iloc[[row]])
    n = int(mask[0].sum())
    tokens = method.ctx.tokenizer.convert_ids_to_tokens(ids[0, :n].tolist())
    tokens = [f"{i}:{t}" for i, t in enumerate(tokens)]
    fig = go.Figure()
    layers = sorted(scores)
    for i, layer in enumerate(layers):
        fig.add_trace(
            go.Heatmap(
                z=scores[layer][0, :n].T.numpy(),
                x=tokens,
                y=method.learned[: scores[layer].shape[-1]],
                zmin=0,
                zmax=1,
                colorscale="Blues",
                visible=i == 0,
            )
        )
    buttons = [
        dict(label=f"layer {layer}", method="update", args=[{"visible": [j == i for j in range(len(layers))]}])
        for i, layer in enumerate(layers)
    ]
    fig.update_layout(
        updatemenus=[dict(buttons=buttons, x=0, y=1.2, xanchor="left")],
        title="Fusion attention per token (rows: adapters)",
        xaxis_tickangle=-60,
    )
    return fig


def kl_figure(kl: pd.DataFrame) -> go.Figure:
    return px.bar(kl, x="layer", y="KL", title="Teacher vs student: KL of Eq. 9 per layer (token mean)")


def attention_explorer(method, marketplaces):
    """ipywidgets: marketplace, example and layer, live (JupyterLab)."""
    import ipywidgets as widgets
    from IPython.display import display

    by_name = {m.name: m for m in marketplaces if m.name in method.learned}
    market = widgets.Dropdown(options=list(by_name), description="marketplace")
    example = widgets.IntSlider(0, 0, 49, description="example")
    layer = widgets.IntSlider(0, 0, len(method.stack.layers) - 1, description="layer")
    out = widgets.Output()

    def draw(*_):
        table = by_name[market.value].test.head(50)
        scores, mask, ids = method.fusion_scores(table.iloc[[example.value]])
        n = int(mask[0].sum())
        tokens = method.ctx.tokenizer.convert_ids_to_tokens(ids[0, :n].tolist())
        fig = px.imshow(
            scores[layer.value][0, :n].T.numpy(),
            x=[f"{i}:{t}" for i, t in enumerate(tokens)],
            y=method.learned[: scores[layer.value].shape[-1]],
            zmin=0,
            zmax=1,
            title=f"{market.value} example {example.value}, layer {layer.value}",
        )
        with out:
            out.clear_output(wait=True)
            show(fig)

    for w in (market, example, layer):
        w.observe(draw, names="value")
    draw()
    box = widgets.VBox([widgets.HBox([market, example, layer]), out])
    display(box)
    return box
