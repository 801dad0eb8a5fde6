"""Task-vector merging for the merging baselines of FR-LoRA Table 1 (MagMax, Marczak et al. 2024).

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
