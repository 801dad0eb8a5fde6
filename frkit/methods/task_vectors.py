"""Shared by the merging baselines of FR-LoRA Table 1 (MagMax, OPCM): fine-tune, take task vectors, merge, score.

for each marketplace t:
  1. fine-tune the encoder and a new head t on D_t, from theta_{t-1} (``merge_finetuning: sequential``) or from
     the pre-trained theta_0 (``independent``): Table 1's "+ Sequential FT" and "+ Independent FT" rows
  2. task vector tau_t = theta_t - theta_0, folded into the merged vector by the subclass's ``merge``
  3. the scoring encoder is theta_0 + the merged vector (scaled by ``scoring_scale``)
Every marketplace is scored with that merged encoder and its own head (trained on theta_t, not re-fitted).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel
from safetensors.torch import load_file

from frkit import atomic
from frkit.core.merging import apply_task_vector, task_vector
from frkit.methods.sequential import Sequential


class MergeOptions(BaseModel):
    """How the task vectors of the merging baselines are fine-tuned."""

    merge_finetuning: Literal["sequential", "independent"] = "sequential"


def _state(module) -> dict:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


class TaskVectorMerging(Sequential):
    """Subclasses implement ``merge(merged, tau)`` and may keep extra JSON-able ``merge_state``."""

    def __init__(self, cfg, ctx):
        super().__init__(cfg, ctx)  # self.model: the fine-tuned encoder theta_t and every head
        self.pretrained = _state(self.model.encoder)  # theta_0
        self.merged_tau = None
        self.merge_state: dict = {}
        self.scoring = ctx.new_model()  # theta_0 + scale * merged vector, sharing self.model's heads
        self.scoring.heads = self.model.heads

    def merge(self, merged, tau):
        raise NotImplementedError

    def scoring_scale(self) -> float:
        return 1.0

    def learn(self, step, marketplace, seen):
        if self.cfg.merge_finetuning == "independent":
            self.model.encoder.load_state_dict(self.pretrained)
        log = super().learn(step, marketplace, seen)
        tau = task_vector(self.model.encoder.state_dict(), self.pretrained)
        self.merged_tau = self.merge(self.merged_tau, tau)
        self.refresh_scoring()
        return log

    def refresh_scoring(self) -> None:
        self.scoring.encoder.load_state_dict(apply_task_vector(self.pretrained, self.merged_tau, self.scoring_scale()))

    def model_for(self, name):
        return self.scoring, name

    def save(self, folder: Path):
        super().save(folder)
        atomic.save_tensors(folder / "merged_tau.safetensors", self.merged_tau)
        atomic.write_json(folder / "merge_state.json", self.merge_state, indent=None)

    def load(self, folder: Path):
        super().load(folder)
        self.merged_tau = load_file(str(folder / "merged_tau.safetensors"), device=str(self.ctx.device))
        self.merge_state = json.loads((folder / "merge_state.json").read_text())
        self.refresh_scoring()
