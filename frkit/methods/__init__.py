"""The continual-learning methods: one file per method, registered by its ``name`` (``frkit/methods/registry.py``).

A new method is a new file in this folder with a ``@register``-ed :class:`Method` subclass, and one
import line below (the way peft lays out ``tuners/<method>/``). Its options (``option_groups``)
become keys of the run configuration automatically.
"""

from __future__ import annotations

# registry lines: one import per method file
from frkit.methods import (  # noqa: F401  # noqa: F401  # noqa: F401  # noqa: F401
    adapter,
    adapter_fusion,
    attention_distillation,
    b_cl,
    ctr,
    dytox,
    ewc,
    fr_lora,
    hat,
    independent,
    joint,
    lora,
    lora_merge,
    lora_stacking,
    magmax,
    o_lora,
    opcm,
    prefix,
    progressive_prefix,
    replay,
    sequential,
)
from frkit.methods.registry import METHODS, option_fields, register  # noqa: F401  (the package's public names)
