"""FR-LoRA's regularisers: EWC (Eq. 2) on the base model, the inverse-Fisher LoRA penalty (Eq. 4),
and how the Fisher is carried from one marketplace to the next.

Both penalties are a weighted sum of squares sum_i w_i x_i^2 with w >= 0; it is computed with
``torch._foreach_*`` kernels (a handful of launches for hundreds of tensors) and a hand-written
backward 2 w x, so adding a penalty to a training step costs a few memory passes over the
penalised tensors, not ~4 kernels and temporaries per parameter tensor each way.
"""
from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor

CARRY_MODES = ("latest", "accumulate", "average")


def ewc_penalty(
    params: Mapping[str, Tensor], anchor: Mapping[str, Tensor], fisher: Mapping[str, Tensor], lam: float
) -> Tensor:
    """EWC regulariser of Eq. 2:  (lambda / 2) * sum_i F_i^{(t-1)} (theta_{t,i} - theta*_{t-1,i})^2.

    Summed over the names in ``fisher`` (each must be in ``params`` and ``anchor``); other entries
    of ``params`` (e.g. marketplace heads) are not penalised. ``anchor`` and ``fisher`` are
    constants (no gradient); the gradient w.r.t. ``params[n]`` is lambda * F_n * (theta_n - theta*_n).
    Eq. 2's indicator 1_{t>1} is the caller's: with an empty ``fisher`` this returns 0.
    The paper uses lambda = 1 (section 5.1).
    """
    names = _check_keys(fisher, params=params, anchor=anchor)
    if not names:
        return torch.zeros(())
    xs = [params[n] for n in names]
    anchors = [anchor[n].detach() for n in names]
    weights = [fisher[n].detach() for n in names]
    return (lam / 2) * _WeightedSquares.apply(weights, anchors, *xs)


def fr_inverse_fisher(fisher: Mapping[str, Tensor], eps: float, names=None) -> dict[str, Tensor]:
    """The weights of Eq. 4, 1 / ((F_t)_{ij} + eps), for ``names`` (default: all); compute once per
    marketplace, not per step."""
    if eps <= 0:
        raise ValueError(f"eps must be > 0 (it keeps 1/(F+eps) finite), got {eps}")
    names = list(fisher) if names is None else list(names)
    _check_keys(dict.fromkeys(names), fisher=fisher)
    return {n: torch.reciprocal(fisher[n].detach() + eps) for n in names}


def fr_penalty(delta_w: Mapping[str, Tensor], fisher: Mapping[str, Tensor], beta: float, eps: float) -> Tensor:
    """Fisher-regularisation of the LoRA update, Eq. 4:

        (beta / 2) * sum_{i,j} (Delta W_t)_{ij}^2 / ((F_t)_{ij} + eps),   Delta W_t = B_t A_t,

    summed over the adapted weights in ``delta_w`` (base weight name -> update, see
    ``lora_delta.effective_delta_w``); each needs a Fisher of the same name and shape. The paper
    uses beta = 1e-4 (section 5.1) and gives no value for eps. Differentiable through Delta W to
    the LoRA factors. Inside a training loop use ``fr_penalty_precomputed`` with the weights from
    ``fr_inverse_fisher`` to skip the division every step.
    """
    return fr_penalty_precomputed(delta_w, fr_inverse_fisher(fisher, eps, names=list(delta_w)), beta)


def fr_penalty_precomputed(delta_w: Mapping[str, Tensor], inv_fisher: Mapping[str, Tensor], beta: float) -> Tensor:
    """Eq. 4 with precomputed weights ``inv_fisher[n] = 1 / (F_n + eps)``: (beta/2) sum inv * DeltaW^2."""
    names = _check_keys(delta_w, inv_fisher=inv_fisher)
    if not names:
        return torch.zeros(())
    xs = [delta_w[n] for n in names]
    weights = [inv_fisher[n].to(delta_w[n].dtype) for n in names]
    return (beta / 2) * _WeightedSquares.apply(weights, None, *xs)


def combine_fisher(
    old: Mapping[str, Tensor] | None, new: Mapping[str, Tensor], mode: str = "latest", step: int | None = None,
    decay: float = 1.0,
) -> dict[str, Tensor]:
    """The Fisher the next marketplace's Eq. 2 uses, from the one carried so far and the new one.

    - ``"latest"`` (DEFAULT): F = F_new. Eq. 2 as written: "F_i^{(t-1)} is the Fisher Information
      value for parameter theta_i from task T_{t-1}", anchored at theta*_{t-1}; older marketplaces
      are protected through the chain of anchors. Algorithm 1 initialises F <- 0 (no penalty at
      t = 1) and then recomputes it per task (lines 5, 10).
    - ``"accumulate"``: F = decay * F_old + F_new (online EWC, Schwarz et al. 2018; decay = 1 is a
      plain sum). Penalty strength grows with the number of marketplaces seen.
    - ``"average"``: running mean F = F_old + (F_new - F_old) / step, where ``step`` (1-based) counts
      the Fisher estimates including ``new``; keeps the scale of lambda fixed across marketplaces.

    Keys present in only one of the two dicts are carried over as they are. Inputs are not modified.
    """
    if mode not in CARRY_MODES:
        raise ValueError(f"mode must be one of {CARRY_MODES}, got {mode!r}")
    if mode == "average" and (step is None or step < 1):
        raise ValueError(f"mode='average' needs step >= 1 (number of Fisher estimates including new), got {step}")
    if old is None or mode == "latest":
        return {n: f.detach().clone() for n, f in new.items()}
    out = {n: f.detach().clone() for n, f in old.items()}
    for n, f in new.items():
        if n not in out:
            out[n] = f.detach().clone()
        elif mode == "accumulate":
            out[n].mul_(decay).add_(f)
        else:
            out[n].add_((f - out[n]) / step)
    return out


class _WeightedSquares(torch.autograd.Function):
    """sum_i ||sqrt(w_i) * (x_i - a_i)||^2 for w_i >= 0 on foreach kernels; backward 2 w_i (x_i - a_i).

    The sqrt form needs one temporary per tensor (updated in place) and one fused norm: on CPU,
    fresh allocations of model-sized temporaries, not arithmetic, dominate this cost.
    """

    @staticmethod
    def forward(ctx, weights, anchors, *xs):
        roots = torch._foreach_sqrt(weights)
        if anchors is None:
            scaled = torch._foreach_mul(xs, roots)
        else:
            scaled = torch._foreach_sub(xs, anchors)
            torch._foreach_mul_(scaled, roots)
        norms = torch.stack(torch._foreach_norm(scaled, 2))
        ctx.roots = roots
        ctx.save_for_backward(*scaled)
        return (norms * norms).sum()

    @staticmethod
    def backward(ctx, grad_out):
        grads = torch._foreach_mul(list(ctx.saved_tensors), ctx.roots)
        torch._foreach_mul_(grads, 2 * grad_out)
        return (None, None, *grads)


def _check_keys(main: Mapping[str, object], **others: Mapping[str, object]) -> list[str]:
    """Names of ``main``; each must be in every other mapping, with the same shape where both have one."""
    names = list(main)
    for label, d in others.items():
        missing = [n for n in names if n not in d]
        if missing:
            raise KeyError(f"{label} lacks {len(missing)} name(s), e.g. {missing[:3]}")
        for n in names:
            a, b = getattr(main[n], "shape", None), getattr(d[n], "shape", None)
            if a is not None and b is not None and a != b:
                raise ValueError(f"{n}: shape {tuple(b)} in {label} does not match {tuple(a)}")
    return names
