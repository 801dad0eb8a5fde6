"""B-CL (Ke, Xu, Liu 2021): the continual-learning adapter (CLA) on the kit's encoder, an AD paper Table 2 baseline.

After the paper and its released code (PyContinual: ``networks/base/adapters.py``, ``BertAdapterCapsuleMask`` and
``CapsNet``/``CapsuleLayer``; ``approaches/classification/bert_adapter_capsule_mask.py``). In every layer the CLA is

    knowledge-sharing module (KSM):
        p_i = squash(W_i h)                              one task capsule per task i <= t  (task capsule layer)
        u_{j|i} = V_{ij} p_i                             predictions for knowledge-sharing capsules j = 1..n
        dynamic routing, r iterations, only over tasks i <= t (later tasks blocked, the code's ``tsv`` mask):
            c_{ij} = softmax_i(b_{ij});  s_j = sum_i c_{ij} u_{j|i};  v_j = squash(s_j);  b_{ij} += u_{j|i} . v_j
        k = Linear([s_1..s_n]) * sigmoid(s e^k_t)        up to the hidden size, HAT-gated (the code's ``larger``)
    task-specific module (TSM): HAT's gated adapter (``hat.MaskedAdapter``) on h + k
and HAT's training (``hat.py``: annealed slope, mask regulariser, gradient masks on the TSM and ``larger`` units older
tasks use, embedding compensation and clamping). As in the code, the task capsules and routing weights of tasks
i <= t keep training while task t is learned (the ``tsv`` gradient mask opens them; it only shuts later tasks'):
that shared part is B-CL's knowledge transfer, so older tasks' scores may move (their TSM and ``larger`` units may
not). The coupling coefficients are normalised over the task capsules (the code's softmax over the route axis),
and the KSM passes on s_j, the last iteration's un-squashed vote, as the code does.

Departures from the code, each for a reason:
  * capsules per token: the code's capsule layer maps a whole padded sequence (max_seq_length x 3) to capsules whose
    dimension is max_seq_length, which fixes the input length; here every token routes alone with V_{ij} of
    ``capsule_dim`` x ``capsule_dim`` (the code's semantic_cap_size = num_semantic_cap = 3 kept as the defaults),
    and each task capsule vector is squashed on its own (the code squashes across tasks after a reshape);
  * one CLA per layer after the FFN block (the kit's Pfeiffer placement), not two Houlsby ones, of width
    hidden / ``adapter_reduction``, not 2,000; frozen LayerNorms; AdamW without decay (see ``hat.py``);
  * capsules and ``larger`` units are added per marketplace as it arrives instead of for a fixed number of tasks.
"""

from __future__ import annotations

import torch
from pydantic import BaseModel, Field
from torch import nn

from frkit.methods.hat import Hat, HatOptions, HatState, MaskedAdapter, unit_mask, used_by
from frkit.methods.options import AdapterOptions
from frkit.methods.registry import register


class CapsuleOptions(BaseModel):
    """Task capsules of B-CL and CTR (Ke et al.'s code: semantic_cap_size = num_semantic_cap = 3)."""

    capsule_dim: int = Field(3, ge=1)  # size of a task capsule and of a knowledge-sharing / transfer capsule
    capsules: int = Field(3, ge=1)  # knowledge-sharing (B-CL) or transfer (CTR) capsules per token


class BclOptions(BaseModel):
    bcl_routing_iterations: int = Field(3, ge=1)  # the code's num_iterations


def squash(x: torch.Tensor, dim: int = -1, eps: float = 1e-16) -> torch.Tensor:
    """Sabour et al.'s non-linearity: |x|^2 / (1 + |x|^2) * x / |x| (eps as the code, for an all-zero capsule)."""
    n2 = (x * x).sum(dim, keepdim=True)
    return n2 / (1 + n2) * x / torch.sqrt(n2 + eps)


def dynamic_routing(priors: torch.Tensor, iterations: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Routing by agreement over ``priors`` [..., tasks, capsules, dim].

    Returns (s [..., capsules, dim], c [..., tasks, capsules]).

    c = softmax over the task axis of b (b starts at 0); s_j = sum_i c_ij u_j|i; b_ij += u_j|i . squash(s_j)
    between iterations. Returns the last iteration's s and c.
    """
    b = priors.new_zeros(priors.shape[:-1])
    for i in range(iterations):
        c = torch.softmax(b, dim=-2)
        s = (c.unsqueeze(-1) * priors).sum(-3)
        if i < iterations - 1:
            b = b + (priors * squash(s).unsqueeze(-3)).sum(-1)
    return s, c


class TaskCapsules(nn.Module):
    """The task capsule layer and the routing weights: p_i = squash(W_i h), u_{j|i} = V_{ij} p_i per task i."""

    def __init__(self, hidden_size: int, capsules: int, capsule_dim: int):
        super().__init__()
        self.hidden_size, self.capsules, self.capsule_dim = hidden_size, capsules, capsule_dim
        self.caps = nn.ModuleDict()
        self.routes = nn.ParameterDict()

    def add_task(self, name: str, like: torch.Tensor) -> None:
        self.caps[name] = nn.Linear(self.hidden_size, self.capsule_dim).to(device=like.device, dtype=like.dtype)
        # the code's route_weights: torch.randn, here [capsules j, out dim, in dim] for task i
        self.routes[name] = nn.Parameter(
            torch.randn(self.capsules, self.capsule_dim, self.capsule_dim, device=like.device, dtype=like.dtype)
        )

    def up_to(self, name: str) -> list[str]:
        """Tasks 1..t in the order learned: the ones task ``name`` routes over (later tasks are blocked)."""
        names = list(self.caps)
        return names[: names.index(name) + 1]

    def parameters_up_to(self, name: str) -> list[nn.Parameter]:
        return [p for n in self.up_to(name) for p in (*self.caps[n].parameters(), self.routes[n])]

    def priors(self, h: torch.Tensor, names: list[str]) -> torch.Tensor:
        """u_{j|i} for every token: [batch, tokens, tasks, capsules, dim]."""
        p = torch.stack([squash(self.caps[n](h)) for n in names], dim=-2)  # [B, L, T, d]
        routes = torch.stack([self.routes[n] for n in names])  # [T, n, d, d]
        return torch.einsum("tjoi,blti->bltjo", routes.to(p.dtype), p)


class BclAdapter(MaskedAdapter):
    """B-CL's CLA: KSM (task capsules, dynamic routing, gated ``larger``) feeding the TSM (the HAT-gated adapter)."""

    def __init__(
        self, hidden_size: int, bottleneck: int, state: HatState, capsules: int, capsule_dim: int, iterations: int
    ):
        super().__init__(hidden_size, bottleneck, state)
        self.iterations = iterations
        self.tcl = TaskCapsules(hidden_size, capsules, capsule_dim)
        self.larger = nn.Linear(capsules * capsule_dim, hidden_size)
        self.e_larger = nn.ParameterDict()

    def add_task(self, name: str) -> None:
        super().add_task(name)
        w = self.down.weight
        self.tcl.add_task(name, w)
        self.e_larger[name] = nn.Parameter(torch.randn(self.larger.out_features, device=w.device, dtype=w.dtype))

    def embeddings(self, name):
        return super().embeddings(name) + [self.e_larger[name]]

    def shared_parameters(self):
        return super().shared_parameters() + list(self.larger.parameters())

    def task_parameters(self, name):
        return self.embeddings(name) + self.tcl.parameters_up_to(name)

    def unit_masks(self, name, s):
        return {**super().unit_masks(name, s), "larger": unit_mask(self.e_larger[name], s)}

    def protected(self, older):
        out = super().protected(older)
        out[self.larger.weight] = used_by(older["larger"], None, self.larger.weight)
        out[self.larger.bias] = older["larger"]
        return out

    def ksm(self, h: torch.Tensor, name: str, larger_mask: torch.Tensor) -> torch.Tensor:
        votes, _ = dynamic_routing(self.tcl.priors(h, self.tcl.up_to(name)), self.iterations)
        return self.larger(votes.flatten(-2)) * larger_mask.to(h.dtype)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        masks = self.unit_masks(self.state.task, self.slope())
        return self.gated(h + self.ksm(h, self.state.task, masks["larger"]), masks)


@register
class BCL(Hat):
    name = "b_cl"
    option_groups = (AdapterOptions, HatOptions, CapsuleOptions, BclOptions)

    def make_adapter(self, hidden_size: int) -> BclAdapter:
        c = self.cfg
        return BclAdapter(
            hidden_size,
            max(1, int(hidden_size // c.adapter_reduction)),
            self.state,
            c.capsules,
            c.capsule_dim,
            c.bcl_routing_iterations,
        )
