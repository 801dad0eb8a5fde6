"""CTR (Ke et al. 2021): the CL-plugin on the kit's encoder, an AD paper Table 2 baseline.

After the paper ("Achieving Forgetting Prevention and Knowledge Transfer in Continual Learning") and its released
code (PyContinual: ``networks/base/adapters.py``, ``BertAdapterCapsuleMaskImp``, ``CapsNetImp``, ``CapsuleLayerImp``
with ``transfer_route`` and ``larger_as_share``, the ``ctr`` arguments of ``load_base_args.py``). Per layer:

    knowledge-sharing module (KSM):
        p_i = squash(W_i h)                       task capsule layer (TK-Layer): one capsule per task i <= t
        u_{j|i} = V_{ij} p_i                      pre-route vectors for transfer capsules j = 1..n
        transfer routing, for every task i <= t (later tasks blocked):
            similarity estimator: CNNs over the sequence of u_{.|t} (current task) and of u_{.|i}:
                z_i = maxpool ReLU(Conv(u_{.|i}) + Linear(maxpool ReLU(Conv(u_{.|t}))))      kernels 3, 4, 5, 100 maps
                a_i = Linear(z_i)                 similarity attention over the transfer-capsule entries
            task router: d_i = the first entry of a hard Gumbel-softmax over Linear(z_i) (2-way): transfer or not
            v_j = sum_i d_i a_ij u_{j|i}          transfer capsules
        k = Linear([v_1..v_n])                    up to the hidden size, shared by all tasks (``larger_as_share``)
    task-specific module (TSM): HAT's gated adapter (``hat.MaskedAdapter``) on h + k
and HAT's training (``hat.py``). As the code does it: task capsules and pre-route weights of tasks i <= t, the
similarity estimator, the router and ``larger`` all keep training on task t; only the TSM's units that older tasks
use are frozen (so older marketplaces' scores may move through the shared KSM, by design of the knowledge transfer).

Departures from the code, each for a reason:
  * capsules per token (the code's reshapes tie its capsule layer to the padded max_seq_length), each task capsule
    squashed on its own, V_{ij} of ``capsule_dim`` x ``capsule_dim`` (the code's 3 x 3), n = ``capsules`` (3);
  * the CNNs skip padding: padded token states are zeroed, each sequence is padded on the right by kernel - 1 zeros,
    positions past its length are left out of the max-pool, so a pair scores the same in any batch (the code's
    padding is always max_seq_length and enters the pooling); the current-task CNN uses the same valid-window
    convolution as the others (the code pads it by kernel - 2 on both sides);
  * the router is deterministic at test time (arg max of its two logits, the zero-temperature limit of the Gumbel
    softmax); the code samples Gumbel noise in evaluation too;
  * one CL-plugin per layer after the FFN block, of width hidden / ``adapter_reduction`` (the code: two per layer,
    2,000 units); frozen LayerNorms; AdamW without decay (see ``hat.py``); one linear layer per task capsule, as the
    code's ``apply_one_layer_shared`` (the paper writes a 2-layer network).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from frkit.methods.b_cl import CapsuleOptions, TaskCapsules
from frkit.methods.hat import Hat, HatOptions, HatState, MaskedAdapter
from frkit.methods.options import AdapterOptions
from frkit.methods.registry import register

KERNELS = (3, 4, 5)  # the code's Ks for transfer_route
CHANNELS = 100  # the code's Co


def transfer_route(u: torch.Tensor, attention: torch.Tensor, gates: torch.Tensor) -> torch.Tensor:
    """v = sum_i d_i a_i u_i: ``u`` [B, L, T, D] pre-route vectors (D = capsules x dim, flat), ``attention`` [B, T, D],
    ``gates`` [B, T] (0 or 1) -> transfer capsules [B, L, D]."""
    return (gates[:, None, :, None] * attention[:, None] * u).sum(2)


def router_gate(logits: torch.Tensor, training: bool) -> torch.Tensor:
    """The task router's decision d (0/1) from its two logits [..., 2]: a hard Gumbel-softmax sample in training
    (straight-through gradient), the arg max in evaluation."""
    if training:
        return F.gumbel_softmax(logits.float(), tau=1.0, hard=True)[..., 0].to(logits.dtype)
    return (logits[..., 0] >= logits[..., 1]).to(logits.dtype)


def masked_conv_max(conv: nn.Conv1d, x: torch.Tensor, mask: torch.Tensor, extra: torch.Tensor | None = None):
    """max over positions of ReLU(conv(x) + extra): x [B, L, C] with padding zeroed and k - 1 zeros appended, only
    windows starting at a real token pooled (ReLU >= 0, so zeroing the rest leaves the max unchanged) -> [B, C_out]."""
    m = mask.to(x.dtype)
    xt = F.pad((x * m.unsqueeze(-1)).transpose(1, 2), (0, conv.kernel_size[0] - 1))
    y = conv(xt)
    if extra is not None:
        y = y + extra.unsqueeze(-1)
    return (torch.relu(y) * m.unsqueeze(1)).amax(-1)


class SimilarityEstimator(nn.Module):
    """CTR's similarity estimator and task router over the pre-route vectors of every routed task."""

    def __init__(self, dim: int):
        super().__init__()
        self.convs_cur = nn.ModuleList(nn.Conv1d(dim, CHANNELS, k) for k in KERNELS)
        self.convs = nn.ModuleList(nn.Conv1d(dim, CHANNELS, k) for k in KERNELS)
        self.fc_cur = nn.Linear(CHANNELS * len(KERNELS), CHANNELS)
        self.fc_sim = nn.Linear(CHANNELS * len(KERNELS), dim)
        self.router = nn.Linear(CHANNELS * len(KERNELS), 2)  # the code's 1x1 Conv1d(300, 2)

    def forward(self, u: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """u [B, L, T, D] (the current task last), mask [B, L] -> (attention a [B, T, D], gates d [B, T])."""
        cur = self.fc_cur(torch.cat([masked_conv_max(c, u[:, :, -1], mask) for c in self.convs_cur], dim=-1))
        z = torch.stack(
            [
                torch.cat([masked_conv_max(c, u[:, :, i], mask, cur) for c in self.convs], dim=-1)
                for i in range(u.shape[2])
            ],
            dim=1,
        )  # [B, T, 300]
        return self.fc_sim(z), router_gate(self.router(z), self.training)


class CtrAdapter(MaskedAdapter):
    """CTR's CL-plugin: KSM (task capsules, transfer routing, shared ``larger``) feeding the TSM (HAT's adapter)."""

    def __init__(self, hidden_size: int, bottleneck: int, state: HatState, capsules: int, capsule_dim: int):
        super().__init__(hidden_size, bottleneck, state)
        self.tcl = TaskCapsules(hidden_size, capsules, capsule_dim)
        self.se = SimilarityEstimator(capsules * capsule_dim)
        self.larger = nn.Linear(capsules * capsule_dim, hidden_size)

    def add_task(self, name: str) -> None:
        super().add_task(name)
        self.tcl.add_task(name, self.down.weight)

    def shared_parameters(self):
        return super().shared_parameters() + list(self.se.parameters()) + list(self.larger.parameters())

    def task_parameters(self, name):
        return self.embeddings(name) + self.tcl.parameters_up_to(name)

    def ksm(self, h: torch.Tensor, name: str) -> torch.Tensor:
        u = self.tcl.priors(h, self.tcl.up_to(name)).flatten(-2)  # [B, L, T, capsules x dim]
        mask = self.state.attention_mask
        if mask is None or mask.shape != h.shape[:2]:
            mask = h.new_ones(h.shape[:2])
        attention, gates = self.se(u, mask)
        return self.larger(transfer_route(u, attention, gates))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        masks = self.unit_masks(self.state.task, self.slope())
        return self.gated(h + self.ksm(h, self.state.task), masks)


@register
class CTR(Hat):
    name = "ctr"
    option_groups = (AdapterOptions, HatOptions, CapsuleOptions)

    def make_adapter(self, hidden_size: int) -> CtrAdapter:
        c = self.cfg
        return CtrAdapter(
            hidden_size, max(1, int(hidden_size // c.adapter_reduction)), self.state, c.capsules, c.capsule_dim
        )
