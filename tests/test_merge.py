"""A marketplace's merged adapter gives the same logits as the unmerged one (zero extra latency, same output)."""

import pytest
import torch
from conftest import tiny_bert_config
from transformers import BertModel

from frkit.models.cross_encoder import CrossEncoder
from frkit.models.merge import merged_cross_encoder
from frkit.models.peft_adapters import add_adapter, lora_config


@pytest.mark.parametrize("use_dora", [False, True])
def test_merged_adapter_matches_unmerged(use_dora):
    torch.manual_seed(0)
    model = CrossEncoder(BertModel(tiny_bert_config(60), add_pooling_layer=False), 32)
    for name in ("en", "es"):
        model.encoder = add_adapter(model.encoder, name, lora_config(4, 8, 0.0, ["query", "key", "value"], use_dora))
        model.add_head(name)
    with torch.no_grad():  # LoRA B starts at zero; give both adapters a real update
        for n, p in model.named_parameters():
            if "lora_" in n:
                p.normal_(0, 0.2)
    model.eval()
    ids = torch.randint(5, 60, (4, 9))
    mask = torch.ones_like(ids)
    mask[1, 6:] = 0
    for name in ("en", "es"):
        model.encoder.set_adapter(name)
        with torch.no_grad():
            unmerged = model(ids, mask, head=name)
            merged_model = merged_cross_encoder(model, name)
            merged = merged_model(ids, mask, head=name)
        assert not any("lora" in n for n, _ in merged_model.named_parameters())
        torch.testing.assert_close(merged, unmerged, atol=1e-5, rtol=0)
    # merging is done on a copy: the source still has both adapters, unmerged
    assert set(model.encoder.peft_config) == {"en", "es"}
