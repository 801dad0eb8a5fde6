"""Attention distillation (AD paper §4.2-4.3): Eq. 9 KL on fusion scores, Eq. 10-11 loss composition.

Shapes: per layer l, the teacher's scores Ω_{t-1} are [batch, seq, t-1] (fusion Ψ_{t-1} over adapters
1..t-1; a one-adapter teacher M_1 has all-ones scores), the student's Ω_t are [batch, seq, t]
(fusion Ψ_t over 1..t, the new adapter LAST). ``mask`` is the tokenizer's attention mask [batch, seq].

Choices, and the paper text behind them:

* ω_t — the paper defines it as a slice, "ω_t = {Ω_t[i, j, k]; i ≤ batch_size, j ≤ max_tokens,
  k ≤ t-1}" (§4.2; Algorithm 1: "r ≤ t-1"), with no renormalisation. Default ``renormalise=False``
  keeps that literal slice. Eq. 9 is then still ≥ 0 (Σ_k ω ≤ 1, so Σ Ω log(Ω/ω) ≥ -log Σ ω ≥ 0) and
  is 0 only when the old-adapter scores equal the teacher's AND the new adapter gets no weight —
  on translated old-language batches (§4.3) "use the old adapters as M_{t-1} did". It also keeps
  the loss meaningful at t = 2, where a renormalised one-entry slice is identically 1 and the KL
  would vanish. ``renormalise=True`` (ω / Σ_{k<t} ω) instead constrains only the mix among old
  adapters and leaves the new adapter's share free — offered for ablations.
* Direction: KL(Ω_{t-1} || ω_t) = Σ Ω_{t-1} log(Ω_{t-1} / ω_t), teacher first, as Eq. 9 writes.
* Reduction: Eq. 9 sums over i (batch), j (tokens), k (adapters); padding tokens are excluded
  (their scores are computed but mean nothing). The paper has one Ω and does not say how the
  per-layer fusions combine. ``reduction="sum"`` is Eq. 9 literally (summed over layers too);
  the default ``"mean"`` sums over k, averages over the real tokens of the batch and over layers,
  so the weight of Eq. 10 does not depend on batch size, sequence length or depth.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from frkit.core.fp32 import full_precision

REDUCTIONS = ("mean", "sum")
EPS = 1e-12  # floor for log ω: a softmax can underflow to exactly 0


def old_adapter_scores(student: torch.Tensor, n_old: int, renormalise: bool = False) -> torch.Tensor:
    """ω_t = Ω_t[..., :t-1] (§4.2), optionally renormalised to sum to 1 over the old adapters."""
    if not 0 < n_old <= student.shape[-1]:
        raise ValueError(f"n_old={n_old}: expected 1..{student.shape[-1]} (the student's adapter count)")
    omega = student[..., :n_old]
    if renormalise:
        omega = omega / omega.sum(-1, keepdim=True).clamp_min(EPS)
    return omega


def attention_kl(
    teacher: torch.Tensor, student_old: torch.Tensor, mask: torch.Tensor | None = None, reduction: str = "mean"
) -> torch.Tensor:
    """Eq. 9 for one layer: Σ_{i,j,k} Ω log(Ω/ω) over real tokens ("sum"), or / #real tokens ("mean").

    teacher Ω_{t-1} and student_old ω_t: [batch, seq, t-1]; mask: [batch, seq], 1 = real token.
    """
    if teacher.shape != student_old.shape:
        raise ValueError(
            f"teacher scores {tuple(teacher.shape)} vs student old-adapter scores "
            f"{tuple(student_old.shape)}: expected the same [batch, seq, t-1]"
        )
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction {reduction!r}: expected one of {REDUCTIONS}")
    teacher = teacher.detach().float()  # fixed (Ψ_{t-1} frozen); float32: bf16 logs are too coarse
    student_old = student_old.float()
    # xlogy: 0·log 0 = 0 where the teacher gives an adapter no weight
    per_token = (torch.xlogy(teacher, teacher) - teacher * student_old.clamp_min(EPS).log()).sum(-1)  # [b, s]
    if mask is None:
        mask = torch.ones(per_token.shape, device=per_token.device)
    mask = mask.to(per_token.dtype)
    total = (per_token * mask).sum()
    return total if reduction == "sum" else total / mask.sum().clamp_min(1.0)


def attention_distillation_loss(
    teacher: Mapping[int, torch.Tensor],
    student: Mapping[int, torch.Tensor],
    mask: torch.Tensor | None = None,
    renormalise: bool = False,
    reduction: str = "mean",
) -> torch.Tensor:
    """L_AD (Eq. 9) over all fusion layers: teacher {layer: Ω_{t-1}}, student {layer: Ω_t}.

    The student has one more adapter than the teacher (t vs t-1): ω_t is its first t-1 scores.
    "mean": average of the per-layer token means; "sum": sum over layers of the per-layer sums.
    """
    if set(teacher) != set(student) or not teacher:
        raise ValueError(f"teacher layers {sorted(teacher)} and student layers {sorted(student)} must match")
    with full_precision():  # Eq. 9 in fp32 inside a bf16 training step
        return _layer_losses(teacher, student, mask, renormalise, reduction)


def _layer_losses(teacher, student, mask, renormalise: bool, reduction: str) -> torch.Tensor:
    losses = []
    for layer in sorted(teacher):
        n_old = teacher[layer].shape[-1]
        if student[layer].shape[-1] != n_old + 1:
            raise ValueError(
                f"layer {layer}: student fuses {student[layer].shape[-1]} adapters, teacher "
                f"{n_old}; expected the student over the teacher's adapters plus the new one"
            )
        omega = old_adapter_scores(student[layer], n_old, renormalise)
        losses.append(attention_kl(teacher[layer], omega, mask, reduction))
    stacked = torch.stack(losses)
    return stacked.sum() if reduction == "sum" else stacked.mean()


def total_loss(
    task_loss: torch.Tensor | None = None, ad_loss: torch.Tensor | None = None, ad_weight: float = 1.0
) -> torch.Tensor:
    """Eq. 10: L_total = L_t + λ·L_AD (the paper: λ = 1).

    Eq. 11 / Algorithm 1: with translation, a batch from D_t contributes its cross-entropy L_t
    only, a batch from a translated T_k (k < t) its L_AD only (teacher M_{t-1} and student M_t
    both see it); without translation (§4.2) every batch of D_t contributes both terms.
    Pass what the batch has; the missing term counts as 0.
    """
    if task_loss is None and ad_loss is None:
        raise ValueError("total_loss needs task_loss and/or ad_loss")
    terms = ([task_loss] if task_loss is not None else []) + ([ad_weight * ad_loss] if ad_loss is not None else [])
    return sum(terms[1:], terms[0])
