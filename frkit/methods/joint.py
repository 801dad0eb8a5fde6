"""Joint (multi-task) training on every marketplace seen so far: the upper bound.

Breaks the continual-learning rule on purpose: at step k it retrains from the base on the union of
marketplaces 1..k, with one shared head, so it shows what revisiting old data would buy.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from frkit.methods.base import Method, fit_log, load_module, save_module
from frkit.methods.registry import register

HEAD = "joint"


@register
class Joint(Method):
    name = "joint"
    head_inits = ("fresh",)
    head_init_refusal = "it retrains from the base at every step and already scores every marketplace with one head"

    def __init__(self, cfg, ctx):
        super().__init__(cfg, ctx)
        self.model = None

    def learn(self, step, marketplace, seen):
        self.model = self.ctx.new_model()
        self.model.add_head(HEAD)
        train = pd.concat([m.train for m in seen], ignore_index=True)
        validation = pd.concat([m.validation for m in seen], ignore_index=True)
        result = self.train(
            self.model,
            self.model.parameters(),
            marketplace,
            HEAD,
            self.cfg.lr,
            step,
            train_table=train,
            validation_table=validation,
        )
        self.learned.append(marketplace.name)
        return fit_log(result)

    def model_for(self, name):
        return self.model, HEAD

    def save(self, folder: Path):
        super().save(folder)
        save_module(self.model, folder / "model.safetensors")

    def load(self, folder: Path):
        super().load(folder)
        self.model = self.ctx.new_model()
        self.model.add_head(HEAD)
        load_module(self.model, folder / "model.safetensors")
