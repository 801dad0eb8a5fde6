"""LoRA Sequential Stacking (FR-LoRA Table 1): O-LoRA without its orthogonality constraint.

for each marketplace t:
  1. a new LoRA t on the frozen base (LoraOptions' targets and rank); every older LoRA 1..t-1 stays active
     (peft sums the active LoRAs' updates in every adapted layer) but frozen
  2. train LoRA t and head t with the task loss alone
Every marketplace is scored with all learned LoRAs active together and its own head (no adapter is chosen by
marketplace, as in O-LoRA), so a marketplace's model changes as later LoRAs stack on top of it.

O-LoRA (``frkit/methods/o_lora.py``) is this class with the orthogonality (and L2) terms added to the loss:
the two share activation, training and scoring, and differ only in :meth:`LoraStacking.loss`.
"""

from __future__ import annotations

from frkit.methods.base import fit_log
from frkit.methods.lora import Lora
from frkit.methods.options import LoraOptions
from frkit.methods.registry import register
from frkit.models.peft_adapters import adapter_parameters, add_adapter, freeze_all_but
from frkit.train import cross_entropy_loss


@register
class LoraStacking(Lora):
    name = "lora_stacking"
    option_groups = (LoraOptions,)

    def activate(self, names: list[str]) -> None:
        """Sum the given LoRAs in every adapted layer (peft's multi-adapter mode)."""
        self.model.encoder.base_model.set_adapter(names)

    def learn(self, step, marketplace, seen):
        name = marketplace.name
        self.model.encoder = add_adapter(self.model.encoder, name, self.adapter_config())
        self.add_head(self.model, name)
        self.activate(self.learned + [name])
        params = adapter_parameters(self.model.encoder, name) + list(self.model.heads[name].parameters())
        freeze_all_but(self.model, params)  # after activate(): peft marks every active adapter trainable
        result = self.train(self.model, params, marketplace, name, self.cfg.adapter_lr, step, loss_fn=self.loss(name))
        self.learned.append(name)
        return fit_log(result)

    def loss(self, name: str):
        """The training loss of LoRA ``name`` (older LoRAs already active and frozen): the task loss alone."""
        return cross_entropy_loss(name)

    def model_for(self, name):
        self.activate(list(self.learned))
        return self.model, name
