"""Projection of older marketplaces' LoRA factors onto the latest marketplace's (FR-LoRA Eq. 5).

Eq. 5: for A in R^{n x d} and a target B in R^{n x m},

    P_B = A (A^T A)^{-1} A^T B,

the orthogonal projection of B's columns onto col(A). The paper assumes A^T A invertible; here
A (A^T A)^{-1} A^T is computed as A A^+ = U_r U_r^T (U_r: left singular vectors of A above a rank
tolerance), which is the same projector when A has full column rank and stays the orthogonal
projector onto col(A) when it does not (duplicate or zero columns, rank-deficient LoRA factors).

What is projected onto what (Algorithm 1, lines 14-15: "Project theta*_{LoRA,t} to the space of
theta*_{LoRA,M} using Equation 5", M = last marketplace; "for each of the two weight matrices"):
with peft's shapes A_t in R^{r x in}, B_t in R^{out x r}, Delta W_t = s B_t A_t,

    B_t' = P(B_M) B_t                          (n = out: columns of B_t onto col(B_M) in R^out)
    A_t' = (P(A_M^T) A_t^T)^T = A_t P(A_M^T)   (n = in: rows of A_t onto the row space of A_M)

A is transposed because Eq. 5 needs basis and target to share the row count n: untransposed,
n = r and col(A_M) is all of R^r for a full-rank A_M, so the projection would be the identity.
Together  Delta W_t' = P(B_M) Delta W_t P(A_M^T):  the old update restricted to the output and
input subspaces the latest adapter uses. This is invariant to the factorisation gauge
(B G, G^{-1} A) of either adapter. DoRA magnitudes are left as they are.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor

from frkit.core.fp32 import full_precision


def orthonormal_basis(a: Tensor, rtol: float | None = None) -> Tensor:
    """U_r [n, rank]: orthonormal basis of col(a); singular values <= rtol * s_max count as zero
    (default rtol = max(n, d) * machine eps of a's dtype, as ``torch.linalg.pinv``)."""
    u, s, _ = torch.linalg.svd(a, full_matrices=False)
    if rtol is None:
        rtol = max(a.shape[-2:]) * torch.finfo(a.dtype).eps
    if s.numel() == 0 or s[0] == 0:
        return u[:, :0]
    return u[:, s > rtol * s[0]]


def project_onto_column_space(m: Tensor, basis: Tensor, rtol: float | None = None) -> Tensor:
    """Eq. 5: P_M = A (A^T A)^{-1} A^T M = A A^+ M with A = ``basis`` [n, d], M = ``m`` [n, k].

    Computed as U_r (U_r^T M) (see ``orthonormal_basis``); survives rank-deficient ``basis``.
    """
    if m.shape[0] != basis.shape[0]:
        raise ValueError(f"basis {tuple(basis.shape)} and target {tuple(m.shape)} need the same number of rows")
    q = orthonormal_basis(basis, rtol)
    return q @ (q.T @ m)


def projection_residual(m: Tensor, basis: Tensor, rtol: float | None = None) -> Tensor:
    """||M - P_M||_F / ||M||_F: the share of M outside col(basis) (0 when M = 0)."""
    norm = torch.linalg.norm(m)
    if norm == 0:
        return norm
    return torch.linalg.norm(m - project_onto_column_space(m, basis, rtol)) / norm


def principal_angles(u: Tensor, v: Tensor, rtol: float | None = None) -> Tensor:
    """Principal angles (radians, ascending) between col(u) and col(v), both [n, *]: arccos of the
    singular values of Q_u^T Q_v, min(rank u, rank v) of them; computed in float64."""
    if u.shape[0] != v.shape[0]:
        raise ValueError(f"column spaces live in R^{u.shape[0]} and R^{v.shape[0]}")
    qu, qv = orthonormal_basis(u.double(), rtol), orthonormal_basis(v.double(), rtol)
    cosines = torch.linalg.svdvals(qu.T @ qv).clamp(-1.0, 1.0)
    return torch.arccos(cosines)


def project_lora_factors(
    older: Mapping[str, tuple[Tensor, Tensor]], latest: Mapping[str, tuple[Tensor, Tensor]], rtol: float | None = None
) -> dict[str, tuple[Tensor, Tensor]]:
    """Algorithm 1, lines 14-15 with Eq. 5, per adapted weight (see the module docstring):

        A' = A_t A_M^+ A_M   (rows of A_t [r_t, in] onto the row space of A_M [r_M, in])
        B' = B_M B_M^+ B_t   (columns of B_t [out, r_t] onto the column space of B_M [out, r_M])

    ``older`` and ``latest`` map a weight name to (A, B) in peft's layout; every name of ``older``
    must be in ``latest``. Returns new tensors (detached); inputs are untouched.
    """
    missing = [n for n in older if n not in latest]
    if missing:
        raise KeyError(f"latest adapter has no factors for {missing[:3]}")
    out = {}
    with full_precision():
        for name, (a_t, b_t) in older.items():
            a_m, b_m = latest[name]
            a_new = project_onto_column_space(_full(a_t).T, _full(a_m).T, rtol).T
            b_new = project_onto_column_space(_full(b_t), _full(b_m), rtol)
            out[name] = (a_new.contiguous().to(a_t.dtype), b_new.to(b_t.dtype))
    return out


def _full(t: Tensor) -> Tensor:
    """Detached, at least fp32 (half-precision factors are upcast; fp64 stays fp64)."""
    t = t.detach()
    return t.float() if t.dtype in (torch.float16, torch.bfloat16) else t
