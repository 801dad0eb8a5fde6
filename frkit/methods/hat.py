"""HAT, Hard Attention to the Task (Serra et al. 2018), on the kit's bottleneck adapters (AD paper, Table 2 baseline).

As Ke et al. apply HAT to BERT (PyContinual, ``bert_adapter_mask``): the encoder is frozen and every layer carries one
adapter shared by all tasks, whose units are gated per task by a learned embedding (HAT's equations, numbered as in
the arXiv version):

    a_t = sigmoid(s * e_t)                                          (Eq. 1)  per task t, layer and unit group
    update(h) = U( ReLU(D h) * a_t^down ) * a_t^up                   the adapter's bottleneck and output units gated
    a^{<t} = max(a_1, ..., a_{t-1}) at s = s_max                    (Eq. 2)  units older tasks use

Training task t (one pass over each epoch's B batches, b = 1..B):
    s_b = 1/s_max + (s_max - 1/s_max) (b - 1)/(B - 1)                (Eq. 4)  the slope anneals within every epoch
    loss = cross-entropy(head t) + c * R,
    R = sum_i a_{t,i} (1 - a^{<t}_i) / sum_i (1 - a^{<t}_i)          (Eq. 6)  (task 1: the mean of a_1)
    grad W_ij *= 1 - min(a^{<t}_i, a^{<t}_j)                          (Eq. 3)  out unit i, in unit j;
                                                                              biases: 1 - a^{<t}_i
    grad e_t  *= s_max (cosh(s e_t) + 1) / (s (cosh(e_t) + 1))        (Eq. 5)  embedding-gradient compensation
    after each step e_t is clamped to [-6, 6]                        (reference code: thres_emb = 6, thres_cosh = 50)
Scoring: marketplace t with its own mask at s = s_max and its own head (HAT knows the task at test time).

Following the paper and Ke et al.'s code: embeddings start N(0, 1); s_max = 400 and c = 0.75; gradient clipping at
10,000 (``hat_max_grad_norm``; the compensated embedding gradients are huge early in an epoch, the kit's usual norm
of 1 would shrink every other gradient to nothing). Departures, each for a reason:
  * one adapter per layer after the FFN block (the kit's Pfeiffer placement, ``frkit/models/adapters``), not Ke et
    al.'s two Houlsby adapters per layer; the width is the kit's ``adapter_reduction`` (hidden / 16), not 2,000 units;
    the update has no activation after the up-projection (the kit's adapter), Ke et al. put one there;
  * the encoder's LayerNorms stay frozen (Ke et al. train them, unmasked, so their old tasks drift);
  * AdamW without weight decay on the adapters and embeddings (decoupled decay would shrink weights of older tasks
    whose gradient HAT masks to zero; the reference code uses SGD in HAT's paper, BertAdam with decay in Ke et al.),
    at the kit's ``adapter_lr``. With Adam a partly open unit (0 < a^{<t} < 1) still moves by a full step, so only
    units whose mask is exactly binary are exactly protected; at s_max = 400 that is any |e| > 0.26;
  * Eq. 4 counts the batches actually run per epoch (``max_steps_per_epoch`` included).

``HatState`` carries the task and slope to every layer's module; ``MaskedAdapter`` is also the task-specific module
(TSM) of B-CL and CTR (``b_cl.py``, ``ctr.py``), which subclass this method.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from pydantic import BaseModel, Field
from safetensors.torch import load_file
from torch import nn

from frkit import atomic
from frkit.methods.base import Method, fit_log
from frkit.methods.options import AdapterOptions
from frkit.methods.registry import register
from frkit.models.adapters import AdapterStack
from frkit.train import cross_entropy_loss

THRES_EMB = 6.0  # reference code: embeddings clamped to [-6, 6] after every step
THRES_COSH = 50.0  # reference code: cosh(s e) evaluated on s e clamped to [-50, 50]
KEY = "hat"  # the name of the masked adapter in every AdaptedOutput block


class HatOptions(BaseModel):
    """HAT's hyper-parameters (paper section 4 and Ke et al.'s code), shared by ``hat``, ``b_cl`` and ``ctr``."""

    hat_smax: float = Field(400.0, gt=1)  # s_max of Eq. 4
    hat_c: float = Field(0.75, ge=0)  # c of Eq. 6: how strongly new tasks are pushed to few units
    hat_max_grad_norm: float | None = Field(10000.0, gt=0)  # the reference code's clipgrad


# --------------------------------------------------------------------------- HAT's equations, pure functions
def unit_mask(e: torch.Tensor, s: float) -> torch.Tensor:
    """Eq. 1: a = sigmoid(s e)."""
    return torch.sigmoid(s * e)


def annealed_slope(b: int, batches: int, smax: float) -> float:
    """Eq. 4 for batch b = 0..B-1 of an epoch (the paper counts from 1): 1/s_max at the first, s_max at the last."""
    if batches <= 1:
        return smax
    return 1.0 / smax + (smax - 1.0 / smax) * b / (batches - 1)


def mask_regulariser(masks: list[torch.Tensor], older: list[torch.Tensor] | None) -> torch.Tensor:
    """Eq. 6: R = sum a_t (1 - a^{<t}) / sum (1 - a^{<t}) over every unit; the mean of a_t for the first task.

    ``masks`` and ``older`` are lists of unit-mask vectors in the same order. With every unit already used by older
    tasks the denominator is zero and so is R (nothing left to keep free).
    """
    if older is None:
        return sum(m.sum() for m in masks) / sum(m.numel() for m in masks)
    free = [1 - o for o in older]
    denominator = sum(f.sum() for f in free)
    if float(denominator) == 0.0:
        return masks[0].new_zeros(())
    return sum((m * f).sum() for m, f in zip(masks, free)) / denominator


def compensation(e: torch.Tensor, s: float, smax: float) -> torch.Tensor:
    """Eq. 5's factor: s_max (cosh(clamp(s e)) + 1) / (s (cosh(e) + 1)), multiplied into the embeddings' gradient."""
    num = torch.cosh(torch.clamp(s * e, -THRES_COSH, THRES_COSH)) + 1
    return smax / s * num / (torch.cosh(e) + 1)


def used_by(out_mask: torch.Tensor, in_mask: torch.Tensor | None, weight: torch.Tensor) -> torch.Tensor:
    """min(a_i, a_j) of Eq. 3 laid out like ``weight`` (out x in), or a_i for a bias / an ungated input."""
    if weight.dim() == 1:
        return out_mask
    out = out_mask.view(-1, 1).expand_as(weight)
    return out if in_mask is None else torch.minimum(out, in_mask.view(1, -1).expand_as(weight))


# --------------------------------------------------------------------------- the masked adapter
@dataclass
class HatState:
    """What every layer's module reads during a forward: the task, the training slope, the attention mask."""

    smax: float = 400.0
    task: str | None = None
    s: float = 400.0  # the training slope (Eq. 4); eval mode always uses s_max
    attention_mask: torch.Tensor | None = field(default=None, repr=False)


class MaskedAdapter(nn.Module):
    """The kit's bottleneck adapter, shared by all tasks, with HAT's gates on its bottleneck and output units.

    Also B-CL's and CTR's task-specific module (TSM). Subclasses add unit groups through ``unit_masks``/``protected``.
    """

    def __init__(self, hidden_size: int, bottleneck: int, state: HatState):
        super().__init__()
        self.state = state
        self.down = nn.Linear(hidden_size, bottleneck)
        self.up = nn.Linear(bottleneck, hidden_size)
        for lin in (self.down, self.up):  # the kit's adapter init (AdapterHub's "bert")
            nn.init.normal_(lin.weight, 0.0, 0.02)
            nn.init.zeros_(lin.bias)
        self.e_down = nn.ParameterDict()
        self.e_up = nn.ParameterDict()

    # tasks ------------------------------------------------------------------------------------
    def add_task(self, name: str) -> None:
        """Task embeddings e_t, N(0, 1) as in HAT's code (torch.nn.Embedding's init)."""
        w = self.down.weight
        self.e_down[name] = nn.Parameter(torch.randn(self.down.out_features, device=w.device, dtype=w.dtype))
        self.e_up[name] = nn.Parameter(torch.randn(self.up.out_features, device=w.device, dtype=w.dtype))

    def embeddings(self, name: str) -> list[nn.Parameter]:
        return [self.e_down[name], self.e_up[name]]

    def shared_parameters(self) -> list[nn.Parameter]:
        """Weights every task uses (the ones HAT's gradient masks protect)."""
        return [*self.down.parameters(), *self.up.parameters()]

    def task_parameters(self, name: str) -> list[nn.Parameter]:
        """What else trains while learning task ``name``: its embeddings."""
        return self.embeddings(name)

    # masks ------------------------------------------------------------------------------------
    def slope(self) -> float:
        return self.state.s if self.training else self.state.smax

    def unit_masks(self, name: str, s: float) -> dict[str, torch.Tensor]:
        return {"down": unit_mask(self.e_down[name], s), "up": unit_mask(self.e_up[name], s)}

    def protected(self, older: dict[str, torch.Tensor]) -> dict[nn.Parameter, torch.Tensor]:
        """Eq. 3: for each shared weight, how much older tasks use each entry (the gradient keeps 1 - this)."""
        down, up = older["down"], older["up"]
        return {
            self.down.weight: used_by(down, None, self.down.weight),
            self.down.bias: down,
            self.up.weight: used_by(up, down, self.up.weight),
            self.up.bias: up,
        }

    # forward ----------------------------------------------------------------------------------
    def gated(self, h: torch.Tensor, masks: dict[str, torch.Tensor]) -> torch.Tensor:
        z = torch.relu(self.down(h)) * masks["down"].to(h.dtype)
        return self.up(z) * masks["up"].to(h.dtype)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.gated(h, self.unit_masks(self.state.task, self.slope()))


# --------------------------------------------------------------------------- the method
@register
class Hat(Method):
    name = "hat"
    option_groups = (AdapterOptions, HatOptions)
    # a head shared across marketplaces would keep training after its older tasks' units are masked off, so HAT's
    # guarantee (an older task's outputs no longer change) would fail at the head: the task-incremental setting of
    # HAT, B-CL and CTR has a head per task
    head_inits = ("fresh", "previous")
    head_init_refusal = "HAT (and B-CL, CTR) protects older tasks by masks and keeps a head per task (task-incremental)"
    tuned_lr = "adapter_lr"

    def __init__(self, cfg, ctx):
        super().__init__(cfg, ctx)
        self.state = HatState(smax=cfg.hat_smax, s=cfg.hat_smax)
        self.build()

    # building ---------------------------------------------------------------------------------
    def make_adapter(self, hidden_size: int) -> MaskedAdapter:
        return MaskedAdapter(hidden_size, max(1, int(hidden_size // self.cfg.adapter_reduction)), self.state)

    def build(self) -> None:
        """A fresh model: frozen encoder, one masked module in every FFN output block, no task yet."""
        self.model = self.ctx.new_model()
        self.stack = AdapterStack(self.model.encoder, reduction_factor=self.cfg.adapter_reduction)  # freezes the base
        for layer in self.stack.layers.values():
            w = layer.dense.weight
            layer.adapters[KEY] = self.make_adapter(self.stack.hidden_size).to(device=w.device, dtype=w.dtype)
        self.stack.set_active([KEY])
        self.modules: list[MaskedAdapter] = [layer.adapters[KEY] for _, layer in sorted(self.stack.layers.items())]

        def keep_attention_mask(_module, args, kwargs):  # CTR's sequence-level estimator needs to skip padding
            self.state.attention_mask = kwargs.get("attention_mask")

        self.model.encoder.register_forward_pre_hook(keep_attention_mask, with_kwargs=True)

    def add_task(self, name: str, rebuild: bool = False) -> None:
        for module in self.modules:
            module.add_task(name)
        self.add_head(self.model, name, rebuild=rebuild)

    # HAT's training -----------------------------------------------------------------------------
    def older_masks(self) -> list[dict[str, torch.Tensor]] | None:
        """Eq. 2: per module, the element-wise max of every learned task's mask at s_max (None before task 1)."""
        if not self.learned:
            return None
        with torch.no_grad():
            out = []
            for module in self.modules:
                per_task = [module.unit_masks(t, self.cfg.hat_smax) for t in self.learned]
                out.append({k: torch.stack([m[k] for m in per_task]).amax(0) for k in per_task[0]})
            return out

    def steps_per_epoch(self, marketplace, step: int) -> int:
        n = len(self.ctx.loader(marketplace.train, train=True, seed=self.cfg.seed + step))
        return min(n, self.cfg.max_steps_per_epoch) if self.cfg.max_steps_per_epoch else n

    def hooks(self, name: str, older) -> list:
        """Eq. 3 (gradients of shared weights) and Eq. 5 (embedding gradients), as tensor hooks during backward."""
        handles = []
        if older is not None:
            for module, old in zip(self.modules, older):
                for p, used in module.protected(old).items():
                    keep = (1 - used).detach()
                    handles.append(p.register_hook(lambda g, keep=keep: g * keep.to(g.dtype)))
        for module in self.modules:
            for e in module.embeddings(name):
                handles.append(
                    e.register_hook(
                        lambda g, e=e: g * compensation(e.detach(), self.state.s, self.cfg.hat_smax).to(g.dtype)
                    )
                )
        return handles

    def loss(self, name: str, older):
        task = cross_entropy_loss(name)
        older_flat = None if older is None else [v for old in older for v in old.values()]

        def loss(model, batch):
            masks = [v for module in self.modules for v in module.unit_masks(name, self.state.s).values()]
            return task(model, batch) + self.cfg.hat_c * mask_regulariser(masks, older_flat)

        return loss

    def trainable(self, name: str) -> list[dict]:
        """Parameter groups: the modules' weights without weight decay (see the docstring), the new head with it."""
        module_params = [p for m in self.modules for p in m.shared_parameters() + m.task_parameters(name)]
        return [{"params": module_params, "weight_decay": 0.0}, {"params": list(self.model.heads[name].parameters())}]

    def learn(self, step, marketplace, seen):
        name = marketplace.name
        older = self.older_masks()
        self.add_task(name)
        groups = self.trainable(name)
        keep = {id(p) for g in groups for p in g["params"]}
        for p in self.model.parameters():
            p.requires_grad_(id(p) in keep)
        self.state.task = name
        batches = self.steps_per_epoch(marketplace, step)
        self.state.s = annealed_slope(0, batches, self.cfg.hat_smax)
        embeddings = [e for m in self.modules for e in m.embeddings(name)]

        def on_step(k, _loss):
            with torch.no_grad():
                for e in embeddings:
                    e.clamp_(-THRES_EMB, THRES_EMB)
            self.state.s = annealed_slope(k % batches, batches, self.cfg.hat_smax)  # the next batch's slope

        handles = self.hooks(name, older)
        try:
            result = self.train(
                self.model,
                groups,
                marketplace,
                name,
                self.cfg.adapter_lr,
                step,
                loss_fn=self.loss(name, older),
                on_step=on_step,
                max_grad_norm=self.cfg.hat_max_grad_norm,
            )
        finally:
            for h in handles:
                h.remove()
            self.state.s = self.cfg.hat_smax
        self.learned.append(name)
        return {**fit_log(result), **self.capacity(name)}

    def capacity(self, name: str) -> dict:
        """Share of units task ``name`` uses at s_max, and of units used by any task so far (HAT's Figure 6 measure)."""
        with torch.no_grad():
            mine = torch.cat(
                [v.flatten() for m in self.modules for v in m.unit_masks(name, self.cfg.hat_smax).values()]
            )
            before = self.older_masks()
            used = torch.cat([v.flatten() for old in before for v in old.values()])
        return {"mask_used": float((mine > 0.5).float().mean()), "capacity_used": float((used > 0.5).float().mean())}

    # protocol ---------------------------------------------------------------------------------
    def model_for(self, name):
        self.state.task = name
        return self.model, name

    def save(self, folder: Path):
        super().save(folder)
        state = {
            f"{i}.{k}": v.detach().contiguous().cpu()
            for i, m in enumerate(self.modules)
            for k, v in m.state_dict().items()
        }
        atomic.save_tensors(folder / "hat_modules.safetensors", state)
        atomic.save_tensors(folder / "heads.safetensors", self.model.heads.state_dict())

    def load(self, folder: Path):
        super().load(folder)
        self.build()
        for name in self.learned:
            self.add_task(name, rebuild=True)
        device = str(self.ctx.device)
        state = load_file(str(folder / "hat_modules.safetensors"), device=device)
        for i, m in enumerate(self.modules):
            m.load_state_dict({k[len(f"{i}.") :]: v for k, v in state.items() if k.startswith(f"{i}.")})
        self.model.heads.load_state_dict(load_file(str(folder / "heads.safetensors"), device=device))
