"""O-LoRA's regularisers (Wang et al. 2023), FR-LoRA Table 1's O-LoRA baseline.

For each adapted weight, with A_k in R^{r x in} the LoRA down-projection of older task k and A_t the new one,

    L_orth = sum_weights sum_{k<t} sum_{i,j} |(A_k A_t^T)[i, j]|
    L_2    = sum over the new adapter's parameters of their L2 norm

as O-LoRA's released training code computes them (entry-wise absolute values; lambda_1 and lambda_2 weigh them).

L_orth is 0 exactly when the new adapter's input subspace (rows of A_t) is orthogonal to every older one.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import torch
from torch import Tensor


def orthogonality_loss(older: Iterable[Mapping[str, Tensor]], new: Mapping[str, Tensor]) -> Tensor:
    """sum over older adapters and weights of |A_old A_new^T| summed entry-wise.

    older: [{weight: A_k}], new: {weight: A_t}."""
    terms = []
    for old in older:
        missing = sorted(set(new) - set(old))
        if missing:
            raise ValueError(f"older adapter lacks the weights {missing[:3]}: O-LoRA needs the same targets every task")
        terms += [(old[k].detach() @ a.transpose(0, 1)).abs().sum() for k, a in new.items()]
    if not terms:
        return next(iter(new.values())).new_zeros(())
    return torch.stack(terms).sum()


def l2_loss(params: Iterable[Tensor]) -> Tensor:
    """sum of the L2 norms of the new adapter's parameter tensors."""
    return torch.stack([p.norm(p=2) for p in params]).sum()
