"""The method registry: ``METHODS`` (name -> class), filled by ``@register`` as each method file is imported.

The method files import ``register`` from here, and ``frkit/methods/__init__.py`` imports every method file (one
registry line per method), so the package never imports itself back.
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
