"""Option groups: the method-specific keys of the run configuration, shared by the methods that use them."""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class LoraOptions(BaseModel):
    """LoRA / DoRA adapters on the attention projections (peft)."""

    lora_rank: int = Field(64, ge=1)  # FR-LoRA section 5.1: r = 64, alpha = 16
    lora_alpha: float = Field(16.0, gt=0)
    lora_dropout: float = Field(0.1, ge=0, lt=1)
    lora_targets: list[str] = Field(default_factory=lambda: ["query", "key", "value"], min_length=1)


class PrefixOptions(BaseModel):
    """peft prefix tuning: trainable key/value prefixes in every layer."""

    prefix_tokens: int = Field(20, ge=1)


class EwcOptions(BaseModel):
    """EWC (FR-LoRA Eq. 2-3) on the base model, and how its Fisher is estimated and carried."""

    ewc_lambda: float = Field(1.0, ge=0)  # section 5.1: lambda = 1
    fisher_kind: Literal["empirical", "true"] = "empirical"  # Eq. 3 as written: y from the data
    fisher_carry: Literal["latest", "accumulate", "average"] = "latest"  # Eq. 2: F^(t-1) of the previous task
    fisher_samples: int | None = Field(None, gt=0)  # cap on samples for Eq. 3 (None: the whole train split)
    fisher_chunk: int = Field(32, ge=1)  # samples per Fisher forward/backward (memory bound)
    lr_decay: float = Field(1.0, gt=0, le=1)  # section 4.4: base-model lr multiplied by this after each marketplace (1 = off)


class FrOptions(BaseModel):
    """FR-LoRA Stage II: the Fisher-weighted LoRA penalty (Eq. 4), its optimiser, and projection (Eq. 5)."""

    beta: float = Field(1e-4, ge=0)  # section 5.1; 0 = the "without FR" arm of Figure 3a
    fr_eps: float = Field(1e-8, gt=0)  # not given in the paper
    stage2_lr: float = Field(1e-5, gt=0)  # section 5.1: 1e-5, constant schedule, 1000 warm-up steps
    stage2_schedule: Literal["cosine", "constant"] = "constant"
    stage2_warmup_steps: int = Field(1000, ge=0)
    projection: bool = False  # Algorithm 1 lines 14-16: project older LoRAs onto the last one's subspaces
