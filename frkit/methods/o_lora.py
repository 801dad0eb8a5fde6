"""O-LoRA (Wang et al. 2023), FR-LoRA Table 1's orthogonal-subspace baseline.

for each marketplace t:
  1. a new LoRA t on the frozen base (LoraOptions' targets and rank), every older LoRA kept active but frozen
  2. train LoRA t and head t with  L_task + olora_lambda_orth * L_orth + olora_lambda_l2 * L_2,
     L_orth pushing A_t's rows orthogonal to every older A_k (frkit/core/orthogonal.py)
Every marketplace is scored with all learned LoRAs active together (O-LoRA needs no task id at inference)
and its own head.

Steps 1 and the scoring are LoRA Sequential Stacking's (``frkit/methods/lora_stacking.py``): O-LoRA is that
class with the two extra loss terms, nothing else.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from frkit.core.lora_delta import lora_factors
from frkit.core.orthogonal import l2_loss, orthogonality_loss
from frkit.methods.lora_stacking import LoraStacking
from frkit.methods.options import LoraOptions
from frkit.methods.registry import register
from frkit.models.peft_adapters import adapter_parameters


class OLoraOptions(BaseModel):
    """O-LoRA's loss weights (its released scripts: lambda_1 = 0.5, lambda_2 = 0)."""

    olora_lambda_orth: float = Field(0.5, ge=0)
    olora_lambda_l2: float = Field(0.0, ge=0)


@register
class OLora(LoraStacking):
    name = "o_lora"
    option_groups = (LoraOptions, OLoraOptions)

    def loss(self, name: str):
        task = super().loss(name)  # the task loss
        encoder, c = self.model.encoder, self.cfg
        # looked up once: the factors are the same Parameter objects for the whole of training
        older = [{k: a for k, (a, _) in lora_factors(encoder, old).items()} for old in self.learned]
        new = {k: a for k, (a, _) in lora_factors(encoder, name).items()}
        new_params = adapter_parameters(encoder, name)

        def loss(model, batch):
            value = task(model, batch)
            if c.olora_lambda_orth > 0 and older:
                value = value + c.olora_lambda_orth * orthogonality_loss(older, new)
            if c.olora_lambda_l2 > 0:
                value = value + c.olora_lambda_l2 * l2_loss(new_params)
            return value

        return loss
