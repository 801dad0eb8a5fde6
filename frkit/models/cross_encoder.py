"""A relevance cross-encoder: a Hugging Face encoder with one classification head per marketplace."""
from __future__ import annotations

import copy

import torch
from torch import nn

from frkit.core.fp32 import full_precision

NUM_CLASSES = 2  # relevant / not relevant; softmax keeps the true Fisher exact for two classes


class CrossEncoder(nn.Module):
    """``encoder`` (any HF AutoModel, possibly peft-wrapped) + ``heads[marketplace]`` on the pooled output.

    Heads live outside peft on purpose: peft refuses to merge adapters that each carry their own
    ``modules_to_save`` copy, and FR-LoRA merges a marketplace's adapter into the base.
    """

    def __init__(self, encoder: nn.Module, hidden_size: int, pooling: str = "cls"):
        super().__init__()
        self.encoder = encoder
        self.hidden_size = hidden_size
        self.pooling = pooling
        self.heads = nn.ModuleDict()

    def add_head(self, name: str, init_from: str | None = None) -> nn.Linear:
        head = nn.Linear(self.hidden_size, NUM_CLASSES)
        if init_from is not None:
            head.load_state_dict(self.heads[init_from].state_dict())
        head.to(next(self.encoder.parameters()).device)
        self.heads[name] = head
        return head

    def pool(self, hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        if self.pooling == "cls":
            return hidden[:, 0]
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * mask).sum(1) / mask.sum(1).clamp_min(1.0)

    def forward(self, input_ids, attention_mask, head: str, token_type_ids=None, **_) -> torch.Tensor:
        kwargs = {"input_ids": input_ids, "attention_mask": attention_mask}
        if token_type_ids is not None:
            kwargs["token_type_ids"] = token_type_ids
        hidden = self.encoder(**kwargs).last_hidden_state
        with full_precision():  # the head in fp32: scores keep their resolution under bf16 autocast (AUC ties)
            return self.heads[head](self.pool(hidden, attention_mask).float())


def fresh_encoder(base: nn.Module, device: torch.device | str) -> nn.Module:
    """A copy of the loaded ``base`` encoder on ``device`` (the base stays untouched for the next copy)."""
    return copy.deepcopy(base).to(device)


def fresh_cross_encoder(base: nn.Module, pooling: str, device: torch.device | str) -> CrossEncoder:
    """A :class:`CrossEncoder` on a fresh copy of ``base``, without heads yet."""
    encoder = fresh_encoder(base, device)
    return CrossEncoder(encoder, encoder.config.hidden_size, pooling)
