"""What a run logs, as ``(tag, value, step)`` points: the learning curve of each marketplace, the AUC row after each,
and the final metrics. Pure: the backends (``frkit/tracking/backends.py``) only write what this returns.

Tags are grouped by what they measure and name the marketplace after the slash, so TensorBoard draws one section
per quantity with one chart per marketplace (``train_loss/es``) and a sweep's runs overlay chart by chart:

- ``train_loss/<m>``, ``val_auc/<m>``: the learning curve while ``m`` is learned (step: the optimiser step of that
  fit; the ``eval_every_steps`` curve where the run has one, else one point per epoch). A method that trains in
  stages (FR-LoRA's Stage I / II, AdapterFusion's adapter / fusion) logs each stage apart: ``train_loss/<m>/<stage>``.
- ``learn/<key>`` (``learn/<stage>/<key>``): the learn log's numbers (best epoch, steps, Eq. 4's penalty, seconds) at
  the marketplace's index ``k``.
- ``auc/<t>``: ``R[k, t]``, the test ROC-AUC of marketplace ``t`` after learning the ``k``-th one (step ``k``, the row
  of ``auc_matrix.csv``): how each marketplace is forgotten, or gained before it is seen. ``auc/mean_seen``: their
  mean over the marketplaces learned so far.
- ``final/<metric>`` and ``final/auc/<m>``: ``metrics.json``'s numbers, at the last step.
"""

from __future__ import annotations

import math
from numbers import Real

Point = tuple[str, float, int]


def _number(value) -> float | None:
    """A finite float of a plain number (bools are not numbers here), else None."""
    if isinstance(value, bool) or not isinstance(value, Real):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _stages(learn_log: dict) -> dict[str, dict]:
    """The stages a learn log holds apart (``{"stage1": fit log, ...}``); none: the log is one fit's own."""
    return {name: v for name, v in learn_log.items() if isinstance(v, dict) and ("history" in v or "curve" in v)}


def _curve(fit_log: dict, suffix: str) -> list[Point]:
    rows = fit_log.get("curve") or fit_log.get("history") or []
    points = []
    for row in rows:
        for key in ("train_loss", "val_auc"):
            value = _number(row.get(key))
            if value is not None and isinstance(row.get("step"), int):
                points.append((f"{key}/{suffix}", value, row["step"]))
    return points


def _scalars(log: dict, prefix: str, step: int) -> list[Point]:
    return [(f"{prefix}/{key}", value, step) for key, raw in log.items() if (value := _number(raw)) is not None]


def learning_points(k: int, marketplace: str, learn_log: dict) -> list[Point]:
    """The learning curve(s) and the learn log's numbers of marketplace ``marketplace``, learned ``k``-th."""
    stages = _stages(learn_log)
    if not stages:
        return _curve(learn_log, marketplace) + _scalars(learn_log, "learn", k)
    points = []
    for name, log in stages.items():
        points += _curve(log, f"{marketplace}/{name}") + _scalars(log, f"learn/{name}", k)
    # the top level repeats the last stage's fit log: only its own numbers (seconds, a stage's lr) are new
    last = list(stages.values())[-1]
    return points + [p for p in _scalars(learn_log, "learn", k) if p[0].split("/", 1)[1] not in last]


def auc_points(k: int, names: list[str], row: list[float | None]) -> list[Point]:
    """Row ``k`` of the AUC matrix (``None``: a marketplace not scored, evaluate_unseen off) and the mean over the
    marketplaces learned so far (the first ``k + 1`` of ``names``, in training order)."""
    points = [(f"auc/{name}", value, k) for name, raw in zip(names, row) if (value := _number(raw)) is not None]
    seen = [v for v in (_number(x) for x in row[: k + 1]) if v is not None]
    if seen:
        points.append(("auc/mean_seen", sum(seen) / len(seen), k))
    return points


def final_points(metrics: dict, step: int) -> list[Point]:
    """``metrics.json``'s numbers (average, forgetting, BWT, FWT and the final AUC of each marketplace)."""
    points = _scalars(metrics, "final", step)
    points += [
        (f"final/auc/{name}", value, step)
        for name, raw in (metrics.get("final_auc") or {}).items()
        if (value := _number(raw)) is not None
    ]
    return points
