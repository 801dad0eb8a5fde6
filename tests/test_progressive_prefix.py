"""Progressive Prefix (Progressive Prompts with per-layer key/value prefixes): one prefix is peft's prefix tuning,
several are their concatenation, the mask covers them, older prefixes never change, bad options name their key."""

import copy

import numpy as np
import pytest
import torch
from conftest import tiny_bert_config
from peft import get_peft_model
from transformers import BertModel, set_seed

from frkit.config import make_config
from frkit.errors import FrkitInputError
from frkit.methods import METHODS
from frkit.methods.base import MethodContext
from frkit.models.cross_encoder import CrossEncoder
from frkit.models.encoder import load_tokenizer
from frkit.models.peft_adapters import prefix_config
from frkit.models.prefix_stack import PrefixedEncoder, PrefixedSelfAttention
from frkit.runner import load_configured_marketplaces


def _bert(attn: str = "sdpa") -> BertModel:
    torch.manual_seed(0)
    bert = BertModel(tiny_bert_config(60), add_pooling_layer=False).eval()
    bert.set_attn_implementation(attn)
    return bert


def _batch():
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(5, 60, (4, 9), generator=g)
    mask = torch.ones_like(ids)
    mask[1, 6:] = 0
    mask[3, 4:] = 0
    return ids, mask


def _pair(bert, peft_encoder, ours):
    """The same head on both cross-encoders."""
    a, b = CrossEncoder(peft_encoder, 32), CrossEncoder(ours, 32)
    torch.manual_seed(2)
    a.add_head("en")
    b.add_head("en").load_state_dict(a.heads["en"].state_dict())
    return a.eval(), b.eval()


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
@pytest.mark.parametrize("projection", [False, True])
def test_one_prefix_gives_peft_prefix_tuning_logits_on_the_same_weights(attn, projection):
    bert = _bert(attn)
    peft_encoder = get_peft_model(copy.deepcopy(bert), prefix_config(3, projection)).eval()
    ours = PrefixedEncoder(copy.deepcopy(bert))
    ours.add_prefix("en", 3, projection)
    ours.prefixes["en"].load_state_dict(peft_encoder.prompt_encoder["default"].state_dict())  # same layout
    ours.active = ["en"]
    a, b = _pair(bert, peft_encoder, ours)
    ids, mask = _batch()
    with torch.no_grad():  # no token_type_ids: peft's prompt learning drops them (ours passes them on)
        expected = a(ids, mask, head="en")
        torch.testing.assert_close(b(ids, mask, head="en"), expected, atol=1e-5, rtol=0)
        ours.prefixes["en"].fold()  # the MLP replaced by its table: same logits
        torch.testing.assert_close(b(ids, mask, head="en"), expected, atol=1e-5, rtol=0)
        ours.active = []  # no prefix: the plain base model
        torch.testing.assert_close(
            ours(ids, mask).last_hidden_state, bert(input_ids=ids, attention_mask=mask).last_hidden_state
        )


def test_several_prefixes_are_peft_prefix_tuning_with_their_concatenation():
    bert = _bert()
    ours = PrefixedEncoder(copy.deepcopy(bert))
    tables = [ours.add_prefix(n, k)().detach() for n, k in (("en", 3), ("es", 2), ("ja", 4))]
    ours.active = ["en", "es", "ja"]
    peft_encoder = get_peft_model(copy.deepcopy(bert), prefix_config(9)).eval()
    with torch.no_grad():
        peft_encoder.prompt_encoder["default"].embedding.weight.copy_(torch.cat(tables))
    a, b = _pair(bert, peft_encoder, ours)
    ids, mask = _batch()
    with torch.no_grad():
        torch.testing.assert_close(b(ids, mask, head="en"), a(ids, mask, head="en"), atol=1e-5, rtol=0)


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_the_attention_mask_covers_the_concatenated_prefixes(attn, monkeypatch):
    bert = _bert(attn)
    ours = PrefixedEncoder(bert)
    ours.add_prefix("en", 3)
    ours.add_prefix("es", 2)
    ours.active = ["en", "es"]
    seen = []
    real = PrefixedSelfAttention.forward

    def spy(self, hidden_states, attention_mask=None, **kwargs):
        seen.append((attention_mask, self.prefix[0].shape))
        return real(self, hidden_states, attention_mask, **kwargs)

    monkeypatch.setattr(PrefixedSelfAttention, "forward", spy)
    ids, mask = _batch()
    with torch.no_grad():
        out = ours(ids, mask).last_hidden_state
    assert len(seen) == 2  # both layers
    for m, prefix_shape in seen:
        assert prefix_shape == (2, 5, 16)  # heads, 3 + 2 prefix positions, head_dim
        assert m.shape == (4, 1, 9, 5 + 9)
        attend = m if m.dtype == torch.bool else m == 0  # sdpa: boolean; eager: additive, 0 = attend
        assert attend[:, :, :, :5].all()  # every query of every row attends every position of both prefixes
        torch.testing.assert_close(attend[:, 0, 0, 5:], mask.bool())  # the tokens: padding masked, as without prefix
    # the behaviour behind it: padding does not leak in, and the older prefix is attended
    ids2 = ids.clone()
    ids2[1, 6:] = 7
    ids2[3, 4:] = 8
    with torch.no_grad():
        torch.testing.assert_close(ours(ids2, mask).last_hidden_state[mask.bool()], out[mask.bool()])
        ours.prefixes["en"].embedding.weight.add_(1.0)
        assert not torch.allclose(ours(ids, mask).last_hidden_state, out, atol=1e-3)


def _method(tiny_params, **overrides):
    cfg = make_config(tiny_params(method="progressive_prefix", epochs=1, **overrides))
    ctx = MethodContext(cfg, cfg.model_name_or_path, load_tokenizer(cfg.model_name_or_path), show_progress=False)
    return METHODS["progressive_prefix"](cfg, ctx), load_configured_marketplaces(cfg)


@pytest.mark.parametrize("projection", [False, True])
def test_older_prefixes_are_unchanged_and_concatenated_while_a_new_one_trains(tiny_params, projection):
    method, ms = _method(tiny_params, prefix_projection=projection)
    set_seed(0)
    method.learn(0, ms[0], ms[:1])
    en_table = method.encoder.prefixes["en"]().detach().clone()
    en_scores = method.predict(ms[0].test, "en")
    assert not any(p.requires_grad for p in method.encoder.prefixes["en"].parameters())  # folded and frozen
    active_during_training = []
    real_train = method.train

    def spy(*args, **kwargs):
        active_during_training.append(list(method.encoder.active))
        return real_train(*args, **kwargs)

    method.train = spy
    set_seed(1)
    method.learn(1, ms[1], ms[:2])
    assert active_during_training == [["en", "es"]]  # trained on top of the older prefix
    assert torch.equal(method.encoder.prefixes["en"](), en_table)  # the older prefix, bit for bit
    es_table = method.encoder.prefixes["es"]()
    assert es_table.shape == en_table.shape and not torch.equal(es_table, en_table)
    np.testing.assert_array_equal(method.predict(ms[0].test, "en"), en_scores)  # en scored with P_en alone: unchanged
    assert method.model_for("es")[0].encoder.active == ["en", "es"]
    assert method.model_for("en")[0].encoder.active == ["en"]
    # trainable: the new prefix (3 positions x 2 layers x key+value x 32) or its MLP, and the new head
    prefix = 3 * 2 * 2 * 32 if not projection else 3 * 32 + (32 * 32 + 32) + (32 * 128 + 128)
    assert method.trainable_params == prefix + 32 * 2 + 2


@pytest.mark.parametrize(
    "overrides, key",
    [
        (dict(prefix_tokens=0), "prefix_tokens"),
        (dict(prefix_projection_hidden=0), "prefix_projection_hidden"),
    ],
)
def test_bad_options_fail_before_training_naming_the_key(tiny_params, overrides, key):
    with pytest.raises(FrkitInputError, match=rf"key '{key}'"):
        make_config(tiny_params(method="progressive_prefix", **overrides))


def test_prefixes_longer_than_the_model_positions_fail_before_training(tiny_params):
    # tiny model: 64 positions; 3 marketplaces x 11 + max_length 32 = 65
    with pytest.raises(FrkitInputError, match=r"key 'prefix_tokens'.*65 exceeds the model's 64 positions"):
        _method(tiny_params, prefix_tokens=11)
