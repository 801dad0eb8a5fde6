"""Eq. 5 projection of older LoRAs onto the last one's subspaces: residuals, principal angles, ROC-AUC with and
without it (fr_lora / fr_dora runs), and the figures of notebook 05. Nothing trains here."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
import torch

from frkit.core.lora_delta import lora_factors
from frkit.core.projection import principal_angles, projection_residual
from frkit.errors import FrkitInputError
from frkit.reload import load_method
from frkit.reports.fisher import split_key


def projection_table(method) -> pd.DataFrame:
    """For each earlier marketplace, layer and matrix: relative residual of Eq. 5 for B (columns onto
    col(B_M)) and A (rows onto the row space of A_M), and the principal angles between the subspaces."""
    encoder = method.model.encoder
    names = method.learned
    if not hasattr(encoder, "peft_config"):
        raise FrkitInputError(f"method {method.name!r} has no LoRA adapters to analyse (use fr_lora / fr_dora / lora)")
    latest = lora_factors(encoder, names[-1])
    rows = []
    for name in names[:-1]:
        for key, (a, b) in lora_factors(encoder, name).items():
            a_m, b_m = latest[key]
            layer, matrix = split_key(key)
            angles_b = principal_angles(b.detach().float(), b_m.detach().float())
            angles_a = principal_angles(a.detach().float().T, a_m.detach().float().T)
            rows.append(
                {
                    "marketplace": name,
                    "layer": layer,
                    "matrix": matrix,
                    "residual_B": float(projection_residual(b.detach().float(), b_m.detach().float())),
                    "residual_A": float(projection_residual(a.detach().float().T, a_m.detach().float().T)),
                    "mean_angle_B_deg": float(torch.rad2deg(angles_b).mean()),
                    "mean_angle_A_deg": float(torch.rad2deg(angles_a).mean()),
                }
            )
    return pd.DataFrame(rows)


def auc_with_and_without_projection(run_dir: str | Path) -> pd.DataFrame:
    """Final ROC-AUC of every marketplace as the run left it, and with Eq. 5 applied to a copy.

    A run with ``projection: false`` gives both arms. A run with ``projection: true`` saved its adapters
    already projected, so only that arm can be measured from it (the other column is NaN).
    """
    from frkit.train import roc_auc

    cfg, method, marketplaces = load_method(run_dir)
    if not hasattr(method, "project_older_adapters"):
        raise FrkitInputError(f"method {cfg.method!r} has no projection step (use fr_lora or fr_dora)")

    def scores(m):
        return {mp.name: roc_auc(mp.test["label"], m.predict(mp.test, mp.name)) for mp in marketplaces}

    as_saved = scores(method)
    if cfg.projection:
        return pd.DataFrame({"without projection": np.nan, "with projection": pd.Series(as_saved)})
    projected = copy.copy(method)
    projected.model = copy.deepcopy(method.model)
    projected.project_older_adapters()
    return pd.DataFrame({"without projection": pd.Series(as_saved), "with projection": pd.Series(scores(projected))})


# -- figures -------------------------------------------------------------------------------------
def residual_figure(table: pd.DataFrame) -> go.Figure:
    long = table.melt(
        id_vars=["marketplace", "layer", "matrix"],
        value_vars=["residual_B", "residual_A"],
        var_name="factor",
        value_name="relative residual",
    )
    return px.line(
        long,
        x="layer",
        y="relative residual",
        color="marketplace",
        line_dash="factor",
        facet_col="matrix",
        markers=True,
        title="Eq. 5: ||P_B - B|| / ||B|| of earlier LoRAs against the last one",
    )


def angle_figure(table: pd.DataFrame) -> go.Figure:
    long = table.melt(
        id_vars=["marketplace", "layer", "matrix"],
        value_vars=["mean_angle_B_deg", "mean_angle_A_deg"],
        var_name="subspace",
        value_name="mean principal angle (deg)",
    )
    return px.line(
        long,
        x="layer",
        y="mean principal angle (deg)",
        color="marketplace",
        line_dash="subspace",
        facet_col="matrix",
        markers=True,
        title="Principal angles between earlier and last LoRA subspaces",
    )


def projection_auc_figure(aucs: pd.DataFrame) -> go.Figure:
    long = aucs.reset_index(names="marketplace").melt(id_vars="marketplace", var_name="arm", value_name="ROC-AUC")
    return px.bar(
        long,
        x="marketplace",
        y="ROC-AUC",
        color="arm",
        barmode="group",
        title="Final ROC-AUC with and without projection (Eq. 5)",
    )
