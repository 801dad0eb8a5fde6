"""Eq. 5 projection, against the explicit (pseudo-)inverse, and its use on LoRA factors."""

from __future__ import annotations

import math

import pytest
import torch

from frkit.core.projection import (
    orthonormal_basis,
    principal_angles,
    project_lora_factors,
    project_onto_column_space,
    projection_residual,
)


def rand(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def test_matches_eq5_and_pinv_full_rank():
    a, b = rand(7, 3), rand(7, 4, seed=1)
    eq5 = a @ torch.linalg.inv(a.T @ a) @ a.T @ b  # Eq. 5 as printed
    assert torch.allclose(project_onto_column_space(b, a), eq5, atol=1e-12)
    assert torch.allclose(project_onto_column_space(b, a), a @ torch.linalg.pinv(a) @ b, atol=1e-12)


def test_idempotent_and_residual_orthogonal():
    a, m = rand(6, 2), rand(6, 5, seed=2)
    pm = project_onto_column_space(m, a)
    assert torch.allclose(project_onto_column_space(pm, a), pm, atol=1e-12)  # P P M = P M
    assert torch.allclose(a.T @ (m - pm), torch.zeros(2, 5, dtype=a.dtype), atol=1e-12)  # residual _|_ col(A)
    assert projection_residual(pm, a).item() == pytest.approx(0.0, abs=1e-12)
    assert projection_residual(m, a).item() == pytest.approx(float((m - pm).norm() / m.norm()))
    assert projection_residual(torch.zeros(6, 2, dtype=torch.float64), a).item() == 0.0


@pytest.mark.parametrize("make", ["duplicate", "zero", "all_zero"])
def test_rank_deficient_basis(make):
    a, m = rand(5, 2), rand(5, 3, seed=4)
    if make == "duplicate":
        basis = torch.cat([a, a[:, :1], 2 * a[:, 1:]], 1)  # rank 2, A^T A singular
    elif make == "zero":
        basis = torch.cat([a, torch.zeros(5, 1, dtype=a.dtype)], 1)
    else:
        basis = torch.zeros(5, 3, dtype=a.dtype)
    pm = project_onto_column_space(m, basis)
    assert torch.isfinite(pm).all()
    assert torch.allclose(pm, basis @ torch.linalg.pinv(basis) @ m, atol=1e-10)
    if make != "all_zero":
        assert torch.allclose(pm, project_onto_column_space(m, a), atol=1e-10)  # the same column space
        assert orthonormal_basis(basis).shape == (5, 2)
    assert torch.allclose(project_onto_column_space(pm, basis), pm, atol=1e-10)


def test_principal_angles():
    e = torch.eye(3, dtype=torch.float64)
    u = e[:, :2]  # the xy-plane
    theta = 0.3
    v = torch.stack([e[:, 0], math.cos(theta) * e[:, 1] + math.sin(theta) * e[:, 2]], 1)
    assert torch.allclose(principal_angles(u, v), torch.tensor([0.0, theta], dtype=torch.float64), atol=1e-7)
    assert torch.allclose(principal_angles(u, u @ rand(2, 2)), torch.zeros(2, dtype=torch.float64), atol=1e-7)
    assert torch.allclose(principal_angles(u, e[:, 2:]), torch.tensor([math.pi / 2], dtype=torch.float64))


def test_project_lora_factors_semantics():
    out_dim, in_dim = 8, 10
    a_t, b_t = rand(3, in_dim, seed=5), rand(out_dim, 3, seed=6)  # older marketplace, rank 3
    a_m, b_m = rand(2, in_dim, seed=7), rand(out_dim, 2, seed=8)  # latest marketplace, rank 2
    ((a_new, b_new),) = project_lora_factors({"w": (a_t, b_t)}, {"w": (a_m, b_m)}).values()
    assert a_new.shape == a_t.shape and b_new.shape == b_t.shape
    assert torch.allclose(b_new, b_m @ torch.linalg.pinv(b_m) @ b_t, atol=1e-10)  # columns onto col(B_M)
    assert torch.allclose(a_new, a_t @ torch.linalg.pinv(a_m) @ a_m, atol=1e-10)  # rows onto row(A_M)
    # Delta W' = P(B_M) Delta W P(A_M^T): the old update restricted to the latest update's subspaces
    p_out, p_in = b_m @ torch.linalg.pinv(b_m), torch.linalg.pinv(a_m) @ a_m
    assert torch.allclose(b_new @ a_new, p_out @ (b_t @ a_t) @ p_in, atol=1e-10)
    # independent of the factorisation gauge (B G, G^-1 A) of either adapter
    g = rand(3, 3, seed=9) + 3 * torch.eye(3, dtype=torch.float64)
    h = rand(2, 2, seed=10) + 3 * torch.eye(2, dtype=torch.float64)
    ((a2, b2),) = project_lora_factors(
        {"w": (torch.linalg.inv(g) @ a_t, b_t @ g)}, {"w": (torch.linalg.inv(h) @ a_m, b_m @ h)}
    ).values()
    assert torch.allclose(b2 @ a2, b_new @ a_new, atol=1e-10)
    # the latest adapter projected onto itself is unchanged
    ((a_same, b_same),) = project_lora_factors({"w": (a_m, b_m)}, {"w": (a_m, b_m)}).values()
    assert torch.allclose(a_same, a_m, atol=1e-10) and torch.allclose(b_same, b_m, atol=1e-10)
    with pytest.raises(KeyError):
        project_lora_factors({"w": (a_t, b_t), "v": (a_t, b_t)}, {"w": (a_m, b_m)})
