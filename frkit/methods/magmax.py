"""MagMax (Marczak et al. 2024), FR-LoRA Table 1's "MagMax + Sequential FT" / "MagMax + Independent FT".

The merged vector keeps, entry by entry, the task-vector value of largest magnitude (frkit/core/merging.py);
the scoring encoder is theta_0 + magmax_scale * merged vector. Fine-tuning and scoring: frkit/methods/task_vectors.py.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from frkit.core.merging import max_magnitude
from frkit.methods.registry import register
from frkit.methods.task_vectors import MergeOptions, TaskVectorMerging


class MagMaxOptions(BaseModel):
    """MagMax's scaling coefficient lambda."""

    magmax_scale: float = Field(0.5, gt=0)  # MagMax's released code merges with 0.5


@register
class MagMax(TaskVectorMerging):
    name = "magmax"
    option_groups = (MergeOptions, MagMaxOptions)

    def merge(self, merged, tau):
        return max_magnitude(merged, tau)

    def scoring_scale(self) -> float:
        return self.cfg.magmax_scale
