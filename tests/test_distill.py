"""Attention distillation (Eq. 9-11) against explicit loops, and gradient flow into the student fusion."""

from __future__ import annotations

import math

import pytest
import torch
from transformers import BertConfig, BertModel

from frkit.core.distill import attention_distillation_loss, attention_kl, old_adapter_scores, total_loss
from frkit.models.adapters import AdapterStack


def probs(*shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.softmax(torch.randn(*shape, generator=g), dim=-1)


def loop_kl(teacher, student, mask, n_old, renormalise):
    """Eq. 9 with explicit loops over batch i, token j, old adapter k; padding skipped."""
    total, tokens = 0.0, 0
    b, s, _ = student.shape
    for i in range(b):
        for j in range(s):
            if not mask[i, j]:
                continue
            tokens += 1
            norm = sum(student[i, j, k].item() for k in range(n_old)) if renormalise else 1.0
            for k in range(n_old):
                p, q = teacher[i, j, k].item(), student[i, j, k].item() / norm
                total += p * math.log(p / q)
    return total, tokens


MASK = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [1, 0, 0, 0, 0]])


@pytest.mark.parametrize("renormalise", [False, True])
def test_layer_kl_matches_loops_with_mask(renormalise):
    teacher, student = probs(3, 5, 2, seed=1), probs(3, 5, 3, seed=2)
    omega = old_adapter_scores(student, 2, renormalise)
    total, tokens = loop_kl(teacher, student, MASK, 2, renormalise)
    assert attention_kl(teacher, omega, MASK, "sum").item() == pytest.approx(total, rel=1e-5)
    assert attention_kl(teacher, omega, MASK, "mean").item() == pytest.approx(total / tokens, rel=1e-5)
    # padding is really ignored: garbage in padded positions changes nothing
    noisy = student.clone()
    noisy[1, 3:] = probs(2, 3, seed=9)
    noisy_kl = attention_kl(teacher, old_adapter_scores(noisy, 2, renormalise), MASK)
    assert noisy_kl.item() == pytest.approx(total / tokens, rel=1e-5)


@pytest.mark.parametrize("renormalise", [False, True])
def test_multi_layer_loss_matches_loops(renormalise):
    teacher = {0: probs(3, 5, 2, seed=1), 1: probs(3, 5, 2, seed=3)}
    student = {0: probs(3, 5, 3, seed=2), 1: probs(3, 5, 3, seed=4)}
    per_layer = [loop_kl(teacher[layer], student[layer], MASK, 2, renormalise) for layer in (0, 1)]
    got_sum = attention_distillation_loss(teacher, student, MASK, renormalise, reduction="sum").item()
    got_mean = attention_distillation_loss(teacher, student, MASK, renormalise, reduction="mean").item()
    assert got_sum == pytest.approx(sum(t for t, _ in per_layer), rel=1e-5)
    assert got_mean == pytest.approx(sum(t / n for t, n in per_layer) / 2, rel=1e-5)


def test_slice_semantics_at_t2_and_minimum():
    teacher = {0: torch.ones(2, 4, 1)}  # M_1: one adapter, scores all 1
    student = {0: probs(2, 4, 2, seed=5)}
    # the paper's slice: -log ω_1 > 0, pushes the new adapter's share to 0 on old-language data
    expected = -student[0][..., 0].log().mean().item()
    assert attention_distillation_loss(teacher, student).item() == pytest.approx(expected, rel=1e-5)
    # renormalised, a one-entry slice is always 1: the loss vanishes at t = 2
    assert attention_distillation_loss(teacher, student, renormalise=True).item() == pytest.approx(0.0, abs=1e-6)
    # zero exactly when old scores equal the teacher's and the new adapter gets nothing
    t3 = probs(2, 4, 2, seed=6)
    s3 = torch.cat([t3, torch.zeros(2, 4, 1)], -1)
    assert attention_distillation_loss({0: t3}, {0: s3}).item() == pytest.approx(0.0, abs=1e-6)


def test_shape_checks():
    with pytest.raises(ValueError, match="plus the new one"):
        attention_distillation_loss({0: probs(1, 2, 2)}, {0: probs(1, 2, 2)})
    with pytest.raises(ValueError, match="must match"):
        attention_distillation_loss({0: probs(1, 2, 2)}, {1: probs(1, 2, 3)})


def test_total_loss_eq_10_11():
    ce, kl = torch.tensor(0.7), torch.tensor(0.2)
    assert total_loss(ce, kl).item() == pytest.approx(0.9)
    assert total_loss(ce, kl, ad_weight=0.5).item() == pytest.approx(0.8)
    assert total_loss(task_loss=ce).item() == pytest.approx(0.7)  # a D_t batch (Eq. 11)
    assert total_loss(ad_loss=kl).item() == pytest.approx(0.2)  # a translated T_k batch
    with pytest.raises(ValueError):
        total_loss()


def test_kl_gradient_reaches_student_fusion_through_captured_scores():
    torch.manual_seed(0)
    enc = BertModel(
        BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64),
        add_pooling_layer=False,
    )
    stack = AdapterStack(enc)
    for lang in ("en", "es", "ja"):
        stack.add_adapter(lang)
    stack.add_fusion("f2", ["en", "es"])  # Ψ_{t-1}, the teacher's
    stack.add_fusion("f3", ["en", "es", "ja"])  # Ψ_t, the student's
    stack.freeze_all_but(fusions=["f3"])
    ids = torch.randint(5, 100, (2, 6))
    mask = torch.tensor([[1] * 6, [1, 1, 1, 1, 0, 0]])
    with stack.teacher(fusion="f2"):
        enc(input_ids=ids, attention_mask=mask)
        teacher = stack.attention_scores()
    stack.set_active(fusion="f3")
    enc.train()
    with stack.capturing():
        enc(input_ids=ids, attention_mask=mask)
        student = stack.attention_scores()
    loss = attention_distillation_loss(teacher, student, mask)
    assert loss.item() > 0 and loss.grad_fn is not None
    loss.backward()
    for layer in stack.layers.values():
        f3, f2 = layer.fusions["f3"], layer.fusions["f2"]
        assert f3.query.weight.grad.abs().sum() > 0 and f3.key.weight.grad.abs().sum() > 0
        assert f2.query.weight.grad is None  # the teacher stays fixed
