"""A sweep file: methods / variants x seeds x marketplace orders on one base params file, each run validated.

A sweep file (``params/sweeps/*.yaml``)::

    base: ../stsb.yaml               # a params file (relative to the sweep file or the project root)
    name: cpu_stsb                   # run folders: <output_dir>/<name>/<label>/<order>/seed<k>
    description: ...                 # optional: what real difference between marketplaces the protocol stands in for
    seeds: [0, 1, 2]
    orders: [[en, es, ja]]           # marketplace sequences (default: the base's), or {random: 4, seed: 0}
    baseline: independent            # the "1x" row
    unit: order                      # claims' unit where runs span several orders: order (seeds averaged inside it,
                                     # the default) or seed (each run a replicate, orders as fixed blocks)
    results: results/cpu_stsb        # finished runs' small files are copied here (default results/<name>)
    overrides: {epochs: 1}           # for every run
    anchors: ...                     # free: a place for YAML anchors (&name) that runs refer to
    resources: {num_cpus: 1, num_gpus: 0}   # per run, for --executor ray (a run entry may give its own)
    runs:
      independent: {method: independent}
      fr_lora+lr_decay: {method: fr_lora, lr_decay: 0.5, orders: [[en, es, ja], [ja, es, en]]}  # its own orders

Every (run, order, seed) is validated here, before anything trains: a bad value fails naming the run and the key.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from frkit.config import BaseRunConfig, make_config, read_params
from frkit.errors import FrkitInputError
from frkit.paths import resolve
from frkit.sweep.tuning import TuningSpec, parse_tuning, read_choice

SWEEP_KEYS = {
    "base",
    "name",
    "description",
    "tuning",
    "seeds",
    "orders",
    "baseline",
    "unit",
    "results",
    "overrides",
    "anchors",
    "resources",
    "runs",
}


@dataclass(frozen=True)
class RunKey:
    label: str
    order: tuple[str, ...]
    seed: int

    @property
    def order_tag(self) -> str:
        return "-".join(self.order)

    def folder(self, root: Path) -> Path:
        return root / self.label / self.order_tag / f"seed{self.seed}"

    def __str__(self) -> str:
        return f"{self.label} [{self.order_tag}] seed {self.seed}"


@dataclass
class Sweep:
    path: Path
    name: str
    base: Path
    seeds: list[int]
    orders: list[tuple[str, ...]]
    baseline: str
    results_dir: Path
    labels: list[str]
    configs: dict[RunKey, BaseRunConfig] = field(default_factory=dict)
    description: str = ""  # what the protocol stands in for (issue 30's probe report quotes it)
    unit: str = "order"  # the claims' unit over several orders: order, or seed with the orders as blocks
    tuning: TuningSpec | None = None  # the sweep's tuning: block (frkit/sweep/tuning.py)
    tuned: bool = False  # its chosen values were found and applied
    run_values: dict = field(default_factory=dict)  # label -> the keys the row sets itself
    resources: dict[RunKey, dict] = field(default_factory=dict)  # {num_cpus, num_gpus} per run (--executor ray)

    def keys(self, label: str | None = None) -> list[RunKey]:
        return [k for k in self.configs if label is None or k.label == label]

    def result_folder(self, key: RunKey) -> Path:
        return key.folder(self.results_dir)


def _unit(value, path) -> str:
    if value not in ("order", "seed"):
        raise FrkitInputError(
            f"sweep file {path}: unit must be order (each order one unit, its seeds averaged) or seed (each run a "
            f"replicate, the orders fixed blocks), got {value!r}"
        )
    return value


def _orders(spec, marketplaces: list[str], where: str) -> list[tuple[str, ...]]:
    """A list of sequences, or {random: n, seed: s}: n distinct seeded permutations of the base marketplaces."""
    if spec is None:
        return [tuple(marketplaces)]
    if isinstance(spec, dict):
        unknown = set(spec) - {"random", "seed"}
        n = spec.get("random")
        if unknown or not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise FrkitInputError(
                f"{where}: orders {spec!r}: expected a list of marketplace sequences or "
                "{random: <n >= 1>, seed: <int>}"
            )
        total = int(np.prod(range(1, len(marketplaces) + 1)))
        if n > total:
            raise FrkitInputError(
                f"{where}: orders: {n} random orders asked for, but {len(marketplaces)} marketplaces have only {total}"
            )
        rng = np.random.default_rng(spec.get("seed", 0))
        picked: list[tuple[str, ...]] = []
        while len(picked) < n:
            order = tuple(marketplaces[i] for i in rng.permutation(len(marketplaces)))
            if order not in picked:
                picked.append(order)
        return picked
    if not isinstance(spec, list) or not spec:
        raise FrkitInputError(f"{where}: orders must be a non-empty list of marketplace sequences, got {spec!r}")
    out = []
    for entry in spec:
        if not isinstance(entry, list) or not all(isinstance(m, str) for m in entry):
            raise FrkitInputError(
                f"{where}: orders entry {entry!r} is not a list of marketplace names; known names: {marketplaces}"
            )
        unknown = [m for m in entry if m not in marketplaces]
        repeated = sorted({m for m in entry if entry.count(m) > 1})
        if unknown or repeated or len(entry) != len(marketplaces):
            problem = (
                f"unknown marketplace(s) {unknown}"
                if unknown
                else f"repeated {repeated}"
                if repeated
                else f"{len(entry)} marketplaces, expected {len(marketplaces)}"
            )
            raise FrkitInputError(
                f"{where}: orders entry {entry!r}: {problem}; each order is a sequence of all the "
                f"base's marketplaces {marketplaces}, each once"
            )
        out.append(tuple(entry))
    if len(set(out)) < len(out):
        raise FrkitInputError(f"{where}: orders {spec!r} lists an order twice")
    return out


def resources(values: dict, where: str) -> dict:
    """``{num_cpus, num_gpus}`` of a sweep's ``resources`` entry, checked (defaults: 1 CPU, no GPU)."""
    unknown = set(values) - {"num_cpus", "num_gpus"}
    if unknown:
        raise FrkitInputError(f"{where}: resources: unknown key(s) {sorted(unknown)}; expected num_cpus, num_gpus")
    out = {"num_cpus": values.get("num_cpus", 1), "num_gpus": values.get("num_gpus", 0)}
    for key, value in out.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise FrkitInputError(f"{where}: resources: {key} {value!r}: expected a number >= 0")
    return out


def load_sweep(path: str | Path, overrides: dict | None = None, tuned: bool = True) -> Sweep:
    """Read and validate a sweep file; ``overrides`` (e.g. from the command line) apply to every run. A sweep with a
    ``tuning:`` block gets its families' chosen values (``frkit tune``) unless ``tuned`` is false, which is how
    ``frkit tune`` reads the values the grids are centred on."""
    path = Path(path)
    if not path.is_file():
        raise FrkitInputError(f"sweep file {path} does not exist")
    spec = read_params(path)
    unknown = set(spec) - SWEEP_KEYS
    if unknown:
        raise FrkitInputError(f"sweep file {path}: unknown key(s) {sorted(unknown)}; expected {sorted(SWEEP_KEYS)}")
    for key in ("base", "runs"):
        if key not in spec:
            raise FrkitInputError(f"sweep file {path}: missing key {key!r}")
    base = path.parent / spec["base"]
    if not base.is_file():
        base = resolve(spec["base"])
    if not base.is_file():
        raise FrkitInputError(
            f"sweep file {path}: base params file {spec['base']} does not exist "
            f"(looked beside the sweep file and in the project root)"
        )
    base_params = read_params(base)
    name = spec.get("name", path.stem)
    seeds = spec.get("seeds", [0])
    if (
        not isinstance(seeds, list)
        or not seeds
        or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds)
    ):
        raise FrkitInputError(f"sweep file {path}: seeds must be a non-empty list of integers, got {seeds!r}")
    if not isinstance(spec["runs"], dict) or not spec["runs"]:
        raise FrkitInputError(f"sweep file {path}: runs must be a mapping of label: {{key: value}}")
    base_cfg = make_config({**base_params, **spec.get("overrides", {})}, source=f"{path} (base + overrides)")
    default_orders = _orders(spec.get("orders"), base_cfg.marketplaces, f"sweep file {path}")
    sweep = Sweep(
        path=path,
        name=name,
        base=base,
        seeds=seeds,
        orders=default_orders,
        baseline=spec.get("baseline", "independent"),
        results_dir=resolve(spec.get("results", f"results/{name}")),
        labels=list(spec["runs"]),
        description=str(spec.get("description") or "").strip(),
        unit=_unit(spec.get("unit", "order"), path),
        tuning=parse_tuning(spec.get("tuning"), name, f"sweep file {path}", seeds),
    )
    chosen = read_choice(sweep.tuning) if sweep.tuning is not None and tuned else None
    sweep.tuned = chosen is not None
    default_resources = spec.get("resources") or {}
    if not isinstance(default_resources, dict):
        raise FrkitInputError(f"sweep file {path}: resources must be a mapping {{num_cpus: 1, num_gpus: 0}}")
    for label, run_values in spec["runs"].items():
        run_values = dict(run_values or {})
        where = f"sweep file {path} (run {label!r})"
        own = run_values.pop("resources", None) or {}
        if not isinstance(own, dict):
            raise FrkitInputError(f"{where}: resources must be a mapping {{num_cpus: 1, num_gpus: 0}}")
        need = resources({**default_resources, **own}, where)
        orders = (
            _orders(run_values.pop("orders"), base_cfg.marketplaces, where)
            if "orders" in run_values
            else default_orders
        )
        sweep.run_values[label] = dict(run_values)
        method = run_values.get("method", base_cfg.method)
        # the family's tuned values, below what the row sets itself (an ablation keeps its beta: 0)
        tuned_values = {k: v for k, v in (chosen or {}).get(method, {}).items() if k not in run_values}
        for order, seed in itertools.product(orders, seeds):
            key = RunKey(label, order, seed)
            values = {
                **base_params,
                **spec.get("overrides", {}),
                **tuned_values,
                **run_values,
                **(overrides or {}),
                "seed": seed,
                "marketplaces": list(order),
                "run_name": f"{name}/{label}/{key.order_tag}/seed{seed}",
            }
            sweep.configs[key] = make_config(values, source=where)
            sweep.resources[key] = need
    return sweep
