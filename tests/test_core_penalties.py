"""Eq. 2 (EWC), Eq. 4 (inverse-Fisher LoRA penalty), Fisher carry modes and the LoRA/DoRA Delta W."""

from __future__ import annotations

import copy

import pytest
import torch
from peft import LoraConfig, get_peft_model
from transformers import BertConfig, BertModel, GPT2Config, GPT2Model

from frkit.core.lora_delta import base_weight_name, effective_delta_w, lora_factors
from frkit.core.penalties import combine_fisher, ewc_penalty, fr_inverse_fisher, fr_penalty, fr_penalty_precomputed


def small_dicts(seed=0, shapes=((3, 4), (5,), (2, 2, 2))):
    g = torch.Generator().manual_seed(seed)
    names = [f"p{i}" for i in range(len(shapes))]
    params = {n: torch.randn(s, generator=g, dtype=torch.float64).requires_grad_() for n, s in zip(names, shapes)}
    anchor = {n: torch.randn(s, generator=g, dtype=torch.float64) for n, s in zip(names, shapes)}
    fisher = {n: torch.rand(s, generator=g, dtype=torch.float64) for n, s in zip(names, shapes)}
    fisher["p1"][2] = 0.0  # an unimportant parameter
    return params, anchor, fisher


def test_ewc_penalty_by_hand():
    params, anchor, fisher = small_dicts()
    lam = 0.7
    value = ewc_penalty(params, anchor, fisher, lam)
    expected = 0.0
    for n in params:  # Eq. 2: lambda/2 * sum_i F_i (theta_i - theta*_i)^2, element by element
        for idx in torch.cartesian_prod(*[torch.arange(s) for s in params[n].shape]).reshape(-1, params[n].dim()):
            i = tuple(idx.tolist())
            expected += lam / 2 * float(fisher[n][i]) * (float(params[n].detach()[i]) - float(anchor[n][i])) ** 2
    assert value.item() == pytest.approx(expected, rel=1e-12)
    value.backward()
    for n in params:
        assert torch.allclose(params[n].grad, lam * fisher[n] * (params[n].detach() - anchor[n]))
    fisher["p0"].mul_(3.0)  # an in-place edit must not be hidden by the memoised sqrt(F)
    expected += lam / 2 * 2 * float((fisher["p0"] / 3 * (params["p0"].detach() - anchor["p0"]) ** 2).sum())
    assert ewc_penalty(params, anchor, fisher, lam).item() == pytest.approx(expected, rel=1e-12)


def test_ewc_penalty_subset_and_empty():
    params, anchor, fisher = small_dicts()
    params["head.weight"] = torch.ones(2, requires_grad=True)  # not in the Fisher: not penalised
    only = {"p0": fisher["p0"]}
    assert ewc_penalty(params, anchor, only, 2.0).item() == pytest.approx(
        float((fisher["p0"] * (params["p0"].detach() - anchor["p0"]) ** 2).sum())
    )
    assert ewc_penalty(params, anchor, {}, 1.0).item() == 0.0  # Eq. 2's indicator 1_{t>1}
    with pytest.raises(KeyError, match="anchor"):
        ewc_penalty(params, {}, fisher, 1.0)
    with pytest.raises(ValueError, match="shape"):
        ewc_penalty(params, anchor, {"p0": torch.ones(4, 3)}, 1.0)


def test_fr_penalty_by_hand():
    delta, _, fisher = small_dicts(seed=3)
    beta, eps = 1e-2, 1e-3
    value = fr_penalty(delta, fisher, beta, eps)
    expected = 0.0
    for n in delta:  # Eq. 4: beta/2 * sum_ij (Delta W)_ij^2 / (F_ij + eps)
        for d, f in zip(delta[n].detach().flatten().tolist(), fisher[n].flatten().tolist()):
            expected += beta / 2 * d**2 / (f + eps)
    assert value.item() == pytest.approx(expected, rel=1e-12)
    value.backward()
    for n in delta:
        assert torch.allclose(delta[n].grad, beta * delta[n].detach() / (fisher[n] + eps))
    inv = fr_inverse_fisher(fisher, eps)
    assert fr_penalty_precomputed(delta, inv, beta).item() == pytest.approx(expected, rel=1e-6)
    with pytest.raises(ValueError):
        fr_inverse_fisher(fisher, 0.0)


def test_combine_fisher_modes():
    old = {"a": torch.tensor([1.0, 2.0]), "b": torch.tensor([4.0])}
    new = {"a": torch.tensor([3.0, 0.0]), "c": torch.tensor([5.0])}
    assert torch.equal(combine_fisher(old, new)["a"], new["a"]) and "b" not in combine_fisher(old, new)  # latest
    acc = combine_fisher(old, new, "accumulate")
    assert torch.equal(acc["a"], torch.tensor([4.0, 2.0])) and acc["b"].item() == 4.0 and acc["c"].item() == 5.0
    assert torch.equal(combine_fisher(old, new, "accumulate", decay=0.5)["a"], torch.tensor([3.5, 1.0]))
    # running mean: old is the mean of 2 estimates, new is the 3rd
    assert torch.allclose(combine_fisher(old, new, "average", step=3)["a"], torch.tensor([5 / 3, 4 / 3]))
    assert torch.equal(combine_fisher(None, new, "average", step=1)["a"], new["a"])
    assert old["a"].tolist() == [1.0, 2.0]  # inputs untouched
    with pytest.raises(ValueError, match="step"):
        combine_fisher(old, new, "average")
    with pytest.raises(ValueError, match="mode"):
        combine_fisher(old, new, "sum")


# --- Delta W of peft adapters ------------------------------------------------------------------------


def peft_bert(use_dora: bool, seed: int = 0):
    torch.manual_seed(seed)
    cfg = BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)
    base = BertModel(cfg, add_pooling_layer=False)
    model = get_peft_model(
        copy.deepcopy(base),
        LoraConfig(r=4, lora_alpha=8, target_modules=["query", "key", "value"], use_dora=use_dora),
        adapter_name="mk_b",
    )
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_" in n:  # lora_B starts at 0 and the magnitude at ||W||: move both
                p.add_(torch.randn_like(p) * 0.3)
    return base, model


@pytest.mark.parametrize("use_dora", [False, True])
def test_delta_w_equals_merge(use_dora):
    base, model = peft_bert(use_dora)
    delta = effective_delta_w(model, "mk_b")
    assert sorted(delta) == sorted(
        f"encoder.layer.{i}.attention.self.{m}.weight" for i in range(2) for m in ("query", "key", "value")
    )
    merged = copy.deepcopy(model).merge_and_unload().state_dict()
    base_sd = base.state_dict()
    for n, d in delta.items():
        assert torch.allclose(merged[n] - base_sd[n], d, atol=1e-6, rtol=0), n


def test_delta_w_fan_in_fan_out():
    torch.manual_seed(0)
    base = GPT2Model(
        GPT2Config(n_embd=32, n_layer=1, n_head=2, vocab_size=50, n_positions=16, bos_token_id=0, eos_token_id=0)
    )
    model = get_peft_model(copy.deepcopy(base), LoraConfig(r=2, target_modules=["c_attn"], fan_in_fan_out=True))
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_" in n:
                p.add_(torch.randn_like(p))
    delta = effective_delta_w(model, "default")
    assert list(delta) == ["h.0.attn.c_attn.weight"] and delta["h.0.attn.c_attn.weight"].shape == (32, 96)
    merged = copy.deepcopy(model).merge_and_unload().state_dict()
    assert torch.allclose(
        merged["h.0.attn.c_attn.weight"] - base.state_dict()["h.0.attn.c_attn.weight"],
        delta["h.0.attn.c_attn.weight"],
        atol=1e-6,
        rtol=0,
    )


@pytest.mark.parametrize("use_dora", [False, True])
def test_fr_penalty_gradient_reaches_lora_factors(use_dora):
    _, model = peft_bert(use_dora, seed=1)
    fisher = {n: torch.rand(32, 32) for n in effective_delta_w(model, "mk_b")}
    beta, eps = 1e-1, 1e-2
    value = fr_penalty(effective_delta_w(model, "mk_b"), fisher, beta, eps)
    value.backward()
    # the same penalty written with plain torch from the factors, as Eq. 4 reads (scaling = alpha / r = 2)
    expected = 0.0
    for key, (a, b) in lora_factors(model, "mk_b").items():
        layer = model.get_submodule("base_model.model." + key.rsplit(".", 1)[0])
        a2, b2 = a.detach().clone().requires_grad_(), b.detach().clone().requires_grad_()
        w = layer.base_layer.weight.detach()
        update = 2.0 * b2 @ a2
        if use_dora:
            m = layer.lora_magnitude_vector["mk_b"].weight.detach()
            norm = torch.linalg.norm(w + update, dim=1).detach()
            update = (m / norm)[:, None] * (w + update) - w
        term = beta / 2 * (update**2 / (fisher[key] + eps)).sum()
        ga, gb = torch.autograd.grad(term, [a2, b2])
        assert a.grad is not None and torch.allclose(a.grad, ga, rtol=1e-4, atol=1e-7), key
        assert torch.allclose(b.grad, gb, rtol=1e-4, atol=1e-7), key
        expected += term.item()
    assert value.item() == pytest.approx(expected, rel=1e-5)
    base_grads = [p.grad for n, p in model.named_parameters() if "base_layer" in n]
    assert all(g is None for g in base_grads)  # base weights enter as constants


def test_base_weight_name():
    layer = "encoder.layer.0.attention.self.query"
    assert base_weight_name(f"base_model.model.{layer}.lora_A.mk_b.weight") == f"{layer}.weight"
    assert base_weight_name(f"base_model.model.{layer}.lora_B.mk_b.weight") == f"{layer}.weight"
    assert base_weight_name(f"base_model.model.{layer}.lora_B.mk_b.bias") == f"{layer}.bias"
    assert base_weight_name(f"base_model.model.{layer}.base_layer.weight") == f"{layer}.weight"
    assert base_weight_name(f"base_model.model.{layer}.lora_magnitude_vector.x.weight") == f"{layer}.weight"
    # a cross-encoder holding the PeftModel as ``encoder``: the prefix stays
    assert base_weight_name(f"encoder.base_model.model.{layer}.lora_A.default.weight") == f"encoder.{layer}.weight"
    assert base_weight_name(f"encoder.{layer}.weight") == f"encoder.{layer}.weight"  # idempotent
    _, model = peft_bert(False)
    for n, _ in model.named_parameters():
        if "lora_" in n or "base_layer" in n:
            assert base_weight_name(n).rsplit(".", 1)[0] in dict(
                BertModel(model.config, add_pooling_layer=False).named_modules()
            )
