"""Fair tuning (issue 29): every method family of a sweep gets the same small budget of settings, chosen on
validation AUC of runs whose seeds the comparison does not use; the comparison then reads the chosen values.

A sweep file opts in with a ``tuning:`` block::

    tuning:
      seeds: [100]                      # never one of the comparison's seeds (checked)
      budget: 3                         # settings per family, the same for every family
      lr_factors: [0.333, 1, 3]         # times the family's learning rate in the sweep (Method.tuned_lr)
      strength_factors: [0.1, 1, 10]    # times its strength, where it has one (Method.tuned_strength)
      results: results/x_tuning         # default results/<name>_tuning

A *family* is a method; its representative is the row labelled with the method's name (else its first row), whose
learning rate (and strength) is the grid's centre. A family's grid is lr_factors x strength_factors; where it holds
more settings than the budget, the centre and a seeded sample of the others are tried, so no family gets more
tries than another. Each setting is one run per tuning seed on the sweep's first order, with
``evaluate_validation`` on; the chosen setting has the highest average validation AUC after the last marketplace
(every marketplace's validation set, the continual-learning objective), ties going to the centre. Test AUC is never
read. The choice goes to ``chosen.yaml`` in the tuning results folder (with ``tuning.md``, every setting's score),
and ``load_sweep`` applies it to every row of the family, except the keys a row sets itself (an ablation such as
``beta: 0`` keeps its value).

    frkit tune params/sweeps/x.yaml --jobs 2
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import yaml

from frkit.errors import FrkitInputError
from frkit.paths import resolve

TUNING_KEYS = {"seeds", "budget", "lr_factors", "strength_factors", "results"}


@dataclass(frozen=True)
class TuningSpec:
    seeds: tuple[int, ...]
    budget: int
    lr_factors: tuple[float, ...]
    strength_factors: tuple[float, ...]
    results_dir: Path

    @property
    def chosen_file(self) -> Path:
        return self.results_dir / "chosen.yaml"


def parse_tuning(block, name: str, where: str, comparison_seeds: list[int]) -> TuningSpec | None:
    """The ``tuning:`` block checked, or None where the sweep has none; bad values name the key."""
    if block is None:
        return None
    if not isinstance(block, dict):
        raise FrkitInputError(f"{where}: tuning must be a mapping with keys {sorted(TUNING_KEYS)}")
    unknown = set(block) - TUNING_KEYS
    if unknown:
        raise FrkitInputError(f"{where}: tuning: unknown key(s) {sorted(unknown)}; expected {sorted(TUNING_KEYS)}")
    seeds = block.get("seeds")
    if (
        not isinstance(seeds, list)
        or not seeds
        or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds)
    ):
        raise FrkitInputError(f"{where}: tuning: seeds must be a non-empty list of integers, got {seeds!r}")
    shared = sorted(set(seeds) & set(comparison_seeds))
    if shared:
        raise FrkitInputError(
            f"{where}: tuning: seeds {shared} are also the comparison's seeds; a setting chosen on them would be "
            "judged on the runs it was chosen with: use other seeds"
        )
    factors = {}
    for key, default in (("lr_factors", [1 / 3, 1, 3]), ("strength_factors", [0.1, 1, 10])):
        values = block.get(key, default)
        if not isinstance(values, list) or not values or not all(is_positive(v) for v in values) or 1 not in values:
            raise FrkitInputError(
                f"{where}: tuning: {key} must be a list of positive numbers holding 1, got {values!r}"
            )
        factors[key] = tuple(float(v) for v in values)
    budget = block.get("budget", len(factors["lr_factors"]))
    if isinstance(budget, bool) or not isinstance(budget, int) or budget < 1:
        raise FrkitInputError(f"{where}: tuning: budget must be a whole number >= 1, got {budget!r}")
    return TuningSpec(
        seeds=tuple(seeds),
        budget=budget,
        lr_factors=factors["lr_factors"],
        strength_factors=factors["strength_factors"],
        results_dir=resolve(block.get("results", f"results/{name}_tuning")),
    )


def is_positive(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > 0


def read_choice(spec: TuningSpec) -> dict[str, dict[str, float]] | None:
    """chosen.yaml, or None where tuning has not been run."""
    if not spec.chosen_file.is_file():
        return None
    chosen = yaml.safe_load(spec.chosen_file.read_text(encoding="utf-8")) or {}
    if not isinstance(chosen, dict) or not all(isinstance(v, dict) for v in chosen.values()):
        raise FrkitInputError(f"{spec.chosen_file}: expected method: {{key: value}}; write it again with frkit tune")
    return chosen
