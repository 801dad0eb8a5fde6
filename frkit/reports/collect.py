"""A sweep's results folder read into one record per run, after checking each run's files against its manifest.

Reads only what ``frkit sweep`` copies into ``results/<sweep>/<label>/<order>/seed<k>/`` (params, environment,
metrics, AUC matrix, progress, and ``checksums.json``), so every figure can be rebuilt from committed files. A run
folder whose files no longer match its sha256 manifest, or that has none, is refused, naming the run and the file:
a hand-edited ``metrics.json`` never reaches a summary or a claim silently. A run that is missing or half-written
(no readable ``metrics.json``) is listed as missing and left out of the means.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from frkit.errors import FrkitInputError
from frkit.paths import shown
from frkit.records.checksums import has_manifest, verify
from frkit.records.precision import run_precision
from frkit.records.readers import read_params, read_run_files

METRICS = ("average_auc", "forgetting", "backward_transfer", "forward_transfer")
# a row whose least marketplace's just-learned AUC (the AUC matrix's diagonal) averages below this does not learn
# (issues 29, 30): it is marked in every table, and claims against it are not counted
LEARNS = 0.70


def least_learned_below(runs: pd.DataFrame | None) -> float | None:
    """A row's least marketplace's just-learned AUC (mean over its runs, a ``SweepResults.frame()`` slice) where it
    is below LEARNS, else None: the one rule for "does not learn"."""
    if runs is None or "least_just_learned" not in runs:
        return None
    least = float(runs["least_just_learned"].mean())
    return least if np.isfinite(least) and least < LEARNS else None


@dataclass
class SweepResults:
    """Every run of a sweep that has results (``runs``), and the ones that do not (``missing``: key -> why)."""

    sweep: object
    runs: dict = field(default_factory=dict)  # RunKey -> flat record (metrics, finals, seconds, params)
    missing: dict = field(default_factory=dict)  # RunKey -> reason
    params: dict = field(default_factory=dict)  # RunKey -> the run's params.yaml, as read once by collect()
    steps: dict = field(default_factory=dict)  # RunKey -> progress.json's per-marketplace steps

    def frame(self) -> pd.DataFrame:
        """One row per finished run."""
        return pd.DataFrame(
            [{"label": k.label, "order": k.order_tag, "seed": k.seed, **v} for k, v in self.runs.items()]
        )

    def labels(self) -> list[str]:
        return [label for label in self.sweep.labels if any(k.label == label for k in self.sweep.configs)]


def run_record(folder: Path, metrics: dict, progress: dict) -> dict:
    """The flat record (one row of ``SweepResults.frame``) of a run's metrics and progress."""
    steps = progress.get("steps", [])
    record = {m: _num(metrics.get(m)) for m in METRICS}
    record.update({f"final {n}": _num(v) for n, v in metrics.get("final_auc", {}).items()})
    # just learned: each marketplace's AUC right after it was learned (the AUC matrix's diagonal), their mean and least
    diagonal = [_num(row[t]) for t, row in enumerate(metrics.get("auc_matrix") or []) if t < len(row)]
    record["just_learned"] = float(np.mean(diagonal)) if diagonal else np.nan
    record["least_just_learned"] = float(np.min(diagonal)) if diagonal else np.nan
    trainable = list(metrics.get("trainable_params", {}).values())
    record["trainable_params"] = trainable[-1] if trainable else np.nan
    record["wall_seconds"] = sum(s.get("learn_seconds", 0) + s.get("eval_seconds", 0) for s in steps) + progress.get(
        "init_seconds", 0.0
    )
    record["cpu_seconds"] = sum(s.get("cpu_seconds", np.nan) for s in steps) + progress.get("init_cpu_seconds", 0.0)
    record["precision"] = run_precision(folder, steps)
    record["started"] = _started(folder)
    return record


def _started(folder: Path) -> pd.Timestamp | None:
    """When the run first started (environment.json's ``started``), or None where it is not recorded."""
    try:
        started = json.loads((folder / "environment.json").read_text()).get("started")
        return pd.Timestamp(started) if started else None
    except (OSError, ValueError, AttributeError):
        return None


def _num(x) -> float:
    return np.nan if x is None else float(x)


def check_manifest(sweep, key, folder: Path) -> None:
    """A run folder of a results folder matches its sha256 manifest, or a FrkitInputError names the run and file."""
    bless = f"frkit sweep {shown(sweep.path)} --write-manifests"
    if not has_manifest(folder):
        raise FrkitInputError(
            f"results of {key} in {shown(folder)}: no checksums.json, so its files cannot be "
            f"checked; if they are the ones meant, write the manifests with `{bless}`"
        )
    problem = verify(folder)
    if problem:
        raise FrkitInputError(
            f"results of {key} in {shown(folder)} do not match their checksums.json: {problem}; "
            f"restore the file (git checkout), export the run again, or, if the change is meant, "
            f"`{bless}`"
        )


def collect(sweep) -> SweepResults:
    """Every run of ``sweep`` read from its results folder, each checked against its manifest first."""
    out = SweepResults(sweep)
    for key in sweep.configs:
        folder = sweep.result_folder(key)
        if folder.exists():
            check_manifest(sweep, key, folder)
        files = read_run_files(folder)
        if files is None:
            out.missing[key] = (
                "half-written (no readable metrics.json / progress.json)" if folder.exists() else "not run"
            )
        else:
            out.runs[key] = run_record(folder, *files)
            out.params[key] = read_params(folder)
            out.steps[key] = files[1].get("steps", [])
    return out
