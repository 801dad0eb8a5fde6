"""Sequential fine-tuning: one encoder trained on each marketplace in turn, a new head per marketplace.

The lower bound that shows catastrophic forgetting: old marketplaces are scored with their own
head on top of the final encoder.
"""

from __future__ import annotations

from pathlib import Path

from frkit.methods.base import Method, fit_log, load_module, save_module
from frkit.methods.registry import register


@register
class Sequential(Method):
    name = "sequential"

    def __init__(self, cfg, ctx):
        super().__init__(cfg, ctx)
        self.model = ctx.new_model()

    def learn(self, step, marketplace, seen):
        self.add_head(self.model, marketplace.name)
        params = list(self.model.encoder.parameters()) + list(self.model.heads[marketplace.name].parameters())
        result = self.train(self.model, params, marketplace, marketplace.name, self.cfg.lr, step)
        self.learned.append(marketplace.name)
        return fit_log(result)

    def model_for(self, name):
        return self.model, name

    def save(self, folder: Path):
        super().save(folder)
        save_module(self.model, folder / "model.safetensors")

    def load(self, folder: Path):
        super().load(folder)
        for name in self.learned:
            self.add_head(self.model, name, rebuild=True)
        load_module(self.model, folder / "model.safetensors")
