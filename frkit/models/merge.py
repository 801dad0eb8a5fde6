"""Zero extra inference latency: a marketplace's adapter merged into a copy of the base (FR-LoRA 5.6.4)."""

from __future__ import annotations

import copy

import torch
from peft import PeftModel

from frkit.models.cross_encoder import CrossEncoder


def merged_cross_encoder(model: CrossEncoder, adapter: str) -> CrossEncoder:
    """A plain encoder (no peft layers) with ``adapter`` merged in fp32, and only ``adapter``'s head.

    The source model is untouched. Its forward costs exactly what the base model's does.
    """
    if not isinstance(model.encoder, PeftModel):
        raise TypeError("the model carries no peft adapters to merge")
    encoder = copy.deepcopy(model.encoder)
    dtype = next(encoder.parameters()).dtype
    encoder = encoder.to(torch.float32)  # merge in fp32: B @ A added to W without bf16 rounding
    encoder.set_adapter(adapter)
    plain = encoder.merge_and_unload(adapter_names=[adapter]).to(dtype)
    merged = CrossEncoder(plain, model.hidden_size, model.pooling)
    merged.heads[adapter] = copy.deepcopy(model.heads[adapter])
    return merged.eval()
