"""Pfeiffer adapters, AdapterFusion (Eq. 1-4) and their injection into a frozen BERT-architecture encoder."""

from __future__ import annotations

import copy

import pytest
import torch
from transformers import BertConfig, BertModel, XLMRobertaConfig, XLMRobertaModel

from frkit.models.adapters import AdapterFusion, AdapterStack, BottleneckAdapter
from frkit.models.cross_encoder import CrossEncoder

TINY = dict(
    vocab_size=100,
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=2,
    intermediate_size=64,
    max_position_embeddings=64,
)


def tiny_encoder(kind: str = "bert", seed: int = 0):
    torch.manual_seed(seed)
    if kind == "xlmr":  # e5 / XLM-R layout: RobertaEmbeddings, XLMRobertaOutput blocks
        return XLMRobertaModel(XLMRobertaConfig(**TINY, pad_token_id=1), add_pooling_layer=False).eval()
    return BertModel(BertConfig(**TINY), add_pooling_layer=False).eval()


def batch(seed: int = 0, b: int = 3, s: int = 7):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, 100, (b, s), generator=g)
    mask = torch.ones(b, s, dtype=torch.long)
    mask[0, 4:] = 0  # one padded row
    return {"input_ids": ids, "attention_mask": mask}


@pytest.mark.parametrize("kind", ["bert", "xlmr"])
def test_zero_init_adapter_is_identity_and_base_is_frozen(kind):
    enc = tiny_encoder(kind)
    reference = copy.deepcopy(enc)
    stack = AdapterStack(enc, adapter_init="zeros")
    assert len(stack.layers) == 2 and stack.trainable_parameters() == 0
    stack.add_adapter("en")
    stack.set_active(["en"])
    stack.freeze_all_but(adapters=["en"])
    x = batch()
    with torch.no_grad():
        torch.testing.assert_close(enc(**x).last_hidden_state, reference(**x).last_hidden_state, rtol=0, atol=1e-6)
    trainable = {n for n, p in enc.named_parameters() if p.requires_grad}
    assert trainable and all(".adapters.en." in n for n in trainable)
    # base keys are unchanged: the original weights load into the adapted encoder
    missing, unexpected = enc.load_state_dict(reference.state_dict(), strict=False)
    assert not unexpected and all(".adapters." in k for k in missing)


def test_bert_init_adapter_changes_output_and_trains():
    enc = tiny_encoder()
    stack = AdapterStack(enc)
    stack.add_adapter("en")
    stack.set_active(["en"])
    stack.freeze_all_but(adapters=["en"])
    enc.train()
    out = enc(**batch()).last_hidden_state
    assert out.shape == (3, 7, 32)
    out.pow(2).mean().backward()
    assert all(p.grad is not None for p in stack.adapter_parameters("en"))
    assert all(p.grad is None for n, p in enc.named_parameters() if ".adapters." not in n)


def test_bottleneck_size_and_update():
    adapter = BottleneckAdapter(384, reduction_factor=16, init="zeros")
    assert adapter.down.out_features == 24
    assert torch.count_nonzero(adapter(torch.randn(2, 5, 384))) == 0


def test_fusion_matches_equations_1_to_4_with_loops():
    torch.manual_seed(0)
    b, s, n, h = 2, 3, 4, 5
    fusion = AdapterFusion(h, dropout=0.0).eval()
    with torch.no_grad():
        for p in fusion.parameters():
            p.normal_()
    query, updates, residual = torch.randn(b, s, h), torch.randn(b, s, n, h), torch.randn(b, s, h)
    out = fusion(query, updates, residual)
    Q, bq, K, bk, V = fusion.query.weight, fusion.query.bias, fusion.key.weight, fusion.key.bias, fusion.value.weight
    for i in range(b):
        for j in range(s):
            hq = Q @ query[i, j] + bq  # h^T Q
            logits = torch.stack([hq @ (K @ updates[i, j, t] + bk) for t in range(n)])  # Eq. 1
            s_ij = torch.exp(logits) / torch.exp(logits).sum()
            z_prime = torch.stack([V @ updates[i, j, t] for t in range(n)])  # Eq. 2-3
            o_ij = sum(s_ij[t] * z_prime[t] for t in range(n)) + residual[i, j]  # Eq. 4
            torch.testing.assert_close(out[i, j], o_ij, rtol=1e-5, atol=1e-5)


def test_fusion_value_starts_at_identity():
    fusion = AdapterFusion(8)
    eye = torch.eye(8)
    assert torch.allclose(fusion.value.weight, eye + 1e-6 * (1 - eye))
    assert fusion.value_regularization().item() == pytest.approx(0.01 * 56 * 1e-12)


@pytest.mark.parametrize("kind", ["bert", "xlmr"])
def test_fusion_scores_shape_sum_and_gradient(kind):
    enc = tiny_encoder(kind)
    stack = AdapterStack(enc)
    for lang in ("en", "es", "ja"):
        stack.add_adapter(lang)
    stack.add_fusion("f3", ["en", "es", "ja"])
    stack.set_active(["en", "es", "ja"], fusion="f3")
    stack.freeze_all_but(fusions=["f3"])
    enc.train()
    with stack.capturing():
        out = enc(**batch()).last_hidden_state
        scores = stack.attention_scores()
    assert out.shape == (3, 7, 32)
    assert sorted(scores) == [0, 1]
    for s in scores.values():
        assert s.shape == (3, 7, 3) and s.grad_fn is not None
        torch.testing.assert_close(s.sum(-1), torch.ones(3, 7))
    # a loss on the captured scores alone reaches Q and K of every layer's fusion
    loss = sum(-torch.log(s[..., 0]).mean() for s in scores.values())
    loss.backward()
    for layer in stack.layers.values():
        f = layer.fusions["f3"]
        for p in (f.query.weight, f.query.bias, f.key.weight):
            assert p.grad is not None and p.grad.abs().sum() > 0
    assert all(p.grad is None for p in stack.adapter_parameters("en"))
    # not capturing keeps nothing
    enc(**batch())
    with pytest.raises(RuntimeError, match="capturing"):
        stack.attention_scores()


def test_adapter_fusion_baseline_trains_adapters_and_fusion_together():
    enc = tiny_encoder()
    stack = AdapterStack(enc)
    for lang in ("en", "es"):
        stack.add_adapter(lang)
    stack.add_fusion("all", ["en", "es"])
    stack.set_active(fusion="all")
    stack.freeze_all_but(adapters=["en", "es"], fusions=["all"])
    enc.train()
    (enc(**batch()).last_hidden_state.pow(2).mean() + stack.fusion_regularization("all")).backward()
    for p in stack.adapter_parameters("en") + stack.adapter_parameters("es") + stack.fusion_parameters("all"):
        assert p.requires_grad and p.grad is not None


def test_set_active_validation_and_teacher_context():
    enc = tiny_encoder()
    stack = AdapterStack(enc)
    for lang in ("en", "es"):
        stack.add_adapter(lang)
    stack.add_fusion("f2", ["en", "es"])
    with pytest.raises(ValueError, match="without a fusion"):
        stack.set_active(["en", "es"])
    with pytest.raises(ValueError, match="is over"):
        stack.set_active(["es", "en"], fusion="f2")
    with pytest.raises(KeyError):
        stack.set_active(["de"])
    stack.set_active(fusion="f2")
    enc.train()
    with stack.teacher(["en"]):  # M_1: one adapter, no fusion -> all-ones scores
        assert not enc.training
        enc(**batch())
        scores = stack.attention_scores()
    assert enc.training and stack.active == (("en", "es"), "f2")
    assert all(s.shape == (3, 7, 1) and torch.all(s == 1) and s.grad_fn is None for s in scores.values())


def test_state_dicts_save_and_load_roundtrip(tmp_path):
    enc = tiny_encoder()
    stack = AdapterStack(enc, reduction_factor=8)
    for lang in ("en", "es"):
        stack.add_adapter(lang)
    stack.add_fusion("f2", ["en", "es"])
    stack.set_active(fusion="f2")
    with torch.no_grad():
        for p in stack.fusion_parameters("f2"):
            p.add_(0.1 * torch.randn_like(p))
        expected = enc(**batch()).last_hidden_state
    assert set(stack.adapter_state_dict("en")) >= {"0.down.weight", "1.up.bias"}
    stack.save(tmp_path / "ad")

    fresh = tiny_encoder()  # same seed: same base weights
    loaded = AdapterStack.load(fresh, tmp_path / "ad")
    assert loaded.adapter_names == ["en", "es"] and loaded.fusion_adapters == {"f2": ("en", "es")}
    loaded.set_active(fusion="f2")
    with torch.no_grad():
        torch.testing.assert_close(fresh(**batch()).last_hidden_state, expected)

    other = AdapterStack(tiny_encoder(), reduction_factor=8)
    other.load_adapter_state_dict("en", stack.adapter_state_dict("en"))
    other.load_adapter_state_dict("es", stack.adapter_state_dict("es"))
    other.load_fusion_state_dict("f2", stack.fusion_state_dict("f2"), ["en", "es"])
    key = "1.key.weight"
    torch.testing.assert_close(other.fusion_state_dict("f2")[key], stack.fusion_state_dict("f2")[key])


def test_works_under_cross_encoder_and_twice_on_one_encoder():
    model = CrossEncoder(tiny_encoder(), hidden_size=32)
    model.add_head("en")
    stack = AdapterStack(model.encoder)
    stack.add_adapter("en")
    again = AdapterStack(model.encoder)  # reuses the wrapped blocks
    assert again.adapter_names == ["en"]
    again.set_active(["en"])
    logits = model(**batch(), head="en")
    assert logits.shape == (3, 2)


def test_parameter_counts_12_layer_hidden_384():
    cfg = BertConfig(
        vocab_size=100, hidden_size=384, num_hidden_layers=12, num_attention_heads=12, intermediate_size=1536
    )
    stack = AdapterStack(BertModel(cfg, add_pooling_layer=False))
    stack.add_adapter("en")
    stack.add_adapter("es")
    stack.add_fusion("f2", ["en", "es"])
    per_adapter = 12 * ((384 * 24 + 24) + (24 * 384 + 384))  # down + up, reduction 16
    per_fusion = 12 * (2 * (384 * 384 + 384) + 384 * 384)  # Q, K (biased) + V (no bias)
    counts = stack.parameter_counts()
    assert counts["adapter:en"] == per_adapter == 226_080
    assert counts["fusion:f2"] == per_fusion == 5_317_632
    stack.freeze_all_but(fusions=["f2"])
    assert stack.trainable_parameters() == per_fusion
