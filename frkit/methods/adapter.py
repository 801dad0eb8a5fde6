"""Per-language bottleneck adapters (Pfeiffer placement) on a frozen base, a head per marketplace, no fusion.

Seed 2's "Adapter" row: marketplace t is scored with its own adapter and head (Eq. 5-6).
Also the base class of the fusion methods: it owns the AdapterStack and its save/load.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import torch
from safetensors.torch import load_file

from frkit import atomic
from frkit.methods.base import Method, fit_log
from frkit.methods.options import AdapterOptions
from frkit.methods.registry import register
from frkit.models.adapters import AdapterStack


class AdapterMethodBase(Method):
    option_groups = (AdapterOptions,)
    tuned_lr = "adapter_lr"

    def __init__(self, cfg, ctx):
        super().__init__(cfg, ctx)
        self.model = ctx.new_model()
        self.stack = AdapterStack(self.model.encoder, reduction_factor=cfg.adapter_reduction)

    def train_language_adapter(self, step, marketplace):
        """Eq. 6: a fresh adapter for the new language (+ its head); base and older adapters frozen."""
        name = marketplace.name
        self.stack.add_adapter(name)
        self.add_head(self.model, name)
        self.stack.set_active([name])
        self.stack.freeze_all_but(adapters=[name])
        params = self.stack.adapter_parameters(name) + list(self.model.heads[name].parameters())
        for p in self.model.heads.parameters():
            p.requires_grad_(False)
        for p in self.model.heads[name].parameters():
            p.requires_grad_(True)
        lr = self.cfg.language_adapter_lr or self.cfg.adapter_lr
        return self.train(self.model, params, marketplace, name, lr, step)

    def with_fusion_regularization(self, loss_fn, fusion: str):
        """``loss_fn`` plus AdapterHub's value regulariser 0.01 * sum_l ||I - V_l||^2 of ``fusion`` (when enabled)."""
        if not self.cfg.fusion_value_regularization:
            return loss_fn
        stack = self.stack

        def loss(model, batch):
            return loss_fn(model, batch) + stack.fusion_regularization(fusion)

        return loss

    @torch.no_grad()
    def fusion_scores(self, table: pd.DataFrame, setup: dict | None = None):
        """({layer: fusion scores [rows, seq, n_adapters]}, attention mask, input ids) on ``table``'s rows, for the
        model as scored after the last step, or for ``setup`` (``{"fusion": ...}`` / ``{"adapters": [...]}``)."""
        model, _ = self.model_for(self.learned[-1])
        batch = self.ctx.tokenizer(
            table["text_a"].tolist(),
            table["text_b"].tolist(),
            truncation=True,
            max_length=self.cfg.max_length,
            padding=True,
            return_tensors="pt",
        )
        batch = {k: v.to(self.ctx.device) for k, v in batch.items()}
        stack = self.stack
        if setup is None:
            setup = {"fusion": stack.active[1]} if stack.active[1] else {"adapters": list(stack.active[0])}
        with stack.teacher(**setup):  # eval mode, no grad, capturing
            model.encoder(**batch)
            scores = {k: v.float().cpu() for k, v in stack.attention_scores().items()}
        return scores, batch["attention_mask"].cpu(), batch["input_ids"].cpu()

    def mean_attention_per_layer(self, table: pd.DataFrame) -> torch.Tensor:
        """[layers, n_adapters]: fusion attention averaged over the real tokens of ``table``'s rows."""
        scores, mask, _ = self.fusion_scores(table)
        m = mask.unsqueeze(-1).float()
        return torch.stack([(scores[layer] * m).sum((0, 1)) / m.sum() for layer in sorted(scores)])

    def save(self, folder: Path):
        super().save(folder)
        self.stack.save(folder / "adapters")
        atomic.save_tensors(folder / "heads.safetensors", self.model.heads.state_dict())
        atomic.write_json(folder / "heads.json", list(self.model.heads), indent=None)

    def load(self, folder: Path):
        super().load(folder)
        self.model = self.ctx.new_model()
        self.stack = AdapterStack.load(self.model.encoder, folder / "adapters")
        for name in json.loads((folder / "heads.json").read_text()):  # the real heads, not a shared head's aliases
            self.model.add_head(name)
        if self.cfg.head_init == "shared":
            for name in self.learned:
                self.add_head(self.model, name, rebuild=True)
        self.model.heads.load_state_dict(load_file(str(folder / "heads.safetensors"), device=str(self.ctx.device)))
        self.model.to(self.ctx.device)


@register
class Adapter(AdapterMethodBase):
    name = "adapter"

    def learn(self, step, marketplace, seen):
        result = self.train_language_adapter(step, marketplace)
        self.learned.append(marketplace.name)
        return fit_log(result)

    def model_for(self, name):
        self.stack.set_active([name])
        return self.model, name
