"""DyTox (Douillard et al. 2022) adapted to text pairs: its loss against brute force, the TAB, and task growth."""

import math

import pytest
import torch

from frkit.methods.dytox import TaskAttentionBlock, dytox_loss
from tests.test_hat import make_method


def _log_softmax(row, tau=1.0):
    m = max(x / tau for x in row)
    z = math.log(sum(math.exp(x / tau - m) for x in row)) + m
    return [x / tau - z for x in row]


def test_loss_matches_a_brute_force_computation():
    g = torch.Generator().manual_seed(0)
    logits, old = torch.randn(3, 6, generator=g), torch.randn(3, 4, generator=g)
    targets, div, div_targets = torch.tensor([4, 5, 1]), torch.randn(3, 3, generator=g), torch.tensor([1, 2, 0])
    tau, head_div = 2.0, 0.1
    ce = -sum(_log_softmax(r)[t] for r, t in zip(logits.tolist(), targets.tolist())) / 3
    kl = 0.0
    for r, o in zip(logits.tolist(), old.tolist()):
        ls, lt = _log_softmax(r[:4], tau), _log_softmax(o, tau)
        kl += sum(math.exp(b) * (b - a) for a, b in zip(ls, lt))
    kd = kl / (3 * 4) * tau**2  # reduction="mean": over batch x old classes, as DyTox's code
    div_ce = -sum(_log_softmax(r)[t] for r, t in zip(div.tolist(), div_targets.tolist())) / 3
    a = 4 / 6
    expected = (1 - a) * ce + a * kd + head_div * div_ce
    assert dytox_loss(logits, targets, old, div, div_targets, head_div, tau).item() == pytest.approx(expected, rel=1e-5)
    assert dytox_loss(logits, targets).item() == pytest.approx(ce, rel=1e-5)  # first task: cross-entropy alone


def test_task_attention_ignores_padding_and_reads_every_real_token():
    torch.manual_seed(0)
    tab = TaskAttentionBlock(8, 2).eval()
    token, x = torch.randn(1, 1, 8), torch.randn(2, 5, 8)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    e = tab(token.expand(2, -1, -1), x, mask)
    assert e.shape == (2, 8)
    padded = torch.cat([x, torch.randn(2, 3, 8)], dim=1)  # more padding, with other values
    e2 = tab(token.expand(2, -1, -1), padded, torch.cat([mask, torch.zeros(2, 3, dtype=mask.dtype)], dim=1))
    torch.testing.assert_close(e2, e, rtol=0, atol=1e-6)
    changed = x.clone()
    changed[0, 2] += torch.randn(8)  # a real token moves the embedding
    assert not torch.allclose(tab(token.expand(2, -1, -1), changed, mask)[0], e[0])


def test_a_new_marketplace_adds_one_token_and_one_head_and_older_ones_stay_frozen(tiny_params):
    method, ms = make_method(tiny_params, name="dytox", epochs=1, dytox_memory=8)
    method.learn(0, ms[0], ms[:1])
    model = method.model
    assert list(model.tokens) == ["en"] and list(model.heads) == ["en"] and model.div_head is None
    first = method.trainable_params
    en_token = model.tokens["en"].detach().clone()
    en_head = {k: v.clone() for k, v in model.heads["en"].state_dict().items()}
    tab_before = model.tab.proj.weight.detach().clone()
    seen = []
    real_loss = method.loss

    def spy(name, old, teacher):
        inner = real_loss(name, old, teacher)

        def loss(m, batch):
            seen.append(
                (
                    batch["source"],
                    m.div_head is not None,
                    teacher is not None,
                    m.tokens["en"].requires_grad,
                    m.tokens["es"].requires_grad,
                )
            )
            return inner(m, batch)

        return loss

    method.loss = spy
    log = method.learn(1, ms[1], ms[:2])
    assert list(model.tokens) == ["en", "es"] and list(model.heads) == ["en", "es"]  # exactly one more of each
    assert torch.equal(model.tokens["en"], en_token)  # the older token is frozen ...
    assert all(torch.equal(v, en_head[k]) for k, v in model.heads["en"].state_dict().items())  # ... and its head
    assert not torch.equal(model.tab.proj.weight, tab_before)  # the TAB is shared and keeps training
    assert {s[0] for s in seen} == {"en", "es"} and log["replayed_rows"] == {"en": 8}  # rehearsal batches
    assert all(div and teacher and not en_grad and es_grad for _, div, teacher, en_grad, es_grad in seen)
    assert model.div_head is None  # the divergence head lives for one task's training only
    # encoder + TAB + the new token and head, as at the first marketplace, plus the divergence head (LayerNorm, Linear)
    dim = model.dim
    assert method.trainable_params == first + (2 * dim) + (dim * 3 + 3)
    scored_en, head = method.model_for("en")
    assert head == "en" and scored_en is model


def test_bad_dytox_options_fail_naming_the_key(tiny_params):
    from frkit.config import make_config
    from frkit.errors import FrkitInputError

    with pytest.raises(FrkitInputError, match="dytox_tau"):
        make_config(tiny_params(method="dytox", dytox_tau=0))


@pytest.mark.parametrize("dytox_lr", [None, 3e-4])
def test_encoder_trains_at_lr_and_the_fresh_parts_at_dytox_lr(tiny_params, monkeypatch, dytox_lr):
    import frkit.methods.base as base

    method, ms = make_method(tiny_params, name="dytox", epochs=1, lr=1e-5, adapter_lr=2e-3, dytox_lr=dytox_lr)
    seen, real_fit = {}, base.fit

    def spy(model, groups, *a, **kw):
        seen["groups"] = [(g["lr"], {id(p) for p in g["params"]}) for g in groups]
        return real_fit(model, groups, *a, **kw)

    monkeypatch.setattr(base, "fit", spy)
    method.learn(0, ms[0], ms[:1])
    (enc_lr, enc), (new_lr, new) = seen["groups"]
    assert enc_lr == 1e-5 and enc == {id(p) for p in method.model.encoder.parameters()}
    assert new_lr == (dytox_lr or 2e-3)
    assert new == {
        id(p)
        for p in [method.model.tokens["en"], *method.model.heads["en"].parameters(), *method.model.tab.parameters()]
    }
