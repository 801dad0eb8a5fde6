"""LoRA inference-time merging (FR-LoRA Table 1, "linear-combining" and "lora_delta_w_svd").

for each marketplace t:
  1. a new LoRA t on the frozen base, trained alone with head t (exactly ``lora``'s step)
  2. the LoRAs learned so far, 1..t, are merged into one adapter with peft's own
     ``add_weighted_adapter(adapters, weights, combination_type)``; the previous merge is deleted first
Every marketplace is scored with that one merged adapter and its own head (heads stay outside peft).

The three registered methods differ only in ``combination_type`` (per layer, Delta W_i = s_i B_i A_i the
update of LoRA i, s_i = lora_alpha / r, weights w_i):

  lora_merge_linear  peft "linear": A = sum_i sqrt(w_i s_i) A_i, B = sum_i sqrt(w_i s_i) B_i, scaling 1, so
                     Delta W = sum_i sum_j sqrt(w_i s_i w_j s_j) B_i A_j. This is NOT the weighted sum of the
                     Delta W_i: the cross terms B_i A_j (i != j) stay (peft's docstring: "a very rough
                     approximation"); equal to it for one adapter. Kept as peft computes it because the
                     table's row is peft's "linear" combination.
  lora_merge_svd     peft "svd": the rank-``merge_svd_rank`` truncated SVD of sum_i w_i Delta W_i.
  lora_merge_cat     peft "cat": A and B stacked, rank t*r, Delta W = sum_i w_i Delta W_i exactly. Not a row
                     of the paper: the exact weighted sum, for comparison with the two approximations.

Weights: ``merge_weights`` gives one weight per marketplace in training order and the merge after t
marketplaces uses the first t as given; by default every learned LoRA gets 1/t (their mean). Only the
merged adapter scores: marketplace k's own LoRA is never used alone at inference (that is ``lora``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, ClassVar

from pydantic import BaseModel, Field

from frkit.methods.lora import Lora
from frkit.methods.options import LoraOptions
from frkit.methods.registry import register

MERGED = "merged"  # the merged adapter's name (a marketplace may not have it)


class LoraMergeOptions(BaseModel):
    """Weights and rank of the inference-time merge (the paper gives neither: equal weights, the adapters' rank)."""

    merge_weights: list[Annotated[float, Field(ge=0)]] | None = Field(
        None, min_length=1
    )  # per marketplace, training order; None: 1/t each
    merge_svd_rank: int | None = Field(None, ge=1)  # lora_merge_svd: rank of the merged adapter (None: lora_rank)


class LoraMerge(Lora):
    """A LoRA per marketplace, scored through one merged adapter; subclasses set ``combination_type``."""

    option_groups = (LoraOptions, LoraMergeOptions)
    combination_type: ClassVar[str]

    @classmethod
    def check_options(cls, cfg) -> list[str]:
        problems = super().check_options(cfg)
        w = cfg.merge_weights
        if w is not None and len(w) != len(cfg.marketplaces):  # each weight >= 0: its field
            problems.append(
                f"key 'merge_weights': one weight per marketplace expected, got {len(w)} weights "
                f"for {len(cfg.marketplaces)} marketplaces {cfg.marketplaces}"
            )
        if cfg.merge_svd_rank is not None and cfg.merge_svd_rank > cfg.lora_rank:
            problems.append(
                f"key 'merge_svd_rank': {cfg.merge_svd_rank} is above the adapters' rank (lora_rank {cfg.lora_rank})"
            )
        if MERGED in cfg.marketplaces:
            problems.append(f"key 'marketplaces': {MERGED!r} is the merged adapter's name; rename that marketplace")
        return problems

    def weights(self) -> list[float]:
        t = len(self.learned)
        return [1.0 / t] * t if self.cfg.merge_weights is None else list(self.cfg.merge_weights[:t])

    def merge(self) -> None:
        """Step 2: replace the merged adapter by the merge of every learned LoRA; make it the active one."""
        encoder = self.model.encoder
        if MERGED in encoder.peft_config:
            encoder.set_adapter(self.learned[-1])
            encoder.delete_adapter(MERGED)
        svd_rank = self.cfg.merge_svd_rank or self.cfg.lora_rank
        encoder.base_model.add_weighted_adapter(
            list(self.learned), self.weights(), MERGED, combination_type=self.combination_type, svd_rank=svd_rank
        )
        encoder.set_adapter(MERGED)

    def learn(self, step, marketplace, seen):
        log = super().learn(step, marketplace, seen)  # LoRA t and head t, LoRA t alone active
        self.merge()
        return log

    def model_for(self, name):
        self.model.encoder.set_adapter(MERGED)
        return self.model, name

    def load(self, folder: Path):
        """The checkpoint holds the trained LoRAs and heads (``save`` keeps the learned adapters only): the merge
        is a function of them and is redone here."""
        super().load(folder)
        self.merge()


@register
class LoraMergeLinear(LoraMerge):
    name = "lora_merge_linear"
    combination_type = "linear"


@register
class LoraMergeSvd(LoraMerge):
    name = "lora_merge_svd"
    combination_type = "svd"


@register
class LoraMergeCat(LoraMerge):
    name = "lora_merge_cat"
    combination_type = "cat"
