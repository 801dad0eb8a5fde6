"""The diagonal Fisher of Eq. 3 as Stage I saved it (ewc / fr_lora / fr_dora runs): loading, top-k overlaps,
Eq. 4's weight map, and the figures and explorer of notebook 03. Nothing trains here."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
import torch

from frkit.errors import FrkitInputError
from frkit.records import RunFolder
from frkit.reports.display import show

LAYER = re.compile(r"layer\.(\d+)\.attention\.self\.(query|key|value)\.weight$")


def fisher_by_marketplace(run_dir: str | Path) -> dict[str, dict[str, torch.Tensor]]:
    """Stage-I Fisher of query/key/value for every finished marketplace (saved by ewc / fr_lora / fr_dora)."""
    folder = RunFolder(run_dir)
    out = {}
    for s in folder.progress()["steps"]:
        try:
            out[s["marketplace"]] = folder.load_artifact(s["step"], s["marketplace"], "fisher_qkv")
        except FileNotFoundError:
            raise FrkitInputError(
                f"{run_dir}: no Fisher saved for {s['marketplace']} (method must be ewc, fr_lora or fr_dora)"
            ) from None
    return out


def split_key(key: str) -> tuple[int, str]:
    """``...layer.3.attention.self.key.weight`` -> (3, "key")."""
    m = LAYER.search(key)
    if m is None:
        raise KeyError(f"not a query/key/value weight name: {key}")
    return int(m.group(1)), m.group(2)


def topk_mask(values: torch.Tensor, k_percent: float) -> torch.Tensor:
    """Boolean mask of the top ``k_percent`` % entries (at least one)."""
    flat = values.flatten()
    k = max(1, int(round(flat.numel() * k_percent / 100)))
    mask = torch.zeros_like(flat, dtype=torch.bool)
    mask[torch.topk(flat, k).indices] = True
    return mask


def topk_overlap(fisher_a: dict[str, torch.Tensor], fisher_b: dict[str, torch.Tensor], k_percent: float = 1.0) -> float:
    """Jaccard index |A ∩ B| / |A ∪ B| of the top-k% most important weights (largest Fisher) of two
    marketplaces, taken over all shared query/key/value entries together."""
    keys = sorted(set(fisher_a) & set(fisher_b))
    a = topk_mask(torch.cat([fisher_a[k].flatten() for k in keys]), k_percent)
    b = topk_mask(torch.cat([fisher_b[k].flatten() for k in keys]), k_percent)
    return float((a & b).sum() / (a | b).sum())


def overlap_matrix(fishers: dict[str, dict[str, torch.Tensor]], k_percent: float = 1.0) -> pd.DataFrame:
    names = list(fishers)
    return pd.DataFrame(
        [[topk_overlap(fishers[a], fishers[b], k_percent) for b in names] for a in names], index=names, columns=names
    )


def fr_weight(fisher: torch.Tensor, eps: float) -> torch.Tensor:
    """Eq. 4's per-weight penalty factor 1 / (F + eps): large where the marketplace did not need the weight."""
    return 1.0 / (fisher + eps)


# -- figures -------------------------------------------------------------------------------------
MAX_CELLS = 64  # heatmaps are block-averaged to at most 64 x 64 so the static report stays small


def downsample(matrix: torch.Tensor, max_cells: int = MAX_CELLS) -> np.ndarray:
    """Block-average a 2-D tensor to at most ``max_cells`` per side (adaptive average pooling)."""
    m = matrix.float()[None, None]
    out = torch.nn.functional.adaptive_avg_pool2d(m, (min(max_cells, m.shape[-2]), min(max_cells, m.shape[-1])))
    return out[0, 0].numpy()


def _combos(fishers):
    for name, fisher in fishers.items():
        for key in sorted(fisher, key=split_key):
            layer, matrix = split_key(key)
            yield name, layer, matrix, key


def heatmap_with_dropdown(fishers: dict, eps: float | None = None) -> go.Figure:
    """log10 Fisher (or log10 of Eq. 4's weight 1/(F+eps) when ``eps`` is given) for every marketplace,
    layer and matrix; a dropdown picks one. All traces are precomputed, so it works in static HTML."""
    fig = go.Figure()
    labels = []
    for i, (name, layer, matrix, key) in enumerate(_combos(fishers)):
        values = fishers[name][key]
        values = fr_weight(values, eps) if eps is not None else values
        z = np.log10(downsample(values) + 1e-30)
        fig.add_trace(go.Heatmap(z=z, visible=i == 0, colorscale="Viridis", colorbar={"title": "log10"}))
        labels.append(f"{name} · layer {layer} · {matrix}")
    buttons = [
        dict(label=lab, method="update", args=[{"visible": [j == i for j in range(len(labels))]}, {"title": f"{lab}"}])
        for i, lab in enumerate(labels)
    ]
    what = "FR weight 1/(F+eps)" if eps is not None else "Fisher"
    fig.update_layout(
        updatemenus=[dict(buttons=buttons, direction="down", x=0, y=1.15, xanchor="left")],
        title=f"{labels[0] if labels else ''}",
        xaxis_title=f"input dim (block-averaged to ≤{MAX_CELLS})",
        yaxis_title=f"output dim (block-averaged to ≤{MAX_CELLS})",
        annotations=[dict(text=f"log10 {what}", x=1, y=1.12, xref="paper", yref="paper", showarrow=False)],
    )
    return fig


def histograms(fishers: dict) -> go.Figure:
    rows = []
    for name, fisher in fishers.items():
        flat = torch.cat([f.flatten() for f in fisher.values()])
        sample = flat[torch.randperm(flat.numel(), generator=torch.Generator().manual_seed(0))[:20000]]
        rows += [{"marketplace": name, "log10 Fisher": float(v)} for v in torch.log10(sample + 1e-30)]
    return px.histogram(
        pd.DataFrame(rows),
        x="log10 Fisher",
        color="marketplace",
        barmode="overlay",
        opacity=0.6,
        title="Distribution of query/key/value Fisher values (20k sampled weights each)",
    )


def per_layer_means(fishers: dict) -> go.Figure:
    rows = [
        {"marketplace": name, "layer": layer, "matrix": matrix, "mean Fisher": float(fishers[name][key].mean())}
        for name, layer, matrix, key in _combos(fishers)
    ]
    fig = px.line(
        pd.DataFrame(rows),
        x="layer",
        y="mean Fisher",
        color="marketplace",
        line_dash="matrix",
        markers=True,
        log_y=True,
        title="Mean Fisher per layer",
    )
    return fig


def overlap_figure(overlap: pd.DataFrame, k_percent: float) -> go.Figure:
    return px.imshow(
        overlap,
        text_auto=".2f",
        zmin=0,
        zmax=1,
        color_continuous_scale="Blues",
        title=f"Top-{k_percent:g}% most important q/k/v weights: Jaccard overlap between marketplaces",
    )


def fisher_explorer(fishers: dict, eps: float):
    """ipywidgets: pick marketplace, layer, matrix and view (Fisher or FR weight) live in JupyterLab."""
    import ipywidgets as widgets
    from IPython.display import display

    names = list(fishers)
    layers = sorted({split_key(k)[0] for k in next(iter(fishers.values()))})
    market = widgets.Dropdown(options=names, description="marketplace")
    layer = widgets.Dropdown(options=layers, description="layer")
    matrix = widgets.Dropdown(options=["query", "key", "value"], description="matrix")
    view = widgets.ToggleButtons(options=["Fisher", "FR weight"], description="view")
    out = widgets.Output()

    def draw(*_):
        key = next(k for k in fishers[market.value] if split_key(k) == (layer.value, matrix.value))
        values = fishers[market.value][key]
        values = fr_weight(values, eps) if view.value == "FR weight" else values
        fig = px.imshow(
            np.log10(downsample(values, 128) + 1e-30),
            color_continuous_scale="Viridis",
            title=f"log10 {view.value}: {market.value} · layer {layer.value} · {matrix.value}",
        )
        with out:
            out.clear_output(wait=True)
            show(fig)

    for w in (market, layer, matrix, view):
        w.observe(draw, names="value")
    draw()
    box = widgets.VBox([widgets.HBox([market, layer, matrix]), view, out])
    display(box)
    return box
