"""AdapterFusion (Pfeiffer et al. 2021), AD paper Eq. 1-4, with scores kept in the autograd graph.

At layer l and token j, with h the layer's sub-layer output (the query) and z_t the update of
adapter t (keys and values):

    s_{l,j}     = softmax_t( h_{l,j}^T Q_l · z_{l,j,t}^T K_l )        (Eq. 1)
    z'_{l,j,t}  = z_{l,j,t}^T V_l                                    (Eq. 2)
    Z'_{l,j}    = [z'_{l,j,1}, ..., z'_{l,j,n}]                      (Eq. 3)
    o_{l,j}     = s_{l,j}^T Z'_{l,j}          (+ the residual r)     (Eq. 4)

As in AdapterHub's ``BertFusion`` (dynamic config): Q and K are biased Linear layers, V is a
bias-free Linear initialised to the identity (1e-6 off the diagonal) so that fusion starts as a
plain average of adapter updates; dropout (the encoder's attention dropout) acts on the logits;
no 1/sqrt(d) scaling; the residual is added after mixing. ``value_regularization`` is
AdapterHub's 0.01 · ||I - V||^2 term.

``FusionSoftmax`` is its own module so that the attention distillation of Eq. 9 can read s_{l,j}
of the last forward *as computed*, graph included (AdapterHub returns them detached as numpy).
"""

from __future__ import annotations

import torch
from torch import nn

from frkit.core.fp32 import full_precision

VALUE_REG_WEIGHT = 0.01  # AdapterHub's get_fusion_regularization_loss


class FusionSoftmax(nn.Module):
    """softmax over the adapter axis (Eq. 1); keeps its output of the last forward when ``capture``.

    The stored tensor is the one used downstream (no detach, no recomputation), so a loss on
    ``scores`` backpropagates into the fusion's Q and K. The softmax runs in float32 (under bf16
    the KL of Eq. 9 would be quantised to a few bits) and is cast back to the logits' dtype for
    the mix. Not capturing stores nothing, so normal training holds no extra references.
    """

    def __init__(self):
        super().__init__()
        self.capture = False
        self.scores: torch.Tensor | None = None  # [batch, seq, n_adapters]

    def forward(self, logits: torch.Tensor, temperature: float | torch.Tensor = 1.0) -> torch.Tensor:
        probs = torch.softmax(logits.float() / temperature, dim=-1)
        self.scores = probs if self.capture else None
        return probs.to(logits.dtype)


class AdapterFusion(nn.Module):
    """One fusion layer: ``forward(query [b,s,h], updates [b,s,n,h], residual [b,s,h]) -> [b,s,h]``.

    temperature: fixed softmax temperature T (1 = Eq. 1 as written). With ``anneal_temperature``
    T starts there and falls by T/1000 per *training* forward down to 1 — AdapterHub's
    ``temperature=True`` schedule uses T=50; unlike AdapterHub we do not anneal in eval mode.
    """

    def __init__(
        self,
        hidden_size: int,
        dropout: float = 0.1,
        temperature: float = 1.0,
        anneal_temperature: bool = False,
        value: bool = True,
    ):
        super().__init__()
        self.query = nn.Linear(hidden_size, hidden_size)
        self.key = nn.Linear(hidden_size, hidden_size)
        self.value = nn.Linear(hidden_size, hidden_size, bias=False) if value else None
        self.dropout = nn.Dropout(dropout)
        self.softmax = FusionSoftmax()
        self.anneal_step = temperature / 1000.0 if anneal_temperature else 0.0
        # a buffer, so a saved fusion resumes at the temperature it had reached
        self.register_buffer("temperature", torch.tensor(float(temperature)))
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        for lin in (self.query, self.key):  # "randomly initialised" (AD paper §4.2, step 1)
            lin.weight.normal_(0.0, 0.02)
            lin.bias.zero_()
        if self.value is not None:  # identity-ish: fusion starts by passing adapter updates through
            self.value.weight.fill_(1e-6).fill_diagonal_(1.0)

    def forward(self, query: torch.Tensor, updates: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        with full_precision():  # the scores Eq. 9 distils: fp32 under any autocast
            q = self.query(query.float())  # h^T Q        [b, s, h]
            k = self.key(updates.float())  # z_t^T K      [b, s, n, h]
            logits = torch.einsum("bsh,bsnh->bsn", q, k)
        v = self.value(updates) if self.value is not None else updates  # Eq. 2-3 [b, s, n, h]
        annealing = self.training and self.anneal_step > 0
        # clone before the in-place step below: autograd saved T for the backward of logits / T
        temperature = self.temperature.clone() if annealing else self.temperature
        scores = self.softmax(self.dropout(logits), temperature)  # Eq. 1   [b, s, n]
        if annealing:
            with torch.no_grad():
                self.temperature.sub_(self.anneal_step).clamp_(min=1.0)
        return torch.einsum("bsn,bsnh->bsh", scores.to(v.dtype), v) + residual  # Eq. 4

    def value_regularization(self) -> torch.Tensor:
        """0.01 · ||I - V||_F^2 (AdapterHub's dynamic fusion keeps V near the identity)."""
        if self.value is None:
            return self.query.weight.new_zeros(())
        eye = torch.eye(self.value.weight.shape[0], device=self.value.weight.device, dtype=self.value.weight.dtype)
        return VALUE_REG_WEIGHT * (eye - self.value.weight).pow(2).sum()
