"""Sweeps: several methods / variants x seeds on one base params file, summarised like the papers' tables.

A sweep file (``params/sweeps/*.yaml``)::

    base: params/pawsx.yaml        # a params file (relative to the repo root or to the sweep file)
    name: fr_lora_table            # run folders go to <output_dir>/<name>/<label>/seed<k>
    seeds: [0, 1, 2]
    baseline: independent          # the "1x" row
    runs:
      independent: {method: independent}
      fr_lora+lr_decay: {method: fr_lora, lr_decay: 0.5}

Every run is an ordinary resumable run folder, so a stopped sweep continues where it stopped.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from frkit.config import load_params, make_config
from frkit.errors import FrkitInputError

SWEEP_KEYS = {"base", "name", "seeds", "baseline", "runs", "overrides"}


def load_sweep(path: str | Path, overrides: dict | None = None) -> dict:
    """Read and validate a sweep file; ``overrides`` (e.g. from the command line) apply to every run."""
    path = Path(path)
    if not path.is_file():
        raise FrkitInputError(f"sweep file {path} does not exist")
    spec = yaml.safe_load(path.read_text()) or {}
    unknown = set(spec) - SWEEP_KEYS
    if unknown:
        raise FrkitInputError(f"sweep file {path}: unknown key(s) {sorted(unknown)}; expected {sorted(SWEEP_KEYS)}")
    for key in ("base", "runs"):
        if key not in spec:
            raise FrkitInputError(f"sweep file {path}: missing key {key!r}")
    base = Path(spec["base"])
    if not base.is_file() and (path.parent / base).is_file():
        base = path.parent / base
    spec["base"] = base
    spec.setdefault("name", path.stem)
    spec.setdefault("seeds", [0])
    spec.setdefault("baseline", "independent")
    spec.setdefault("overrides", {})
    base_params = yaml.safe_load(base.read_text()) if base.is_file() else None
    if base_params is None:
        raise FrkitInputError(f"sweep file {path}: base params file {base} does not exist")
    # validate every run's parameters before any training starts
    spec["configs"] = {}
    for label, run_overrides in spec["runs"].items():
        for seed in spec["seeds"]:
            values = {**base_params, **spec["overrides"], **(run_overrides or {}), **(overrides or {}), "seed": seed,
                      "run_name": f"{spec['name']}/{label}/seed{seed}"}
            spec["configs"][(label, seed)] = make_config(values, source=f"{path} (run {label!r})")
    return spec


def run_sweep(path: str | Path, only: list[str] | None = None, overrides: dict | None = None) -> pd.DataFrame:
    from frkit.runner import run

    spec = load_sweep(path, overrides)
    for (label, seed), cfg in spec["configs"].items():
        if only and label not in only:
            continue
        print(f"== {label} seed {seed}", flush=True)
        run(cfg)
    return summarize_sweep(spec)


def summarize_sweep(spec: dict) -> pd.DataFrame:
    """Mean and std over seeds of the average AUC, forgetting, BWT and each final AUC; relative table."""
    rows, finals = [], {}
    out_dir = None
    for label in spec["runs"]:
        metrics = []
        for seed in spec["seeds"]:
            cfg = spec["configs"][(label, seed)]
            out_dir = Path(cfg.output_dir) / spec["name"]
            m = cfg.run_dir / "metrics.json"
            if m.exists():
                metrics.append(json.loads(m.read_text()))
        if not metrics:
            continue
        names = metrics[0]["marketplaces"]
        finals[label] = {n: float(np.mean([m["final_auc"][n] for m in metrics])) for n in names}
        row = {"run": label, "seeds": len(metrics)}
        for key in ("average_auc", "forgetting", "backward_transfer", "forward_transfer"):
            vals = np.array([m[key] for m in metrics], dtype=float)
            row[key] = f"{vals.mean():.4f} ± {vals.std():.4f}" if len(vals) > 1 else f"{vals.mean():.4f}"
        for n in names:
            row[f"final {n}"] = round(finals[label][n], 4)
        row["trainable params (last step)"] = list(metrics[0]["trainable_params"].values())[-1]
        row["R (mean over seeds)"] = np.round(np.mean([np.array(m["auc_matrix"], dtype=float) for m in metrics], 0), 4).tolist()
        rows.append(row)
    table = pd.DataFrame(rows).set_index("run") if rows else pd.DataFrame()
    if out_dir is not None and rows:
        out_dir.mkdir(parents=True, exist_ok=True)
        text = "## Summary (mean ± std over seeds)\n\n" + table.drop(columns=["R (mean over seeds)"]).to_markdown() + "\n"
        if spec["baseline"] in finals:
            from frkit.metrics import relative_table

            text += f"\n## Relative to {spec['baseline']} (= 1x)\n\n" + relative_table(finals, spec["baseline"]).to_markdown() + "\n"
        text += "\n## AUC matrices (mean over seeds; row = after step k, column = marketplace)\n\n"
        for label, row in table.iterrows():
            text += f"- {label}: {row['R (mean over seeds)']}\n"
        (out_dir / "summary.md").write_text(text)
        print(text)
    return table


__all__ = ["load_sweep", "run_sweep", "summarize_sweep", "load_params"]
