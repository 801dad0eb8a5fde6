"""Eq. 4's mechanism controls (issue 29): uniform and shuffled weights against brute-force references."""

from __future__ import annotations

import pytest
import torch

from frkit.core.penalties import (
    fr_inverse_fisher,
    fr_penalty_precomputed,
    fr_shuffled_weights,
    fr_uniform_weights,
    fr_weights,
)


def _inverse_fisher(seed=0):
    g = torch.Generator().manual_seed(seed)
    # a Fisher with many entries below eps, as in the runs: there 1/eps, not the Fisher, sets the weight
    fisher = {
        f"layer.{i}.{p}.weight": torch.rand(shape, generator=g) ** 6 * 1e-6
        for i, shape in enumerate(((6, 6), (6, 6), (4, 8)))
        for p in ("query",)
    }
    return fr_inverse_fisher(fisher, 1e-8)


def test_uniform_keeps_each_matrix_sum_of_weights_and_is_constant():
    inv = _inverse_fisher()
    uniform = fr_uniform_weights(inv)
    assert list(uniform) == list(inv)
    for n, w in inv.items():
        u = uniform[n]
        assert u.shape == w.shape and u.dtype == w.dtype
        assert torch.all(u == u.flatten()[0])  # one value in the whole matrix: a plain L2 brake
        brute = sum(w.double().flatten().tolist())  # Eq. 4's total weight of this matrix, summed by hand
        assert u.double().sum().item() == pytest.approx(brute, rel=1e-6)
        # not 1/(mean F + eps): that is smaller (Jensen) and would change the brake's strength too
        assert u.flatten()[0].item() > 1.0 / (1.0 / w.double()).mean().item()


def test_uniform_keeps_the_penalty_of_an_even_update():
    """Equal total strength as the docstring defines it: for Delta W_ij^2 = d^2 everywhere the penalties agree."""
    inv = _inverse_fisher(1)
    even = {n: torch.full_like(w, 0.3) for n, w in inv.items()}
    fisher_penalty = fr_penalty_precomputed(even, inv, 1e-4).item()
    assert fr_penalty_precomputed(even, fr_uniform_weights(inv), 1e-4).item() == pytest.approx(fisher_penalty, rel=1e-5)
    # and an uneven update is braked differently: the control changes the placement, not the total
    g = torch.Generator().manual_seed(5)
    uneven = {n: torch.randn(w.shape, generator=g) for n, w in inv.items()}
    assert fr_penalty_precomputed(uneven, fr_uniform_weights(inv), 1e-4).item() != pytest.approx(
        fr_penalty_precomputed(uneven, inv, 1e-4).item(), rel=1e-3
    )


def test_shuffled_is_a_seeded_permutation_within_each_matrix():
    inv = _inverse_fisher(2)
    shuffled = fr_shuffled_weights(inv, seed=7)
    for n, w in inv.items():
        s = shuffled[n]
        assert s.shape == w.shape
        assert sorted(s.flatten().tolist()) == sorted(w.flatten().tolist())  # the same multiset of weights
        assert not torch.equal(s, w)  # in other places
    again = fr_shuffled_weights(dict(reversed(list(inv.items()))), seed=7)  # order of the mapping does not matter
    assert all(torch.equal(again[n], shuffled[n]) for n in inv)
    other = fr_shuffled_weights(inv, seed=8)
    assert any(not torch.equal(other[n], shuffled[n]) for n in inv)
    # two matrices of the same shape get different permutations (the name is in the seed)
    a, b = "layer.0.query.weight", "layer.1.query.weight"
    same = {a: torch.arange(36.0).reshape(6, 6), b: torch.arange(36.0).reshape(6, 6)}
    perm = fr_shuffled_weights(same, seed=0)
    assert not torch.equal(perm[a], perm[b])


def test_fr_weights_dispatch():
    inv = _inverse_fisher(3)
    fisher = fr_weights(inv, "fisher")
    assert all(fisher[n] is inv[n] for n in inv)  # the default is Eq. 4 itself: the very tensors
    assert all(torch.equal(fr_weights(inv, "uniform")[n], fr_uniform_weights(inv)[n]) for n in inv)
    assert all(torch.equal(fr_weights(inv, "shuffled", seed=4)[n], fr_shuffled_weights(inv, 4)[n]) for n in inv)
    with pytest.raises(ValueError, match="weighting"):
        fr_weights(inv, "random")
