"""DyTox (Douillard et al. 2022), adapted to text pairs: an AD paper Table 2 baseline.

DyTox's model (its paper, section 3, and its code ``continual/dytox.py``): a shared encoder of self-attention blocks
(SABs), then one Task-Attention Block (TAB) run once per task with that task's learned token as the only query,
keys and values = [task token; the encoder's patch tokens]; the output e_i of task token i goes to head i
(``ind_clf: 1-1``: a LayerNorm + Linear on e_i alone); the logits of all heads are concatenated.

Learning task t (``continual/engine.py``):
    1. a new task token (truncated normal, std 0.02) and a new head; old tokens and old heads frozen
       (``freeze_task: [old_task_tokens, old_heads]``); encoder and TAB keep training
    2. loss = (1 - a) CE(all logits, class) + a tau^2 KL(teacher || student on the old logits / tau) + l_div CE_div
       a = old classes / all classes ("auto_kd"), the teacher = the model after task t-1 (frozen),
       KL with ``reduction="mean"`` over batch x old classes as the code has it, tau = 1 (``--distillation-tau``)
    3. the divergence head (LayerNorm + Linear on e_t, new classes + 1) learns "an older task" (class 0) vs the new
       task's classes, weight l_div = 0.1 (``head_div: 0.1``, ``head_div_mode: tr``); it is thrown away after task t
    4. training batches hold the new task's rows and a rehearsal memory of older tasks' rows
Here a marketplace is a task with two classes (not relevant / relevant of that marketplace), so class = 2 i + label.

The adaptation from images to text pairs, and the other departures:
  * SABs = every layer of the kit's pretrained cross-encoder (DyTox: 5 ConViT blocks trained from scratch); the TAB
    reads the encoder's token states of "[CLS] a [SEP] b [SEP]" instead of image patches, and padding tokens are
    masked out of its attention (images have none); the task token replaces the kit's pooling (``pooling`` unused);
  * scoring is task-incremental, as for every method of the kit: marketplace t is scored with its own token and
    head, softmax over its two logits (DyTox is class-incremental: arg max over all heads' logits);
  * the encoder trains at ``lr`` (pretrained, as the kit's full fine-tuning), the fresh TAB, tokens and heads at
    ``dytox_lr`` (default ``adapter_lr``); DyTox trains everything at one rate;
  * the memory is ``dytox_memory: 40`` stratified, seeded rows per older marketplace (20 per class, as the paper's
    2,000 images over CIFAR-100's 100 classes; 0 = exemplar-free), chosen as ``replay`` chooses them, not by herding;
  * no balanced fine-tuning phase after each task (DyTox fine-tunes on a class-balanced subset with the SABs
    frozen: with task-incremental scoring there is no bias between old and new heads for it to remove);
  * cross-entropy instead of the code's ``bce_loss: true`` (the kit's heads are two-way softmax classifiers).
"""

from __future__ import annotations

import copy
from pathlib import Path

import torch
from pydantic import BaseModel, Field
from torch import nn
from torch.nn import functional as F

from frkit.core.fp32 import full_precision
from frkit.data.split import subsample
from frkit.methods.base import Method, fit_log, load_module, save_module
from frkit.methods.registry import register
from frkit.models.cross_encoder import NUM_CLASSES


class DyToxOptions(BaseModel):
    """DyTox's settings (its CIFAR-100 config ``options/model/cifar_dytox.yaml`` and ``main.py`` defaults)."""

    dytox_head_div: float = Field(0.1, ge=0)  # weight of the divergence head's loss
    dytox_tau: float = Field(1.0, gt=0)  # distillation temperature
    dytox_memory: int = Field(40, ge=0)  # rehearsal rows kept per older marketplace (0: none)
    # rate of the fresh parts (TAB, task tokens, heads, divergence head); None: ``adapter_lr``. The encoder trains
    # at ``lr``. DyTox trains everything at one rate (5e-4 at batch 128)
    dytox_lr: float | None = Field(None, gt=0)


def dytox_loss(
    logits: torch.Tensor,
    targets: torch.Tensor,
    old_logits: torch.Tensor | None = None,
    div_logits: torch.Tensor | None = None,
    div_targets: torch.Tensor | None = None,
    head_div: float = 0.1,
    tau: float = 1.0,
) -> torch.Tensor:
    """DyTox's training loss (``continual/engine.py``, ``forward``) on one batch.

    ``logits``: all heads concatenated [B, C]; ``old_logits``: the teacher's [B, C_old] (None for the first task);
    ``div_logits``: the divergence head's [B, new classes + 1] (None for the first task).
    """
    loss = F.cross_entropy(logits.float(), targets)
    if old_logits is not None:
        a = old_logits.shape[1] / logits.shape[1]
        student = F.log_softmax(logits[:, : old_logits.shape[1]].float() / tau, dim=1)
        teacher = F.log_softmax(old_logits.float() / tau, dim=1)
        # F.kl_div(student, teacher, reduction="mean", log_target=True), written out: torch will change "mean"
        kd = (teacher.exp() * (teacher - student)).mean() * tau**2
        loss = (1 - a) * loss + a * kd
    if div_logits is not None:
        loss = loss + head_div * F.cross_entropy(div_logits.float(), div_targets)
    return loss


def classifier(dim: int, classes: int) -> nn.Module:
    """DyTox's ``ContinualClassifier``: LayerNorm, then Linear."""
    return nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, classes))


class TaskAttentionBlock(nn.Module):
    """DyTox's TAB (a CaiT class-attention block): the task token attends to [itself; the token states].

        z = LN([tok; x]);  tok' = tok + Proj(softmax(q(z_0) k(z)^T / sqrt(d)) v(z));  out = tok' + MLP(LN(tok'))

    q, k, v without bias, MLP ratio 4 with GELU, truncated-normal (std 0.02) weights, zero biases (as DyTox's code).
    Padding tokens (``attention_mask`` 0) get no attention: the text adaptation.
    """

    def __init__(self, dim: int, heads: int, mlp_ratio: float = 4.0):
        super().__init__()
        if dim % heads:
            raise ValueError(f"hidden size {dim} is not divisible by {heads} heads")
        self.heads = heads
        self.norm1 = nn.LayerNorm(dim)
        self.q, self.k, self.v = (nn.Linear(dim, dim, bias=False) for _ in range(3))
        self.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, int(dim * mlp_ratio)), nn.GELU(), nn.Linear(int(dim * mlp_ratio), dim))
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, token: torch.Tensor, x: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """token [B, 1, D], x [B, L, D], attention_mask [B, L] -> the task embedding e [B, D]."""
        b, n, d = x.shape[0], x.shape[1] + 1, x.shape[2]
        h = self.heads
        z = self.norm1(torch.cat([token, x], dim=1))
        q = self.q(z[:, :1]).view(b, 1, h, d // h).transpose(1, 2)
        k = self.k(z).view(b, n, h, d // h).transpose(1, 2)
        v = self.v(z).view(b, n, h, d // h).transpose(1, 2)
        scores = (q * (d // h) ** -0.5) @ k.transpose(-2, -1)  # [B, H, 1, N]
        keep = torch.cat([attention_mask.new_ones(b, 1), attention_mask], dim=1).bool()
        scores = scores.masked_fill(~keep[:, None, None, :], torch.finfo(scores.dtype).min)
        out = (scores.softmax(-1) @ v).transpose(1, 2).reshape(b, 1, d)
        token = token + self.proj(out)
        token = token + self.mlp(self.norm2(token))
        return token[:, 0]


class DyToxModel(nn.Module):
    """Encoder (the SABs) + TAB + a task token and a head per marketplace; ``forward(..., head=t)`` scores task t."""

    def __init__(self, encoder: nn.Module, dim: int, heads: int):
        super().__init__()
        self.encoder = encoder
        self.dim = dim
        self.tab = TaskAttentionBlock(dim, heads)
        self.tokens = nn.ParameterDict()
        self.heads = nn.ModuleDict()
        self.div_head: nn.Module | None = None

    def add_task(self, name: str) -> None:
        device = next(self.encoder.parameters()).device
        token = torch.zeros(1, 1, self.dim, device=device)
        nn.init.trunc_normal_(token, std=0.02)
        self.tokens[name] = nn.Parameter(token)
        self.heads[name] = classifier(self.dim, NUM_CLASSES).to(device)

    def token_states(self, input_ids, attention_mask, token_type_ids=None) -> torch.Tensor:
        kwargs = {"input_ids": input_ids, "attention_mask": attention_mask}
        if token_type_ids is not None:
            kwargs["token_type_ids"] = token_type_ids
        return self.encoder(**kwargs).last_hidden_state

    def embed(self, hidden: torch.Tensor, attention_mask: torch.Tensor, name: str) -> torch.Tensor:
        return self.tab(self.tokens[name].expand(hidden.shape[0], -1, -1), hidden, attention_mask)

    @staticmethod
    def classify(head: nn.Module, e: torch.Tensor) -> torch.Tensor:
        with full_precision():  # heads in fp32, as the kit's CrossEncoder
            return head(e.float())

    def all_logits(self, batch: dict, names: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """(every named head's logits on its own token, concatenated [B, 2 len(names)], the last task's embedding)."""
        hidden = self.token_states(batch["input_ids"], batch["attention_mask"], batch.get("token_type_ids"))
        embeds = [self.embed(hidden, batch["attention_mask"], n) for n in names]
        return torch.cat([self.classify(self.heads[n], e) for n, e in zip(names, embeds)], dim=1), embeds[-1]

    def forward(self, input_ids, attention_mask, head: str, token_type_ids=None, **_) -> torch.Tensor:
        hidden = self.token_states(input_ids, attention_mask, token_type_ids)
        return self.classify(self.heads[head], self.embed(hidden, attention_mask, head))


@register
class DyTox(Method):
    name = "dytox"
    option_groups = (DyToxOptions,)
    tuned_lr = "dytox_lr"
    head_inits = ("fresh",)
    head_init_refusal = (
        "its task-specific classifiers (one per marketplace, beside its task tokens, scored together "
        "class-incrementally) are part of DyTox's architecture, not CrossEncoder heads"
    )

    def __init__(self, cfg, ctx):
        super().__init__(cfg, ctx)
        self.model = self.build()

    def build(self) -> DyToxModel:
        encoder = self.ctx.new_encoder()
        return DyToxModel(encoder, encoder.config.hidden_size, encoder.config.num_attention_heads).to(self.ctx.device)

    @property
    def new_parts_lr(self) -> float:
        return self.cfg.dytox_lr or self.cfg.adapter_lr

    def memory(self, seen) -> dict:
        """The rehearsal memory: ``dytox_memory`` stratified, seeded training rows of each older marketplace."""
        if not self.cfg.dytox_memory:
            return {}
        return {
            m.name: subsample([m.train], self.cfg.dytox_memory, self.cfg.seed, parallel=False)[0] for m in seen[:-1]
        }

    def learn(self, step, marketplace, seen):
        name = marketplace.name
        old = list(self.learned)
        teacher = None
        if old:  # the model after task t-1, frozen
            teacher = copy.deepcopy(self.model).eval()
            teacher.requires_grad_(False)
        self.model.add_task(name)
        self.model.div_head = classifier(self.model.dim, NUM_CLASSES + 1).to(self.ctx.device) if old else None
        self.model.requires_grad_(False)  # old tokens and old heads stay frozen
        new = [self.model.tokens[name], *self.model.heads[name].parameters(), *self.model.tab.parameters()]
        if self.model.div_head is not None:
            new += list(self.model.div_head.parameters())
        groups = [
            {"params": list(self.model.encoder.parameters()), "lr": self.cfg.lr},
            {"params": new, "lr": self.new_parts_lr},
        ]
        for g in groups:
            for p in g["params"]:
                p.requires_grad_(True)
        tables = {name: marketplace.train, **self.memory(seen)}
        result = self.train(
            self.model,
            groups,
            marketplace,
            name,
            self.new_parts_lr,
            step,
            loss_fn=self.loss(name, old, teacher),
            batches=self.mixed_batches(tables, step),
        )
        self.model.div_head = None  # DyTox uses the divergence head during training only
        self.learned.append(name)
        return {**fit_log(result), "replayed_rows": {t: len(rows) for t, rows in tables.items() if t != name}}

    def loss(self, name: str, old: list[str], teacher: DyToxModel | None):
        names = old + [name]
        index = {n: i for i, n in enumerate(names)}
        c = self.cfg

        def loss(model, batch):
            logits, last = model.all_logits(batch, names)
            source = batch.get("source", name)
            targets = batch["labels"] + NUM_CLASSES * index[source]
            old_logits = div_logits = div_targets = None
            if teacher is not None:
                with torch.no_grad():
                    old_logits = teacher.all_logits(batch, old)[0]
                div_logits = model.classify(model.div_head, last)
                # the divergence head's classes: 0 = an older task, 1 + label = the new task's classes
                div_targets = batch["labels"] + 1 if source == name else torch.zeros_like(batch["labels"])
            return dytox_loss(logits, targets, old_logits, div_logits, div_targets, c.dytox_head_div, c.dytox_tau)

        return loss

    def model_for(self, name):
        return self.model, name

    def save(self, folder: Path):
        super().save(folder)
        save_module(self.model, folder / "model.safetensors")

    def load(self, folder: Path):
        super().load(folder)
        self.model = self.build()
        for name in self.learned:
            self.model.add_task(name)
        load_module(self.model, folder / "model.safetensors")
