"""Logit-space seeds: per-sample vectors s with d/dtheta (s . logits) = the gradient that Eq. 3 squares.

F_i = E_{(x,y)~D} [ (d log p(y|x; theta*) / d theta_i)^2 ]                      (Eq. 3)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def logit_seeds(logits: Tensor, labels: Tensor | None, kind: str) -> Tensor:
    """[K, B, C] logit-space seeds whose per-sample squared backprops sum to the Fisher contribution.

    d log p_y / d logits = e_y - p, so the empirical seed is e_y - p (K = 1). The true Fisher in
    logit space is M = diag(p) - p p^T (rank C-1, null vector 1); with M = sum_k s_k s_k^T from its
    eigen-decomposition, sum_k (J^T s_k)^2 = diag(J^T M J) = sum_c p_c (J^T (e_c - p))^2 exactly,
    in C-1 backward passes (one for two classes) instead of C.
    """
    p = torch.softmax(logits.detach().double(), dim=-1)
    if kind == "empirical":
        if labels is None:
            raise KeyError("kind='empirical' needs the labels in the batch (label_key)")
        return (F.one_hot(labels.long(), p.shape[-1]).double() - p).unsqueeze(0).to(logits.dtype)
    m = torch.diag_embed(p) - p.unsqueeze(-1) * p.unsqueeze(-2)
    evals, evecs = torch.linalg.eigh(m)  # ascending; the first is the null direction (all ones)
    s = evecs[..., 1:] * evals[..., 1:].clamp_min(0).sqrt().unsqueeze(-2)  # [B, C, C-1]
    return s.permute(2, 0, 1).to(logits.dtype)
