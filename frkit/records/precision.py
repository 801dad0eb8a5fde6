"""How a run's encoder computed (fp32 or bf16 autocast), read from its records: each step's entry where it has
one, else what params.yaml asked for and what each session's machine chose (runs from before steps recorded it)."""

from __future__ import annotations

import json
from pathlib import Path

UNRECORDED = "?"


def run_precision(folder: Path, steps: list[dict]) -> str:
    """How the run's encoder computed: ``fp32``, ``bf16``, ``mixed`` (steps differ: resumed on another machine) or
    ``?`` (not recorded). ``precision: auto`` means bf16 on one machine and fp32 on another, so each step records
    what it ran; for older runs params.yaml and environment.json say it where they can."""
    seen = {s.get("precision") for s in steps}
    if None in seen or not seen:
        seen = (seen - {None}) | _precision_from_record(folder, len(steps))
    if not seen or None in seen:
        return UNRECORDED
    return seen.pop() if len(seen) == 1 else "mixed"


def _precision_from_record(folder: Path, n_steps: int) -> set:
    """The precision of a run without per-step records (None: unknown). One asked for by name (params.yaml) holds
    on any machine; ``auto`` is what each session's machine chose (environment.json's ``bf16_autocast_fast``),
    counting only the sessions that ran steps (a resume after the last step ran none)."""
    import yaml

    try:
        requested = (yaml.safe_load((folder / "params.yaml").read_text(encoding="utf-8")) or {}).get(
            "precision", "auto"
        )
    except (OSError, UnicodeDecodeError, ValueError, yaml.YAMLError, AttributeError):
        return {None}
    if requested in ("fp32", "bf16"):
        return {requested}
    try:
        env = json.loads((folder / "environment.json").read_text(encoding="utf-8"))
        sessions = env.get("sessions") or [env]
        starts = [e.get("steps_done_before", 0) for e in sessions] + [n_steps]
    except (OSError, UnicodeDecodeError, ValueError, AttributeError):
        return {None}
    ran = [e for e, a, b in zip(sessions, starts, starts[1:]) if b > a]
    return {
        None if "bf16_autocast_fast" not in e else ("bf16" if e["bf16_autocast_fast"] else "fp32") for e in ran
    } or {None}
