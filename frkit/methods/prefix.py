"""peft prefix tuning per marketplace: trainable key/value prefixes on a frozen base, a head per marketplace."""

from __future__ import annotations

from frkit.methods.lora import PeftPerMarketplace
from frkit.methods.options import PrefixOptions
from frkit.methods.registry import register
from frkit.models.peft_adapters import prefix_config


@register
class Prefix(PeftPerMarketplace):
    name = "prefix"
    option_groups = (PrefixOptions,)

    def adapter_config(self):
        c = self.cfg
        return prefix_config(c.prefix_tokens, c.prefix_projection, c.prefix_projection_hidden)
