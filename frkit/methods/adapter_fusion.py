"""AdapterFusion trained on all marketplaces seen so far at once: seed 2's non-sequential comparison point.

Breaks the continual-learning rule on purpose (like ``joint``): at step k the language adapter of
marketplace k is trained on its own data (Eq. 6), then a fresh fusion layer over adapters 1..k and a
shared head are trained on the union of marketplaces 1..k (Eq. 7 with all data), adapters frozen; the loss
holds AdapterHub's value regulariser unless ``fusion_value_regularization: false``.
Every marketplace is scored with that fusion and the shared head.
"""

from __future__ import annotations

import pandas as pd

from frkit.methods.adapter import AdapterMethodBase
from frkit.methods.base import fit_log
from frkit.methods.registry import register
from frkit.train import cross_entropy_loss

SHARED_HEAD = "fusion"


@register
class AdapterFusionAll(AdapterMethodBase):
    name = "adapter_fusion"
    tuned_lr = "fusion_lr"  # its adapters are the adapter row's; the fusion is what it adds
    head_inits = ("fresh",)
    head_init_refusal = "its fusion stage already scores every marketplace with one head, retrained at every step"

    def fusion_name(self, k: int) -> str:
        return f"fusion_{k}"

    def learn(self, step, marketplace, seen):
        stage1 = self.train_language_adapter(step, marketplace)
        adapter_params = self.trainable_params
        names = [m.name for m in seen]
        if step > 0:
            self.stack.delete_fusion(self.fusion_name(step - 1))
        fusion = self.fusion_name(step)
        self.stack.add_fusion(fusion, names)
        self.stack.set_active(fusion=fusion)
        self.stack.freeze_all_but(fusions=[fusion])
        if SHARED_HEAD in self.model.heads:
            del self.model.heads[SHARED_HEAD]
        self.model.add_head(SHARED_HEAD)
        params = self.stack.fusion_parameters(fusion) + list(self.model.heads[SHARED_HEAD].parameters())
        train = pd.concat([m.train for m in seen], ignore_index=True)
        validation = pd.concat([m.validation for m in seen], ignore_index=True)
        loss = self.with_fusion_regularization(cross_entropy_loss(SHARED_HEAD), fusion)
        stage2 = self.train(
            self.model,
            params,
            marketplace,
            SHARED_HEAD,
            self.cfg.fusion_lr,
            step,
            loss_fn=loss,
            train_table=train,
            validation_table=validation,
        )
        self.trainable_params += adapter_params
        self.learned.append(marketplace.name)
        return {"adapter": fit_log(stage1), "fusion": fit_log(stage2), **fit_log(stage2)}

    def model_for(self, name):
        self.stack.set_active(fusion=self.fusion_name(len(self.learned) - 1))
        return self.model, SHARED_HEAD
