"""OPCM (Tang et al. 2025), FR-LoRA Table 1's "OPCM + Sequential FT" / "OPCM + Independent FT".

Each new task vector enters the merged one after its components on the merged update's leading singular
directions are projected out (Linear weights only), and the merged vector is rescaled to the average task-vector
norm (frkit/core/merging.py). Fine-tuning and scoring: frkit/methods/task_vectors.py.
"""

from __future__ import annotations

from pydantic import BaseModel, Field
from torch import nn

from frkit.core.merging import opcm_step
from frkit.methods.registry import register
from frkit.methods.task_vectors import MergeOptions, TaskVectorMerging


class OpcmOptions(BaseModel):
    """OPCM's projection threshold."""

    opcm_alpha: float = Field(0.5, gt=0, lt=1)  # share of singular-value mass protected; fusion_bench's default 0.5


@register
class Opcm(TaskVectorMerging):
    name = "opcm"
    option_groups = (MergeOptions, OpcmOptions)

    def merge(self, merged, tau):
        linear = {f"{n}.weight" for n, m in self.model.encoder.named_modules() if isinstance(m, nn.Linear)}
        return opcm_step(merged, tau, self.merge_state, self.cfg.opcm_alpha, projected=linear)
