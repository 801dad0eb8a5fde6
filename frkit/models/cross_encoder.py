"""A relevance cross-encoder: a Hugging Face encoder with one classification head per marketplace."""

from __future__ import annotations

import copy

import torch
from torch import nn

from frkit.core.fp32 import full_precision

NUM_CLASSES = 2  # relevant / not relevant; softmax keeps the true Fisher exact for two classes
SHARED_HEAD = "shared"  # the one head's key when every marketplace shares it (``head_init: shared``)


class Heads(nn.ModuleDict):
    """The heads by name, where a marketplace may be an alias of another head (``aliases``: name -> head key).

    Why aliases and not a second module: every method keys heads by marketplace (``heads[name]``, ``head=name``),
    and a shared head must stay one set of parameters (one entry in ``state_dict`` and the optimiser), so sharing is
    a lookup, not a copy. Iterating, ``len`` and ``state_dict`` see the real heads only."""

    def __init__(self):
        super().__init__()
        self.aliases: dict[str, str] = {}

    def __getitem__(self, key: str) -> nn.Module:
        return super().__getitem__(self.aliases.get(key, key))

    def __contains__(self, key: str) -> bool:
        return super().__contains__(self.aliases.get(key, key))


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
        self.heads = Heads()

    def add_head(self, name: str, init_from: str | None = None, share: bool = False) -> nn.Linear:
        """A new head for ``name``: freshly initialised, or a copy of head ``init_from``'s weights; with ``share``,
        ``name`` scores through the one shared head (``SHARED_HEAD``, made on the first call)."""
        if share:
            if SHARED_HEAD not in self.heads._modules:
                device = next(self.encoder.parameters()).device
                self.heads[SHARED_HEAD] = nn.Linear(self.hidden_size, NUM_CLASSES).to(device)
            if name != SHARED_HEAD:
                self.heads.aliases[name] = SHARED_HEAD
            return self.heads[SHARED_HEAD]
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
