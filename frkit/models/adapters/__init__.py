"""Pfeiffer bottleneck adapters and AdapterFusion with differentiable scores (AD paper §4.1-4.2)."""

from frkit.models.adapters.bottleneck import BottleneckAdapter
from frkit.models.adapters.fusion import AdapterFusion, FusionSoftmax
from frkit.models.adapters.inject import AdaptedOutput, AdapterStack

__all__ = ["AdaptedOutput", "AdapterFusion", "AdapterStack", "BottleneckAdapter", "FusionSoftmax"]
