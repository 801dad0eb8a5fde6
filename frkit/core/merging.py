"""Task-vector merging for the merging baselines of FR-LoRA Table 1: MagMax (Marczak et al. 2024) and OPCM below.

A task vector is tau_t = theta_t - theta_0 (fine-tuned minus pre-trained weights). MagMax keeps, for
every entry, the task vector value of largest magnitude across tasks, and applies the result scaled:

    tau_MagMax[i] = tau_{k*}[i],  k* = argmax_k |tau_k[i]|      theta = theta_0 + lambda * tau_MagMax

Taking the maximum is associative, so the merge is kept incrementally (one merged vector, not every tau_k):
max_magnitude(merged_{t-1}, tau_t) equals the merge over tau_1..tau_t. Ties keep the earlier task's value.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor


def task_vector(finetuned: Mapping[str, Tensor], pretrained: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """tau = theta_t - theta_0 for every floating-point entry (integer buffers such as position ids carry no update)."""
    missing = sorted(set(pretrained) ^ set(finetuned))
    if missing:
        raise ValueError(f"fine-tuned and pre-trained weights differ in keys: {missing[:5]}")
    return {k: (v.detach() - pretrained[k]).float() for k, v in finetuned.items() if v.is_floating_point()}


def max_magnitude(merged: Mapping[str, Tensor] | None, tau: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """One MagMax step: entry-wise, the value of larger magnitude of the merged vector and tau (ties: merged)."""
    if merged is None:
        return {k: v.clone() for k, v in tau.items()}
    return {k: torch.where(tau[k].abs() > m.abs(), tau[k], m) for k, m in merged.items()}


def apply_task_vector(pretrained: Mapping[str, Tensor], tau: Mapping[str, Tensor], scale: float) -> dict[str, Tensor]:
    """theta_0 + scale * tau, in each weight's own dtype; entries without a task vector are theta_0's."""
    return {k: (v.float() + scale * tau[k]).to(v.dtype) if k in tau else v.clone() for k, v in pretrained.items()}


# -- OPCM (Tang et al. 2025, "Merging Models on the Fly Without Retraining") -------------------------------------
# The merged task vector is kept with the norm of the average task vector; a new task vector enters it after its
# components on the merged update's leading singular directions are removed, so that it interferes less:
#
#   Delta = U S V^T (full SVD of the merged update of one Linear weight), P = U^T tau_t V,
#   zero P's diagonal and its top-left r_alpha x r_alpha block (r_alpha: first index where the cumulative share of
#   singular values exceeds alpha), tau_t' = U P V^T
#   combined = lambda_{t-1} Delta + tau_t'   (other parameters: lambda_{t-1} Delta + tau_t)
#   lambda_t = ||combined|| / mean_k ||tau_k||,   merged_t = combined / lambda_t


def opcm_clean(merged: Tensor, tau: Tensor, alpha: float) -> Tensor:
    """tau with its components on the merged update's singular pairs (diagonal) and leading block removed."""
    u, s, vh = torch.linalg.svd(merged.float(), full_matrices=True)
    total = s.sum()
    split = int(((s.cumsum(0) / total) > alpha).float().argmax()) if total > 0 else 0
    p = u.T @ tau.float() @ vh.T
    p.diagonal().zero_()
    p[:split, :split] = 0
    return u @ p @ vh


def vector_norm(tau: Mapping[str, Tensor]) -> float:
    """The L2 norm of a task vector taken as one flat vector."""
    return float(torch.sqrt(sum((v.float() ** 2).sum() for v in tau.values())))


def opcm_step(
    merged: Mapping[str, Tensor] | None, tau: Mapping[str, Tensor], state: dict, alpha: float, projected: set[str]
) -> dict[str, Tensor]:
    """One OPCM merge; ``state`` ({"lambda": float, "norms": [float]}) is updated in place.

    ``projected``: the keys of Linear weights (the SVD projection); every other entry is added as it is.
    """
    state.setdefault("norms", []).append(vector_norm(tau))
    if merged is None:
        state["lambda"] = 1.0
        return {k: v.float().clone() for k, v in tau.items()}
    previous = state["lambda"]
    combined = {
        k: previous * m + (opcm_clean(m, tau[k], alpha) if k in projected else tau[k].float())
        for k, m in merged.items()
    }
    average = sum(state["norms"]) / len(state["norms"])
    state["lambda"] = vector_norm(combined) / average
    return {k: v / state["lambda"] for k, v in combined.items()}
