"""The Pfeiffer bottleneck adapter: one small residual MLP per language and layer.

    A_l(h, r) = U_l(ReLU(D_l(h))) + r            (the Pfeiffer adapter as written in MAD-X,
                                                  Pfeiffer et al. 2020b; AD paper §4.1)

``D_l``: hidden -> hidden / reduction_factor (16 for the Pfeiffer config), ``U_l`` back up.
The module returns only the update ``U(ReLU(D(h)))``; the residual ``r`` is added by the layer
wrapper (``inject.py``), because AdapterFusion attends over the updates of several adapters and
adds the residual once, after mixing (as AdapterHub's ``compose_fuse`` does with ``bottleneck_up``).
The AD paper's Eq. 5-6 (Θ_{A_t} added to a frozen Θ_base and trained alone) is how these are used.
"""

from __future__ import annotations

import torch
from torch import nn

INITS = ("bert", "zeros")


class BottleneckAdapter(nn.Module):
    """``forward(h) = up(ReLU(down(h)))`` — the adapter's update, without the residual.

    init="bert": AdapterHub's default for the Pfeiffer config (both projections N(0, 0.02), zero
    biases): the update starts small, so the encoder starts near its pretrained self.
    init="zeros": the up-projection starts at exactly zero (as LoRA's B does), so a fresh adapter
    is an exact identity; gradients still flow (to ``up`` first, then to ``down``).
    """

    def __init__(self, hidden_size: int, reduction_factor: float = 16, init: str = "bert", dropout: float = 0.0):
        super().__init__()
        if init not in INITS:
            raise ValueError(f"adapter init {init!r}: expected one of {INITS}")
        bottleneck = max(1, int(hidden_size // reduction_factor))
        self.down = nn.Linear(hidden_size, bottleneck)
        self.up = nn.Linear(bottleneck, hidden_size)
        self.dropout = nn.Dropout(dropout)
        self.reset_parameters(init)

    @torch.no_grad()
    def reset_parameters(self, init: str = "bert") -> None:
        for lin in (self.down, self.up):
            lin.weight.normal_(0.0, 0.02)
            lin.bias.zero_()
        if init == "zeros":
            self.up.weight.zero_()

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.up(torch.relu(self.down(h))))
