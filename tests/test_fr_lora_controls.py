"""FR-LoRA's mechanism controls (issue 29) through the runner: the weights Stage II really applies."""

from __future__ import annotations

import pytest
import torch

import frkit.methods.fr_lora as fr_lora
from frkit.config import make_config
from frkit.errors import FrkitInputError
from frkit.runner import run


def _weights_used(tiny_params, monkeypatch, **kw):
    """{marketplace step: (Eq. 4's 1/(F+eps), the weights the penalty used)} of a tiny fr_lora run."""
    made, used = [], []
    real_inverse, real_penalty = fr_lora.fr_inverse_fisher, fr_lora.fr_penalty_precomputed

    def inverse(*args, **kwargs):
        made.append(real_inverse(*args, **kwargs))
        return made[-1]

    def penalty(delta_w, inv_fisher, beta):
        if len(used) < len(made):  # the first training step of each marketplace
            used.append({k: v.detach().clone() for k, v in inv_fisher.items()})
        return real_penalty(delta_w, inv_fisher, beta)

    monkeypatch.setattr(fr_lora, "fr_inverse_fisher", inverse)
    monkeypatch.setattr(fr_lora, "fr_penalty_precomputed", penalty)
    result = run(
        make_config(tiny_params(method="fr_lora", epochs=1, marketplaces=["en", "es"], beta=1e-4, **kw)),
        show_progress=False,
    )
    assert len(made) == len(used) == 2  # one Stage II per marketplace
    return result, list(zip(made, used))


def test_fisher_weighting_is_eq4_itself(tiny_params, monkeypatch):
    _, pairs = _weights_used(tiny_params, monkeypatch)
    for made, used in pairs:
        assert all(torch.equal(made[k], used[k]) for k in made)


def test_uniform_control_keeps_each_matrix_total(tiny_params, monkeypatch):
    result, pairs = _weights_used(tiny_params, monkeypatch, fr_weighting="uniform")
    for made, used in pairs:
        assert list(used) == list(made)
        for k, w in made.items():
            assert torch.all(used[k] == used[k].flatten()[0])
            assert used[k].double().sum().item() == pytest.approx(w.double().sum().item(), rel=1e-5)
    assert result.auc_matrix.shape == (2, 2)


def test_shuffled_control_permutes_within_each_matrix(tiny_params, monkeypatch):
    _, pairs = _weights_used(tiny_params, monkeypatch, fr_weighting="shuffled")
    moved = 0
    for made, used in pairs:
        for k, w in made.items():
            assert sorted(used[k].flatten().tolist()) == sorted(w.flatten().tolist())
            moved += not torch.equal(used[k], w)
    assert moved  # the weights did move


def test_a_control_at_beta_zero_is_refused(tiny_params):
    with pytest.raises(FrkitInputError, match="fr_weighting"):
        make_config(tiny_params(method="fr_lora", beta=0.0, fr_weighting="shuffled"))
