"""EWC (FR-LoRA Stage I alone): full fine-tuning of the base, penalised by the previous Fisher (Eq. 2-3).

After each marketplace the diagonal Fisher of Eq. 3 is computed on its training data at the new
optimum, combined with the carried one (``fisher_carry``), and the weights are anchored there.
"""

from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path

import torch
from peft import PeftModel
from safetensors.torch import load_file

from frkit import atomic
from frkit.core.fisher import diagonal_fisher
from frkit.core.lora_delta import base_weight_name
from frkit.core.penalties import combine_fisher, ewc_penalty
from frkit.methods.base import Method, fit_log, load_module, save_module
from frkit.methods.options import EwcOptions
from frkit.methods.registry import register
from frkit.models.peft_adapters import freeze_all_but
from frkit.train import cross_entropy_loss

QKV = (".query.weight", ".key.weight", ".value.weight")


def base_parameters(encoder) -> dict[str, torch.nn.Parameter]:
    """The base model's own parameters, keyed by their peft-free name (``encoder.layer.0...query.weight``).

    With peft wrapped around the encoder, adapter parameters are left out and wrapped base weights
    (``...query.base_layer.weight``) get the name they had before peft, so a Fisher computed before
    and after wrapping shares its keys.
    """
    out = {}
    for name, p in encoder.named_parameters():
        if "lora_" in name or "prompt_encoder" in name:
            continue
        out[base_weight_name(name)] = p
    return out


def scale_fisher(fisher: dict[str, torch.Tensor], scale: str, n_samples: int) -> dict[str, torch.Tensor]:
    """``fisher_scale``: Eq. 3's mean as it is, times the number of samples ("sum"), or over its largest entry
    ("max")."""
    if scale == "mean":
        return fisher
    if scale == "sum":
        return {k: f * n_samples for k, f in fisher.items()}
    top = max(float(f.max()) for f in fisher.values())
    return {k: f / top for k, f in fisher.items()} if top > 0 else fisher


def qkv_only(tensors: dict) -> dict:
    return {k: v for k, v in tensors.items() if k.endswith(QKV)}


class EwcBase(Method):
    """Shared Stage I: EWC fine-tuning of the base encoder, Fisher, anchor, learning-rate decay."""

    def __init__(self, cfg, ctx):
        super().__init__(cfg, ctx)
        self.model = ctx.new_model()
        self.fisher: dict[str, torch.Tensor] | None = None  # carried Fisher for Eq. 2 (None before task 1)
        self.anchor: dict[str, torch.Tensor] | None = None  # theta*_{t-1}
        self.stage1_fisher: dict[str, torch.Tensor] | None = None  # this marketplace's Eq. 3 Fisher

    def base_lr(self, step: int) -> float:
        """Section 4.4: the base-model learning rate decays after every marketplace."""
        return self.cfg.lr * self.cfg.lr_decay**step

    def adapters_off(self):
        enc = self.model.encoder
        return enc.disable_adapter() if isinstance(enc, PeftModel) else nullcontext()

    def train_base_with_ewc(self, step, marketplace):
        """Eq. 2: L_task + 1{t>1} lambda/2 sum_i F_i (theta_i - theta*_i)^2, base weights and the new head."""
        name = marketplace.name
        self.add_head(self.model, name)
        base = base_parameters(self.model.encoder)
        params = list(base.values()) + list(self.model.heads[name].parameters())
        freeze_all_but(self.model, params)
        task_loss = cross_entropy_loss(name)
        fisher, anchor, lam = self.fisher, self.anchor, self.cfg.ewc_lambda

        def loss(model, batch):
            value = task_loss(model, batch)
            if fisher is not None and lam > 0:
                value = value + ewc_penalty(base, anchor, fisher, lam)
            return value

        with self.adapters_off():
            result = self.train(self.model, params, marketplace, name, self.base_lr(step), step, loss_fn=loss)
        return result

    def compute_fisher(self, marketplace, head: str, names: list[str] | None = None) -> dict[str, torch.Tensor]:
        """Eq. 3 on the marketplace's training data (``fisher_samples`` caps it), keyed by peft-free names."""
        table = marketplace.train
        if self.cfg.fisher_samples and len(table) > self.cfg.fisher_samples:
            table = table.sample(self.cfg.fisher_samples, random_state=self.cfg.seed)
        device = self.ctx.device
        loader = self.ctx.loader(table, train=False)
        batches = ({k: v.to(device) for k, v in b.items()} for b in loader)
        by_key = {
            base_weight_name(n): f"encoder.{n}"
            for n, _ in self.model.encoder.named_parameters()
            if "lora_" not in n and "prompt_encoder" not in n
        }
        keys = list(by_key) if names is None else names
        raw = diagonal_fisher(
            self.model,
            batches,
            lambda m, b: m(**b, head=head),
            param_names=[by_key[k] for k in keys],
            kind=self.cfg.fisher_kind,
            chunk_size=self.cfg.fisher_chunk,
        )
        return scale_fisher({k: raw[by_key[k]] for k in keys}, self.cfg.fisher_scale, len(table))

    def carry_fisher(self, step: int, new: dict[str, torch.Tensor]) -> None:
        self.fisher = combine_fisher(self.fisher, new, self.cfg.fisher_carry, step=step + 1)
        self.anchor = {k: p.detach().clone() for k, p in base_parameters(self.model.encoder).items()}

    def artifacts(self):
        return {"fisher_qkv": qkv_only(self.stage1_fisher)} if self.stage1_fisher else {}

    def save(self, folder: Path):
        super().save(folder)
        save_module(self.model, folder / "model.safetensors")
        if self.fisher is not None:
            atomic.save_tensors(folder / "fisher.safetensors", self.fisher)
            atomic.save_tensors(folder / "anchor.safetensors", self.anchor)

    def load(self, folder: Path):
        super().load(folder)
        self.rebuild_structure()
        load_module(self.model, folder / "model.safetensors")
        if (folder / "fisher.safetensors").exists():
            dev = str(self.ctx.device)
            self.fisher = load_file(str(folder / "fisher.safetensors"), device=dev)
            self.anchor = load_file(str(folder / "anchor.safetensors"), device=dev)

    def rebuild_structure(self):
        for name in self.learned:
            self.add_head(self.model, name, rebuild=True)


@register
class Ewc(EwcBase):
    name = "ewc"
    option_groups = (EwcOptions,)
    tuned_strength = "ewc_lambda"

    def learn(self, step, marketplace, seen):
        result = self.train_base_with_ewc(step, marketplace)
        self.stage1_fisher = self.compute_fisher(marketplace, marketplace.name)
        self.carry_fisher(step, self.stage1_fisher)
        self.learned.append(marketplace.name)
        return fit_log(result)

    def model_for(self, name):
        return self.model, name
