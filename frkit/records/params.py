"""Whether a run's saved parameters are the ones asked for now: the one rule that resume, sweep and recheck share.

A key the saved params lack (an option added to frkit since the run started) counts as unchanged when its value
is what the old run did: its ``LEGACY_VALUES`` entry where the default has changed behaviour since, else its
default. ``RESUME_FREE_KEYS`` say where a run is written, not what it computes: they may differ.
"""

from __future__ import annotations

# keys that may change between a stopped run and its resumption
RESUME_FREE_KEYS = frozenset({"resume", "output_dir", "run_name", "report_to"})  # report_to: where it is logged
# keys added with a default that behaves differently from what older run folders did: their old behaviour
LEGACY_VALUES = {
    "parallel_pairs": "shared",
    "length_batching": False,
    # replay kept replay_samples rows; heads were fresh; Eq. 4 was Fisher-weighted (issues 29, 30)
    "replay_fraction": None,
    "head_init": "fresh",
    "fr_weighting": "fisher",
}
START_AGAIN = "use another run_name, or resume: false (-p resume false) to set the old folder aside and start again"


def with_legacy_values(params: dict, defaults: dict | None = None) -> dict:
    """``params`` with each key it lacks filled in as a run made before that key existed did: its ``LEGACY_VALUES``
    entry, else its value in ``defaults`` (a key in neither stays missing)."""
    return {**{k: v for k, v in {**(defaults or {}), **LEGACY_VALUES}.items() if k not in params}, **params}


def params_changes(saved: dict, now: dict, defaults: dict | None = None) -> dict[str, tuple[object, object]]:
    """``{key: (saved value, value now)}`` for every key whose value differs, in key order (empty: the same run).

    A key missing from ``saved`` is filled first from ``LEGACY_VALUES``, else from ``defaults``; a key in
    ``RESUME_FREE_KEYS`` never counts."""
    filled = with_legacy_values(saved, defaults)
    keys = sorted(k for k in set(filled) | set(now) if k not in RESUME_FREE_KEYS)
    return {k: (filled.get(k), now.get(k)) for k in keys if filled.get(k) != now.get(k)}


def describe_changes(changes: dict[str, tuple[object, object]], limit: int | None = None) -> str:
    """``lr: 0.001 -> 0.5, seed: 0 -> 1`` (the first ``limit`` changes when given)."""
    items = list(changes.items())[:limit]
    return ", ".join(f"{k}: {old!r} -> {new!r}" for k, (old, new) in items)
