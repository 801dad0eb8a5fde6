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
    """Prefix tuning (peft's, and Progressive Prefix's): trainable key/value prefixes in every layer."""

    prefix_tokens: int = Field(20, ge=1)  # positions per prefix (peft num_virtual_tokens)
    # Li & Liang's reparameterisation (peft prefix_projection): the prefix is an MLP's output, embedding [n, hidden]
    # -> Linear(hidden, prefix_projection_hidden) -> tanh -> Linear(., 2 x layers x hidden); off = the table itself
    prefix_projection: bool = False
    prefix_projection_hidden: int | None = Field(None, ge=1)  # the MLP's width (None: the encoder's hidden size)


class EwcOptions(BaseModel):
    """EWC (FR-LoRA Eq. 2-3) on the base model, and how its Fisher is estimated and carried."""

    ewc_lambda: float = Field(1.0, ge=0)  # section 5.1: lambda = 1
    # the Fisher's scale, for Eq. 2 and Eq. 4 alike: "mean" over samples as Eq. 3 writes it; "sum" over the samples
    # (N times larger: the scale of a log-likelihood summed over the data, as Kirkpatrick et al.'s EWC has it);
    # "max": divided by its largest entry, so that lambda is the weight of the most important parameter
    fisher_scale: Literal["mean", "sum", "max"] = "mean"
    fisher_kind: Literal["empirical", "true"] = "empirical"  # Eq. 3 as written: y from the data
    fisher_carry: Literal["latest", "accumulate", "average"] = "latest"  # Eq. 2: F^(t-1) of the previous task
    fisher_samples: int | None = Field(None, gt=0)  # cap on samples for Eq. 3 (None: the whole train split)
    fisher_chunk: int = Field(32, ge=1)  # samples per Fisher forward/backward (memory bound)
    # section 4.4: base-model lr multiplied by this after each marketplace (1 = off). The paper gives no rate, so a
    # sweep chooses it (params/sweeps/cpu_stsb_ewc.yaml tries several) and off stays the default
    lr_decay: float = Field(1.0, gt=0, le=1)


class FrOptions(BaseModel):
    """FR-LoRA Stage II: the Fisher-weighted LoRA penalty (Eq. 4), its optimiser, and projection (Eq. 5)."""

    beta: float = Field(1e-4, ge=0)  # section 5.1; 0 = the "without FR" arm of Figure 3a
    fr_eps: float = Field(1e-8, gt=0)  # not given in the paper
    # Eq. 4's weights (issue 29's mechanism controls, frkit/core/penalties.py): "fisher" 1/(F+eps) as the paper has
    # it; "uniform": each matrix's mean weight everywhere in it (a plain L2 brake, each matrix's sum of weights kept);
    # "shuffled": the same weights permuted within each matrix (seeded by seed + marketplace step)
    fr_weighting: Literal["fisher", "uniform", "shuffled"] = "fisher"
    stage2_lr: float = Field(1e-5, gt=0)  # section 5.1: 1e-5, constant schedule, 1000 warm-up steps
    stage2_schedule: Literal["cosine", "constant"] = "constant"
    stage2_warmup_steps: int = Field(1000, ge=0)
    projection: bool = False  # Algorithm 1 lines 14-16: project older LoRAs onto the last one's subspaces


class AdapterOptions(BaseModel):
    """Bottleneck adapters, AdapterFusion and Attention Distillation (seed 2, section 4, Appendix B)."""

    adapter_reduction: int = Field(16, ge=1)  # Pfeiffer reduction factor: bottleneck = hidden / 16
    # Appendix B, Table 3 trains the language adapters at 5e-5 too; None keeps the shared PEFT rate
    # ``adapter_lr`` (FR-LoRA's 3e-4) so that every adapter method of the kit trains at one rate by default
    language_adapter_lr: float | None = Field(None, gt=0)
    fusion_lr: float = Field(5e-5, gt=0)  # Appendix B, Table 3: learning rate 5e-5
    # AdapterHub's default ("dynamic") fusion adds 0.01 * sum_l ||I - V_l||_F^2 to the fusion-stage loss, keeping
    # the value matrices near the identity they start from; False trains V freely
    fusion_value_regularization: bool = True
    translate_fraction: float = Field(0.3, ge=0, le=1)  # Figure 4: 30% best; 0 = no translation (section 4.2)
    translator: Literal["parallel", "marian"] = "parallel"  # parallel: same pair id in the older language (PAWS-X)
    translation_cache: str | None = None  # Marian translations on disk (default <output_dir>/translation_cache)
    distill_weight: float = Field(1.0, ge=0)  # Eq. 10: L_t + L_AD (weight 1 in the paper)
    distill_renormalise: bool = False  # Eq. 9 as written: the student's old-adapter scores are not renormalised
    # Eq. 9 sums over batch, tokens and adapters ("sum", over layers too); "mean" averages over real tokens
    # and layers so that distill_weight does not depend on batch size, length or depth (frkit/core/distill.py)
    distill_reduction: Literal["mean", "sum"] = "mean"
