"""The method registry: one file per continual-learning method, registered by its ``name``.

A new method is a new file in this folder with a ``@register``-ed :class:`Method` subclass, and one
import line below (the way peft lays out ``tuners/<method>/``). Its options (``option_groups``)
become keys of the run configuration automatically.
"""
from __future__ import annotations

from typing import Any

METHODS: dict[str, type] = {}


def register(cls):
    if cls.name in METHODS:
        raise ValueError(f"method name {cls.name!r} registered twice")
    METHODS[cls.name] = cls
    return cls


def option_fields() -> dict[str, tuple[Any, Any]]:
    """Union of all registered methods' option fields, as pydantic ``create_model`` field specs.

    A key shared by two option groups must be the same field (same group class), so one key
    never means two things.
    """
    fields: dict[str, tuple[Any, Any]] = {}
    owner: dict[str, type] = {}
    for method in METHODS.values():
        for group in method.option_groups:
            for key, info in group.model_fields.items():
                if key in owner and owner[key] is not group:
                    raise TypeError(f"option {key!r} declared by both {owner[key].__name__} and {group.__name__}")
                owner[key] = group
                fields[key] = (info.annotation, info)
    return fields


# registry lines: one import per method file
from frkit.methods import independent, sequential, joint, lora, prefix, ewc, fr_lora  # noqa: E402,F401
from frkit.methods import adapter, adapter_fusion, attention_distillation, replay, magmax, opcm, o_lora  # noqa: E402,F401
from frkit.methods import hat, b_cl, ctr, dytox  # noqa: E402,F401
from frkit.methods import lora_stacking, lora_merge, progressive_prefix  # noqa: E402,F401
