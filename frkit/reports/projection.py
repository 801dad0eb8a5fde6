"""Read-only analysis of finished runs: reload a method, Fisher overlaps, projection residuals and angles.

Nothing here trains; notebooks 03 and 05 call these functions and draw what they return.
"""
from __future__ import annotations

import copy
import re
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from frkit.artifacts import RunFolder, load_run
from frkit.config import make_config
from frkit.core.lora_delta import lora_factors
from frkit.core.projection import principal_angles, projection_residual
from frkit.errors import FrkitInputError

LAYER = re.compile(r"layer\.(\d+)\.attention\.self\.(query|key|value)\.weight$")


def load_method(run_dir: str | Path):
    """(cfg, method, marketplaces) with the method restored from the run's latest checkpoint."""
    from frkit.methods import METHODS
    from frkit.methods.base import MethodContext
    from frkit.models.encoder import load_tokenizer
    from frkit.models.source import prepare_model_source
    from frkit.runner import load_configured_marketplaces

    record = load_run(run_dir)
    cfg = make_config(record.params, source=str(Path(run_dir) / "params.yaml"))
    marketplaces = load_configured_marketplaces(cfg)
    source = prepare_model_source(cfg, marketplaces)
    ctx = MethodContext(cfg, source, load_tokenizer(source), show_progress=False)
    method = METHODS[cfg.method](cfg, ctx)
    checkpoint = RunFolder(run_dir).latest_checkpoint()
    if checkpoint is None:
        raise FrkitInputError(f"{run_dir} has no finished marketplace to load")
    method.load(checkpoint)
    return cfg, method, marketplaces


# -- Fisher (notebook 03) ------------------------------------------------------------------------
def fisher_by_marketplace(run_dir: str | Path) -> dict[str, dict[str, torch.Tensor]]:
    """Stage-I Fisher of query/key/value for every finished marketplace (saved by ewc / fr_lora / fr_dora)."""
    folder = RunFolder(run_dir)
    out = {}
    for s in folder.progress()["steps"]:
        try:
            out[s["marketplace"]] = folder.load_artifact(s["step"], s["marketplace"], "fisher_qkv")
        except FileNotFoundError:
            raise FrkitInputError(f"{run_dir}: no Fisher saved for {s['marketplace']} (method must be ewc, fr_lora or fr_dora)") from None
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
    return pd.DataFrame([[topk_overlap(fishers[a], fishers[b], k_percent) for b in names] for a in names],
                        index=names, columns=names)


def fr_weight(fisher: torch.Tensor, eps: float) -> torch.Tensor:
    """Eq. 4's per-weight penalty factor 1 / (F + eps): large where the marketplace did not need the weight."""
    return 1.0 / (fisher + eps)


# -- projection (notebook 05) ---------------------------------------------------------------------
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
            rows.append({
                "marketplace": name, "layer": layer, "matrix": matrix,
                "residual_B": float(projection_residual(b.detach().float(), b_m.detach().float())),
                "residual_A": float(projection_residual(a.detach().float().T, a_m.detach().float().T)),
                "mean_angle_B_deg": float(torch.rad2deg(angles_b).mean()),
                "mean_angle_A_deg": float(torch.rad2deg(angles_a).mean()),
            })
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
