"""Independent (single-marketplace) training: a fresh model per marketplace, from the base each time.

The reference every table is relative to ("Independent = 1x"); no transfer, no forgetting.
"""

from __future__ import annotations

from pathlib import Path

from frkit.methods.base import Method, fit_log, load_module, save_module
from frkit.methods.registry import register


@register
class Independent(Method):
    name = "independent"
    head_inits = ("fresh",)
    head_init_refusal = "it trains a separate model per marketplace from the base, with no transfer by design"

    def __init__(self, cfg, ctx):
        super().__init__(cfg, ctx)
        self.models = {}

    def learn(self, step, marketplace, seen):
        model = self.ctx.new_model()
        model.add_head(marketplace.name)
        result = self.train(model, model.parameters(), marketplace, marketplace.name, self.cfg.lr, step)
        self.models[marketplace.name] = model
        self.learned.append(marketplace.name)
        return fit_log(result)

    def model_for(self, name):
        return self.models[name], name

    def save(self, folder: Path):
        super().save(folder)
        for name, model in self.models.items():
            save_module(model, folder / f"model_{name}.safetensors")

    def load(self, folder: Path):
        super().load(folder)
        for name in self.learned:
            model = self.ctx.new_model()
            model.add_head(name)
            load_module(model, folder / f"model_{name}.safetensors")
            self.models[name] = model
