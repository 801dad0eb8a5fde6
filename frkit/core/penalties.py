"""FR-LoRA's regularisers: EWC (Eq. 2) on the base model, the inverse-Fisher LoRA penalty (Eq. 4),
and how the Fisher is carried from one marketplace to the next.

Both penalties are a weighted sum of squares sum_i w_i x_i^2 with w >= 0; it is computed with
``torch._foreach_*`` kernels (a handful of launches for hundreds of tensors) and a hand-written
backward 2 w x, so adding a penalty to a training step costs a few memory passes over the
penalised tensors, not ~4 kernels and temporaries per parameter tensor each way.
"""

from __future__ import annotations

import weakref
import zlib
from collections import OrderedDict
from collections.abc import Mapping

import torch
from torch import Tensor

from frkit.core.fp32 import full_precision

CARRY_MODES = ("latest", "accumulate", "average")
FR_WEIGHTINGS = ("fisher", "uniform", "shuffled")


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
    names = list(fisher)
    _require(names, params=params, anchor=anchor)
    if not names:
        return torch.zeros(())
    xs = [params[n] for n in names]
    return (lam / 2) * _weighted_squares([fisher[n] for n in names], [anchor[n] for n in names], xs, names)


def fr_inverse_fisher(fisher: Mapping[str, Tensor], eps: float, names=None) -> dict[str, Tensor]:
    """The weights of Eq. 4, 1 / ((F_t)_{ij} + eps), for ``names`` (default: all); compute once per
    marketplace, not per step."""
    if eps <= 0:
        raise ValueError(f"eps must be > 0 (it keeps 1/(F+eps) finite), got {eps}")
    names = list(fisher) if names is None else list(names)
    _require(names, fisher=fisher)
    return {n: torch.reciprocal(fisher[n].detach() + eps) for n in names}


def fr_uniform_weights(inv_fisher: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Mechanism control for Eq. 4 (issue 29): each matrix's weights 1/(F+eps) replaced by their mean over that matrix.

    The penalty becomes a plain L2 brake (beta/2) sum_n c_n ||Delta W_n||^2 of *equal total strength*: for every
    adapted matrix n, sum_ij c_n = sum_ij 1/((F_n)_ij + eps), so each matrix's weights add up to what Eq. 4's do. Why
    the sum (mean) of the weights and not 1/(mean F + eps), the issue's "beta x mean Fisher" taken literally: for an
    update with the same squared size everywhere (Delta W_ij^2 = d^2, or any update whose entries are exchangeable,
    in expectation) the penalty is (beta/2) d^2 sum_ij w_ij, so equal sums keep the penalty's total the same from
    the first step on, and the control changes only *where* the brake acts. 1/(mean F + eps) is, by Jensen, at most
    that mean (far less where F < eps for many weights, which Eq. 4 weighs by 1/eps), so it would change strength and
    placement at once. Per matrix, not over all of them, for the same reason: the shuffled control keeps each
    matrix's weights too, so uniform, shuffled and Fisher differ in the placement inside a matrix only.
    Constant (no gradient), the dtype of the weights; the mean is taken in float64."""
    return {n: torch.full_like(w, float(w.detach().double().mean())) for n, w in inv_fisher.items()}


def fr_shuffled_weights(inv_fisher: Mapping[str, Tensor], seed: int) -> dict[str, Tensor]:
    """Mechanism control for Eq. 4 (issue 29): each matrix's weights 1/(F+eps) permuted within that matrix.

    The same values (each matrix keeps its multiset of weights, hence its sum, mean and spread) in the wrong places:
    if the Fisher *placement* is what helps, this control loses it; if any brake of that strength does, it does not.
    The permutation of matrix ``n`` is seeded by ``seed`` and the name (CRC-32), so it does not depend on the order
    of the mapping and differs between matrices of equal shape; drawn on the CPU, so it is the same on every device.
    """
    out = {}
    for n, w in inv_fisher.items():
        generator = torch.Generator().manual_seed((seed * 1_000_003 + zlib.crc32(n.encode())) % 2**63)
        order = torch.randperm(w.numel(), generator=generator).to(w.device)
        out[n] = w.detach().reshape(-1)[order].reshape(w.shape)
    return out


def fr_weights(inv_fisher: Mapping[str, Tensor], weighting: str, seed: int = 0) -> dict[str, Tensor]:
    """The weights Eq. 4 applies: ``"fisher"`` (DEFAULT) 1/(F+eps) as they are (the dict is returned unchanged),
    or a control (``fr_uniform_weights``, ``fr_shuffled_weights``; ``seed`` only for ``"shuffled"``)."""
    if weighting == "fisher":
        return dict(inv_fisher)
    if weighting == "uniform":
        return fr_uniform_weights(inv_fisher)
    if weighting == "shuffled":
        return fr_shuffled_weights(inv_fisher, seed)
    raise ValueError(f"weighting must be one of {FR_WEIGHTINGS}, got {weighting!r}")


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
    names = list(delta_w)
    _require(names, inv_fisher=inv_fisher)
    if not names:
        return torch.zeros(())
    xs = [delta_w[n] for n in names]
    return (beta / 2) * _weighted_squares([inv_fisher[n] for n in names], None, xs, names)


def combine_fisher(
    old: Mapping[str, Tensor] | None,
    new: Mapping[str, Tensor],
    mode: str = "latest",
    step: int | None = None,
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


def _weighted_squares(weights: list[Tensor], anchors: list[Tensor] | None, xs: list[Tensor], names) -> Tensor:
    roots = _roots(weights)
    if any(r.dtype != x.dtype for r, x in zip(roots, xs)):
        roots = [r.to(x.dtype) for r, x in zip(roots, xs)]
    try:
        with full_precision():  # Eq. 2 / 4 in fp32 inside a bf16 training step
            return _WeightedSquares.apply(roots, anchors, *xs)
    except RuntimeError:  # name the culprit instead of a foreach shape error
        for n, r, x in zip(names, roots, xs):
            if r.shape != x.shape:
                raise ValueError(
                    f"{n}: weights of shape {tuple(r.shape)} for a tensor of shape {tuple(x.shape)}"
                ) from None
        raise


_ROOTS: OrderedDict[tuple, tuple[list[weakref.ref], list[Tensor]]] = OrderedDict()


def _roots(weights: list[Tensor]) -> list[Tensor]:
    """sqrt of the weights, memoised: a Fisher is fixed for a whole marketplace, so a training step
    should not pay a model-sized sqrt. Keyed on tensor identity and version (in-place edits
    invalidate); weak references confirm the very tensors are still alive (ids get recycled)."""
    key = tuple((id(w), w._version) for w in weights)
    hit = _ROOTS.get(key)
    if hit is not None and all(ref() is w for ref, w in zip(hit[0], weights)):
        return hit[1]
    with torch.no_grad():
        roots = torch._foreach_sqrt([w.detach() for w in weights])
    _ROOTS[key] = ([weakref.ref(w) for w in weights], roots)
    while len(_ROOTS) > 2:  # the EWC Fisher and the FR weights of the current marketplace
        _ROOTS.popitem(last=False)
    return roots


class _WeightedSquares(torch.autograd.Function):
    """sum_i ||r_i * (x_i - a_i)||^2 with r_i = sqrt(w_i) on foreach kernels; backward 2 r_i^2 (x_i - a_i).

    The sqrt form needs one temporary per tensor (updated in place) and one fused norm: on CPU,
    fresh allocations of model-sized temporaries, not arithmetic, dominate this cost.
    """

    @staticmethod
    def forward(ctx, roots, anchors, *xs):
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


def _require(names: list[str], **mappings: Mapping[str, object]) -> None:
    for label, d in mappings.items():
        missing = [n for n in names if n not in d]
        if missing:
            raise KeyError(f"{label} lacks {len(missing)} name(s), e.g. {missing[:3]}")
