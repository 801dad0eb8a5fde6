"""The continual-learning methods: one file per method, registered by its ``name`` (``frkit/methods/registry.py``).

A new method is a new file in this folder with a ``@register``-ed :class:`Method` subclass, and one
import line below (the way peft lays out ``tuners/<method>/``). Its options (``option_groups``)
become keys of the run configuration automatically.
"""
from __future__ import annotations

from frkit.methods.registry import METHODS, option_fields, register  # noqa: F401  (the package's public names)

# registry lines: one import per method file
from frkit.methods import independent, sequential, joint, lora, prefix, ewc, fr_lora  # noqa: F401
from frkit.methods import adapter, adapter_fusion, attention_distillation, replay, magmax, opcm, o_lora  # noqa: F401
from frkit.methods import hat, b_cl, ctr, dytox  # noqa: F401
from frkit.methods import lora_stacking, lora_merge, progressive_prefix  # noqa: F401
