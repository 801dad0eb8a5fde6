"""LoRA inference-time merging (FR-LoRA Table 1): the merged adapter's Delta W against the single adapters' Delta W
combined by hand, the method's steps, and its bad options."""

import pytest
import torch

from frkit.config import make_config
from frkit.core.lora_delta import effective_delta_w, lora_factors
from frkit.errors import FrkitInputError
from frkit.methods import METHODS
from frkit.methods.base import MethodContext
from frkit.methods.lora_merge import MERGED
from frkit.models.encoder import load_tokenizer
from frkit.models.peft_adapters import add_adapter, lora_config
from frkit.runner import load_configured_marketplaces

NAMES = ("en", "es", "ja")


def _method(tiny_params, name, **overrides):
    cfg = make_config(tiny_params(method=name, epochs=1, **overrides))
    ctx = MethodContext(cfg, cfg.model_name_or_path, load_tokenizer(cfg.model_name_or_path), show_progress=False)
    return METHODS[name](cfg, ctx), cfg


def _three_random_loras(method, alphas=(4.0, 8.0, 2.0)):
    """Three LoRAs of rank 2 with random A and B and different alphas (so scaling s_i differs per adapter)."""
    g = torch.Generator().manual_seed(0)
    for name, alpha in zip(NAMES, alphas):
        method.model.encoder = add_adapter(
            method.model.encoder, name, lora_config(2, alpha, 0.0, ["query", "key", "value"])
        )
        with torch.no_grad():
            for a, b in lora_factors(method.model.encoder, name).values():
                a.copy_(torch.randn(a.shape, generator=g))
                b.copy_(torch.randn(b.shape, generator=g))
        method.learned.append(name)
    return {name: effective_delta_w(method.model.encoder, name) for name in NAMES}  # s_i B_i A_i per layer


def _weighted_sum(deltas, weights, key):
    return sum(w * deltas[n][key] for n, w in zip(NAMES, weights))


@pytest.mark.parametrize("weights", [None, [0.2, 0.5, 1.0]])
def test_svd_merge_is_the_rank_k_svd_of_the_weighted_sum(tiny_params, weights):
    method, _ = _method(tiny_params, "lora_merge_svd", merge_weights=weights)
    deltas = _three_random_loras(method)
    method.merge()
    w = weights or [1 / 3] * 3
    merged = effective_delta_w(method.model.encoder, MERGED)
    assert merged.keys() == deltas["en"].keys() and len(merged) == 6
    for key, got in merged.items():
        u, s, vh = torch.linalg.svd(_weighted_sum(deltas, w, key).double())
        k = 2  # merge_svd_rank defaults to lora_rank
        expected = (u[:, :k] * s[:k]) @ vh[:k]
        torch.testing.assert_close(got.double(), expected, atol=1e-4, rtol=1e-4)
        assert torch.linalg.matrix_rank(got.double(), rtol=1e-4) == k


def test_svd_merge_rank_is_configurable(tiny_params):
    method, _ = _method(tiny_params, "lora_merge_svd", merge_svd_rank=1)
    deltas = _three_random_loras(method)
    method.merge()
    for key, got in effective_delta_w(method.model.encoder, MERGED).items():
        u, s, vh = torch.linalg.svd(_weighted_sum(deltas, [1 / 3] * 3, key).double())
        torch.testing.assert_close(got.double(), s[0] * torch.outer(u[:, 0], vh[0]), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("weights", [None, [0.2, 0.5, 1.0]])
def test_cat_merge_is_exactly_the_weighted_sum(tiny_params, weights):
    method, _ = _method(tiny_params, "lora_merge_cat", merge_weights=weights)
    deltas = _three_random_loras(method)
    method.merge()
    w = weights or [1 / 3] * 3
    for key, got in effective_delta_w(method.model.encoder, MERGED).items():
        torch.testing.assert_close(got, _weighted_sum(deltas, w, key), atol=1e-5, rtol=1e-5)


def test_linear_merge_is_peft_linear_combination_of_the_factors_not_the_weighted_sum(tiny_params):
    """peft "linear": A = sum sqrt(w_i s_i) A_i, B = sum sqrt(w_i s_i) B_i, scaling 1; Delta W = B A keeps the
    cross terms B_i A_j, so it is the weighted sum of the Delta W_i only for a single adapter."""
    weights = [0.2, 0.5, 1.0]
    method, _ = _method(tiny_params, "lora_merge_linear", merge_weights=weights)
    alphas = (4.0, 8.0, 2.0)
    deltas = _three_random_loras(method, alphas)
    factors = {n: lora_factors(method.model.encoder, n) for n in NAMES}
    method.merge()
    for key, got in effective_delta_w(method.model.encoder, MERGED).items():
        c = [(w * alpha / 2) ** 0.5 for w, alpha in zip(weights, alphas)]  # sqrt(w_i s_i), s_i = alpha_i / r
        a = sum(ci * factors[n][key][0] for ci, n in zip(c, NAMES))
        b = sum(ci * factors[n][key][1] for ci, n in zip(c, NAMES))
        torch.testing.assert_close(got, b @ a, atol=1e-5, rtol=1e-5)
        assert not torch.allclose(got, _weighted_sum(deltas, weights, key), atol=1e-2)  # the cross terms
    # one adapter: peft's linear merge is w_1 Delta W_1 exactly
    method.learned = ["en"]
    method.merge()
    for key, got in effective_delta_w(method.model.encoder, MERGED).items():
        torch.testing.assert_close(got, weights[0] * deltas["en"][key], atol=1e-5, rtol=1e-5)


def test_each_marketplace_trains_its_own_lora_then_all_are_merged_and_score(tiny_params):
    method, cfg = _method(tiny_params, "lora_merge_cat")
    ms = load_configured_marketplaces(cfg)
    active_during_training = []
    real_train = method.train

    def spy(*args, **kwargs):
        active_during_training.append(list(method.model.encoder.active_adapters))
        return real_train(*args, **kwargs)

    method.train = spy
    for k in range(2):
        method.learn(k, ms[k], ms[: k + 1])
    assert active_during_training == [["en"], ["es"]]  # each LoRA trained alone on the base
    assert set(method.model.encoder.peft_config) == {"en", "es", MERGED}  # the first merge was replaced
    deltas = {n: effective_delta_w(method.model.encoder, n) for n in ("en", "es")}
    for key, got in effective_delta_w(method.model.encoder, MERGED).items():
        torch.testing.assert_close(got, (deltas["en"][key] + deltas["es"][key]) / 2, atol=1e-5, rtol=1e-5)
    for name in ("en", "es"):
        model, head = method.model_for(name)
        assert head == name and model.encoder.active_adapters == [MERGED]
    # trainable: LoRA es (q/k/v of 2 layers, rank 2, hidden 32) and its head
    assert method.trainable_params == 2 * 3 * (2 * 32 + 32 * 2) + (32 * 2 + 2)


@pytest.mark.parametrize(
    "overrides, key",
    [
        (dict(method="lora_merge_svd", lora_rank=2, merge_svd_rank=3), "merge_svd_rank"),
        (dict(method="lora_merge_svd", merge_svd_rank=0), "merge_svd_rank"),
        (dict(method="lora_merge_linear", merge_weights=[0.5, -0.1, 0.5]), "merge_weights.1"),
        (dict(method="lora_merge_linear", merge_weights=[0.5, 0.5]), "merge_weights"),
        (dict(method="lora_merge_cat", merge_weights=[]), "merge_weights"),
        (dict(method="lora_merge_cat", marketplaces=["en", "merged"]), "marketplaces"),
    ],
)
def test_bad_options_fail_before_training_naming_the_key(tiny_params, overrides, key):
    with pytest.raises(FrkitInputError, match=rf"key '{key}'"):
        make_config(tiny_params(**overrides))
