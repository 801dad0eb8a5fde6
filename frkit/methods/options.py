"""Option groups: the method-specific keys of the run configuration, shared by the methods that use them."""
from __future__ import annotations

from pydantic import BaseModel, Field


class LoraOptions(BaseModel):
    """LoRA / DoRA adapters on the attention projections (peft)."""

    lora_rank: int = Field(8, ge=1)
    lora_alpha: float = Field(16.0, gt=0)
    lora_dropout: float = Field(0.1, ge=0, lt=1)
    lora_targets: list[str] = Field(default_factory=lambda: ["query", "key", "value"], min_length=1)


class PrefixOptions(BaseModel):
    """peft prefix tuning: trainable key/value prefixes in every layer."""

    prefix_tokens: int = Field(20, ge=1)
