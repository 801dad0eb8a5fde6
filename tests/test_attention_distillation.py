"""Attention Distillation follows Algorithm 1: what trains, what the teacher is, which batches get which loss."""

import json

import numpy as np
import pytest
import torch

import frkit.methods.attention_distillation as ad_module
import frkit.methods.base as base
from frkit.config import make_config
from frkit.methods import METHODS
from frkit.methods.base import MethodContext
from frkit.models.encoder import load_tokenizer
from frkit.runner import load_configured_marketplaces, run


def _method(tiny_params, **kw):
    cfg = make_config(tiny_params(method="attention_distillation", epochs=1, **kw))
    ms = load_configured_marketplaces(cfg)
    ctx = MethodContext(cfg, cfg.model_name_or_path, load_tokenizer(cfg.model_name_or_path), show_progress=False)
    return METHODS[cfg.method](cfg, ctx), ms


def _snapshot(module):
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def test_second_step_trains_only_new_adapter_fusion_and_keeps_the_teacher(tiny_params, monkeypatch):
    method, ms = _method(tiny_params)
    method.learn(0, ms[0], ms[:1])
    before = _snapshot(method.model)
    sources, kls = [], []
    real = ad_module.attention_distillation_loss

    def spy(teacher, student, mask, renorm, reduction):
        assert reduction == "mean" and renorm is False  # the defaults reach Eq. 9
        out = real(teacher, student, mask, renorm, reduction)
        kls.append(out.item())
        assert out.requires_grad  # the student's captured scores carry the graph
        return out

    monkeypatch.setattr(ad_module, "attention_distillation_loss", spy)
    real_loss = method.distillation_loss

    def tracking(step, head, with_translation):
        inner = real_loss(step, head, with_translation)

        def loss(model, batch):
            sources.append(batch.get("source"))
            return inner(model, batch)

        return loss

    method.distillation_loss = tracking
    log = method.learn(1, ms[1], ms[:2])
    after = _snapshot(method.model)
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    # the base, adapter 1 and head 1 (the teacher M_1) are untouched; adapter 2 / fusion / head 2 are new keys
    assert not changed, sorted(changed)[:5]
    assert "translated" in sources and "new" in sources
    assert len(kls) == sources.count("translated") and max(kls) > 0  # KL only on translated batches
    assert log["translated_rows"]["en"] > 0
    counts = method.stack.parameter_counts()
    # the stack's sizes: the base is exactly the plain encoder, both language adapters have one size, one fusion
    from frkit.models.encoder import load_encoder

    assert counts["base"] == sum(p.numel() for p in load_encoder(method.ctx.model_source).parameters())
    assert counts["adapter:en"] == counts["adapter:es"] > 0
    assert set(counts) == {"base", "adapter:en", "adapter:es", "fusion:fusion_1"} and counts["fusion:fusion_1"] > 0
    # what step 2 trained (Table 1's last column): its adapter and head (step 1 of Algorithm 1), then the fusion
    head = sum(p.numel() for p in method.model.heads["es"].parameters())
    assert method.trainable_params == counts["fusion:fusion_1"] + counts["adapter:es"] + head


def test_from_the_third_step_the_teacher_is_the_previous_fusion_and_eq10_weights_the_kl(tiny_params, monkeypatch):
    """At t = 3 the teacher M_2 is fusion_1 over adapters 1-2 (not adapter 1 alone): the scores it distils equal
    what M_2 gives on the same batch, read back after the step. A translated batch's loss is distill_weight x the
    Eq. 9 KL (Eq. 10-11); a D_t batch's is its task loss, with no KL computed."""
    method, ms = _method(tiny_params, distill_weight=0.5)
    assert len(ms) == 3
    method.learn(0, ms[0], ms[:1])
    method.learn(1, ms[1], ms[:2])
    kls, records = [], []
    real_kl = ad_module.attention_distillation_loss

    def spy(teacher, student, mask, renorm, reduction):
        out = real_kl(teacher, student, mask, renorm, reduction)
        kls.append(({layer: t.detach().clone() for layer, t in teacher.items()}, out.item()))
        return out

    monkeypatch.setattr(ad_module, "attention_distillation_loss", spy)
    real_loss = method.distillation_loss

    def tracking(step, head, with_translation):
        inner = real_loss(step, head, with_translation)

        def loss(model, batch):
            before = len(kls)
            out = inner(model, batch)
            tensors = {k: v.detach().clone() for k, v in batch.items() if torch.is_tensor(v)}
            records.append((batch.get("source"), tensors, out.item(), kls[before] if len(kls) > before else None))
            return out

        return loss

    method.distillation_loss = tracking
    method.learn(2, ms[2], ms)
    translated = [r for r in records if r[0] == "translated"]
    new = [r for r in records if r[0] == "new"]
    assert translated and new
    assert all(kl is None for _, _, _, kl in new)  # D_t batches: task loss only
    for _, _, value, (teacher, kl) in translated:
        assert value == pytest.approx(0.5 * kl, rel=1e-6) and kl > 0
        assert all(t.shape[-1] == 2 for t in teacher.values())  # the teacher fuses the two older adapters
    # M_2 (fusion_1, adapters en and es, the base: all frozen in step 3) on the first translated batch, read again
    _, batch, _, (teacher, _) = translated[0]
    inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "token_type_ids") if k in batch}
    method.stack.set_active(fusion="fusion_1")
    method.model.eval()
    with torch.no_grad(), method.stack.capturing():
        method.model.encoder(**inputs)
        again = method.stack.attention_scores()
    assert set(again) == set(teacher)
    for layer in teacher:
        torch.testing.assert_close(again[layer], teacher[layer])


def test_distill_reduction_and_language_adapter_lr_reach_the_training(tiny_params, monkeypatch):
    method, ms = _method(tiny_params, distill_reduction="sum", language_adapter_lr=5e-5, translate_fraction=0.0)
    lrs, reductions = [], []
    real_train, real_kl = method.train, ad_module.attention_distillation_loss

    def train(model, params, marketplace, head, lr, step, **kw):
        if kw.get("stage") is None:  # the language adapters (the fusion stage is stage="fusion")
            lrs.append(lr)
        return real_train(model, params, marketplace, head, lr, step, **kw)

    def spy(teacher, student, mask, renorm, reduction):
        reductions.append(reduction)
        return real_kl(teacher, student, mask, renorm, reduction)

    method.train = train
    monkeypatch.setattr(ad_module, "attention_distillation_loss", spy)
    method.learn(0, ms[0], ms[:1])
    method.learn(1, ms[1], ms[:2])
    assert lrs == [5e-5, 5e-5]  # Appendix B's rate for both language adapters, not adapter_lr
    assert reductions and set(reductions) == {"sum"}


def test_without_translation_every_batch_gets_task_and_distillation(tiny_params, monkeypatch):
    method, ms = _method(tiny_params, translate_fraction=0.0)
    method.learn(0, ms[0], ms[:1])
    calls = []
    real = ad_module.attention_distillation_loss
    monkeypatch.setattr(ad_module, "attention_distillation_loss", lambda *a: calls.append(1) or real(*a))
    log = method.learn(1, ms[1], ms[:2])
    assert log["translated_rows"] == {}
    assert len(calls) == log["fusion"]["steps"]  # one KL per optimiser step, on the D_t batch itself


def test_attention_distillation_resumes_exactly(tiny_params, monkeypatch):

    params = tiny_params(method="attention_distillation", run_name="ad_ref", epochs=1)
    reference = run(make_config(params), show_progress=False)
    real_fit = base.fit
    calls = {"n": 0}

    class Stop(KeyboardInterrupt):
        pass

    def stopping_fit(*a, **kw):
        if kw["desc"].endswith(":fusion"):
            calls["n"] += 1
            if calls["n"] == 2:  # the fusion of ja (step 2)
                raise Stop()
        return real_fit(*a, **kw)

    monkeypatch.setattr(base, "fit", stopping_fit)
    cfg = make_config({**params, "run_name": "ad_stopped"})
    with pytest.raises(Stop):
        run(cfg, show_progress=False)
    monkeypatch.setattr(base, "fit", real_fit)
    resumed = run(cfg, show_progress=False)
    np.testing.assert_allclose(resumed.auc_matrix, reference.auc_matrix, atol=1e-6)
    steps = json.loads((cfg.run_dir / "progress.json").read_text())["steps"]
    assert [s["trainable_params"] > 0 for s in steps] == [True, True, True]


def _value_regulariser_by_hand(stack, fusion):
    """0.01 * sum over layers of ||I - V||_F^2, read straight off the fusion modules' weights."""
    total = 0.0
    for layer in stack.layers.values():
        v = layer.fusions[fusion].value.weight.detach().double()
        total += 0.01 * ((torch.eye(v.shape[0], dtype=v.dtype) - v) ** 2).sum().item()
    return total


@pytest.mark.parametrize("method_name", ["attention_distillation", "adapter_fusion"])
@pytest.mark.parametrize("enabled", [True, False])
def test_fusion_stage_loss_holds_adapterhubs_value_regulariser(tiny_params, monkeypatch, method_name, enabled):
    """AdapterHub's dynamic fusion adds 0.01 sum_l ||I - V_l||^2 to the fusion loss; the option switches it off."""
    import frkit.methods.adapter_fusion as af_module
    from frkit.train import cross_entropy_loss

    cfg = make_config(
        tiny_params(method=method_name, epochs=1, translate_fraction=0.0, fusion_value_regularization=enabled)
    )
    ms = load_configured_marketplaces(cfg)
    ctx = MethodContext(cfg, cfg.model_name_or_path, load_tokenizer(cfg.model_name_or_path), show_progress=False)
    method = METHODS[cfg.method](cfg, ctx)
    method.learn(0, ms[0], ms[:1])
    seen = {}

    def check(loss, inner, head):
        fusion = "fusion_1"
        torch.manual_seed(0)
        with torch.no_grad():  # move V off the identity so that the regulariser is far from 0
            for layer in method.stack.layers.values():
                layer.fusions[fusion].value.weight.add_(0.2 * torch.randn_like(layer.fusions[fusion].value.weight))
        batch = next(iter(method.ctx.loader(ms[1].train, train=True, seed=0)))
        method.model.eval()
        with torch.no_grad():
            got = (loss(method.model, batch) - inner(method.model, batch)).item()
        expected = _value_regulariser_by_hand(method.stack, fusion) if enabled else 0.0
        assert expected == 0.0 or expected > 0.01
        assert got == pytest.approx(expected, rel=1e-4, abs=1e-6)
        seen["checked"] = head

    if method_name == "attention_distillation":
        inner_fns = []
        real_loss = method.distillation_loss
        method.distillation_loss = lambda *a, **kw: inner_fns.append(real_loss(*a, **kw)) or inner_fns[-1]
        real_fit = base.fit

        def fit(model, params, batches, loss, *a, **kw):  # the language adapter trains; the fusion stage is checked
            if not kw["desc"].endswith(":fusion"):
                return real_fit(model, params, batches, loss, *a, **kw)
            check(loss, inner_fns[-1], "es")
            pytest.skip("checked")

        monkeypatch.setattr(base, "fit", fit)
    else:

        def train(model, params, marketplace, head, lr, step, loss_fn=None, **kw):
            check(loss_fn, cross_entropy_loss(head), head)
            pytest.skip("checked")

        method.train = train
        method.train_language_adapter = lambda step, marketplace: method.stack.add_adapter(marketplace.name) or None
        monkeypatch.setattr(af_module, "fit_log", lambda result: {})
    try:
        method.learn(1, ms[1], ms[:2])
    except pytest.skip.Exception:
        pass
    assert seen.get("checked")
