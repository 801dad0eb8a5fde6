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
``jobs > 1`` trains several runs at once in separate processes: a small encoder leaves most of a GPU idle, and
the runs are independent, so a sweep finishes several times sooner on one GPU (each run's log goes to its folder).
"""
from __future__ import annotations

import json
import logging
import multiprocessing
import os
import traceback
from concurrent.futures import ProcessPoolExecutor, as_completed
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


def run_sweep(path: str | Path, only: list[str] | None = None, overrides: dict | None = None,
              jobs: int = 1) -> pd.DataFrame:
    """Train every (run, seed) of the sweep file not finished yet, then summarise; ``jobs`` runs at once."""
    from frkit.runner import run

    if jobs < 1:
        raise FrkitInputError(f"--jobs {jobs}: expected a whole number >= 1")
    spec = load_sweep(path, overrides)
    if only:
        unknown = sorted(set(only) - set(spec["runs"]))
        if unknown:
            raise FrkitInputError(f"sweep file {path}: --only {unknown} not among its runs {sorted(spec['runs'])}")
    # seed-major: every method's first seed finishes before any second seed starts, so a stopped sweep
    # still holds a complete one-seed comparison
    todo = [(key, cfg) for key, cfg in spec["configs"].items() if not only or key[0] in only]
    todo.sort(key=lambda item: spec["seeds"].index(item[0][1]))
    if jobs <= 1:
        for (label, seed), cfg in todo:
            print(f"== {label} seed {seed}", flush=True)
            run(cfg)
    else:
        _run_parallel(todo, jobs)
    return summarize_sweep(spec)


def _run_parallel(todo: list, jobs: int) -> None:
    """Each run in a fresh process (spawn: safe with CUDA); one failure does not stop the others."""
    threads = max(1, (os.cpu_count() or 1) // jobs)
    failed = []
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=jobs, mp_context=ctx) as pool:
        futures = {pool.submit(_run_in_worker, cfg.model_dump(), threads, str(_log_path(cfg))): key for key, cfg in todo}
        for key, cfg in todo:
            print(f"== {key[0]} seed {key[1]}: log in {_log_path(cfg)}", flush=True)
        for future in as_completed(futures):
            label, seed = futures[future]
            error = future.result()
            reason = f"failed: {error.strip().splitlines()[-1]}" if error else "done"
            print(f"== {label} seed {seed}: {reason}", flush=True)
            if error:
                failed.append(f"{label} seed {seed}:\n{error}")
    if failed:
        raise RuntimeError("sweep runs failed (finished runs are kept):\n" + "\n".join(failed))


def _log_path(cfg) -> Path:
    """Beside the run folder, not in it: a run started afresh (resume: false) moves its old folder aside."""
    return cfg.run_dir.with_name(f"{cfg.run_dir.name}.log")


def _run_in_worker(values: dict, threads: int, log_path: str) -> str | None:
    """Worker body: rebuild the config, log to the run folder, return the traceback text on failure."""
    import torch

    from frkit.runner import run

    torch.set_num_threads(threads)
    cfg = make_config(values)
    Path(log_path).parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(log_path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s: %(message)s"))
    logging.getLogger().addHandler(handler)
    logging.getLogger().setLevel(logging.INFO)
    try:
        run(cfg, show_progress=False)
        return None
    except BaseException:  # noqa: BLE001 - reported to the parent, which decides
        error = traceback.format_exc()
        logging.getLogger(__name__).error("run failed:\n%s", error)  # kept in the run's log
        return error
    finally:
        logging.getLogger().removeHandler(handler)
        handler.close()


def summarize_sweep(spec: dict) -> pd.DataFrame:
    """Mean and sample std (ddof 1) over seeds of the average AUC, forgetting, BWT and each final AUC; relative table."""
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
            row[key] = f"{vals.mean():.4f} ± {vals.std(ddof=1):.4f}" if len(vals) > 1 else f"{vals.mean():.4f}"
        for n in names:
            row[f"final {n}"] = round(finals[label][n], 4)
        row["trainable params (last step)"] = list(metrics[0]["trainable_params"].values())[-1]
        row["R (mean over seeds)"] = np.round(np.mean([np.array(m["auc_matrix"], dtype=float) for m in metrics], 0), 4).tolist()
        rows.append(row)
    table = pd.DataFrame(rows).set_index("run") if rows else pd.DataFrame()
    if out_dir is not None and rows:
        out_dir.mkdir(parents=True, exist_ok=True)
        text = "## Summary (mean ± sample std over seeds)\n\n" + table.drop(columns=["R (mean over seeds)"]).to_markdown() + "\n"
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
