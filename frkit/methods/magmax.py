"""MagMax (Marczak et al. 2024), FR-LoRA Table 1's "MagMax + Sequential FT" and "MagMax + Independent FT".

for each marketplace t:
  1. fine-tune the encoder and a new head t on D_t, starting from theta_{t-1} (sequential, MagMax's own recipe)
     or from the pre-trained theta_0 (``magmax_finetuning: independent``)
  2. task vector tau_t = theta_t - theta_0; merged vector = entry-wise max magnitude over tau_1..tau_t
  3. the scoring encoder is theta_0 + magmax_scale * merged vector (frkit/core/merging.py)
Every marketplace is scored with that merged encoder and its own head (trained on theta_t, not re-fitted).
"""
from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field
from safetensors.torch import load_file, save_file

from frkit.core.merging import apply_task_vector, max_magnitude, task_vector
from frkit.methods import register
from frkit.methods.sequential import Sequential


class MagMaxOptions(BaseModel):
    """How MagMax's task vectors are fine-tuned and applied."""

    magmax_finetuning: Literal["sequential", "independent"] = "sequential"  # FR-LoRA Table 1 has both rows
    magmax_scale: float = Field(0.5, gt=0)  # lambda; MagMax's released code merges with 0.5


def _state(module) -> dict:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


@register
class MagMax(Sequential):
    name = "magmax"
    option_groups = (MagMaxOptions,)

    def __init__(self, cfg, ctx):
        super().__init__(cfg, ctx)  # self.model: the fine-tuned encoder theta_t and every head
        self.pretrained = _state(self.model.encoder)  # theta_0
        self.merged_tau = None
        self.scoring = ctx.new_model()  # theta_0 + lambda * tau_MagMax, sharing self.model's heads
        self.scoring.heads = self.model.heads

    def learn(self, step, marketplace, seen):
        if self.cfg.magmax_finetuning == "independent":
            self.model.encoder.load_state_dict(self.pretrained)
        log = super().learn(step, marketplace, seen)
        tau = task_vector(self.model.encoder.state_dict(), self.pretrained)
        self.merged_tau = max_magnitude(self.merged_tau, tau)
        self.refresh_scoring()
        return log

    def refresh_scoring(self) -> None:
        self.scoring.encoder.load_state_dict(apply_task_vector(self.pretrained, self.merged_tau, self.cfg.magmax_scale))

    def model_for(self, name):
        return self.scoring, name

    def save(self, folder: Path):
        super().save(folder)
        save_file({k: v.contiguous().cpu() for k, v in self.merged_tau.items()}, str(folder / "magmax_tau.safetensors"))

    def load(self, folder: Path):
        super().load(folder)
        self.merged_tau = load_file(str(folder / "magmax_tau.safetensors"), device=str(self.ctx.device))
        self.refresh_scoring()

