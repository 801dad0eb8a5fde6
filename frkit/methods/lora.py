"""LoRA / DoRA per marketplace on query/key/value of a frozen base (peft), with a head per marketplace.

Marketplace t is scored with its own adapter and head; old adapters never change, so forgetting
comes only from choosing the adapter (here: by marketplace name, as in the paper's setting).
"""

from __future__ import annotations

from pathlib import Path

from safetensors.torch import load_file

from frkit import atomic
from frkit.methods.base import Method, fit_log
from frkit.methods.options import LoraOptions
from frkit.methods.registry import register
from frkit.models.cross_encoder import CrossEncoder
from frkit.models.peft_adapters import (
    adapter_parameters,
    add_adapter,
    freeze_all_but,
    load_adapters,
    lora_config,
    save_adapters,
)


class PeftPerMarketplace(Method):
    """Shared logic: one peft adapter + one head per marketplace; subclasses give the peft config."""

    tuned_lr = "adapter_lr"

    def __init__(self, cfg, ctx):
        super().__init__(cfg, ctx)
        self.model: CrossEncoder = ctx.new_model()

    def adapter_config(self):
        raise NotImplementedError

    def learn(self, step, marketplace, seen):
        name = marketplace.name
        self.model.encoder = add_adapter(self.model.encoder, name, self.adapter_config())
        self.add_head(self.model, name)
        params = adapter_parameters(self.model.encoder, name) + list(self.model.heads[name].parameters())
        freeze_all_but(self.model, params)
        result = self.train(self.model, params, marketplace, name, self.cfg.adapter_lr, step)
        self.learned.append(name)
        return fit_log(result)

    def model_for(self, name):
        self.model.encoder.set_adapter(name)
        return self.model, name

    def save(self, folder: Path):
        super().save(folder)
        save_adapters(self.model.encoder, folder / "adapters", names=self.learned)  # not derived ones (a merge)
        atomic.save_tensors(folder / "heads.safetensors", self.model.heads.state_dict())

    def load(self, folder: Path):
        super().load(folder)
        self.model.encoder = load_adapters(self.model.encoder, folder / "adapters").to(self.ctx.device)
        for name in self.learned:
            self.add_head(self.model, name, rebuild=True)
        self.model.heads.load_state_dict(load_file(str(folder / "heads.safetensors"), device=str(self.ctx.device)))


@register
class Lora(PeftPerMarketplace):
    name = "lora"
    option_groups = (LoraOptions,)
    use_dora = False

    def adapter_config(self):
        c = self.cfg
        return lora_config(c.lora_rank, c.lora_alpha, c.lora_dropout, c.lora_targets, use_dora=self.use_dora)


@register
class Dora(Lora):
    name = "dora"
    use_dora = True
