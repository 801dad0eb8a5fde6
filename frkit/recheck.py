"""Re-check a committed result: train the run again from its own files and compare the AUC matrices.

``frkit recheck results/cpu_stsb/independent/en-es-ja/seed2`` trains that run again from its ``params.yaml`` into a
fresh folder (``outputs/recheck/<run_name>``) and prints, cell by cell, how far the new AUC matrix lies from the
committed one. A run made in fp32 replays to the last digit on another x86 CPU (an AVX2-only EPYC's runs replay
exactly on a Zen 4 EPYC); one made under bf16 autocast replays only within bf16's rounding, which depends on the
CPU's kernels, so it is re-checked in the precision it recorded and compared with a tolerance.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from frkit.errors import FrkitInputError

RECHECK_DIR = "outputs/recheck"


@dataclass
class Recheck:
    folder: Path  # the committed result
    run_dir: Path  # where it was trained again
    precision: str
    names: list[str]  # the marketplaces in order: rows (after each) and columns of both matrices
    committed: np.ndarray
    again: np.ndarray

    @property
    def max_difference(self) -> float:
        both = ~(np.isnan(self.committed) & np.isnan(self.again))  # an unevaluated cell in both is no difference
        diff = np.abs(self.committed - self.again)[both]
        return float(np.nan_to_num(diff, nan=np.inf).max()) if diff.size else 0.0


def read_committed(folder: Path) -> tuple[dict, np.ndarray, list[dict]]:
    """(params, AUC matrix, progress steps) of a finished result folder; a missing or unreadable file is named."""
    files = {name: folder / name for name in ("params.yaml", "metrics.json", "progress.json")}
    for name, path in files.items():
        if not path.is_file():
            raise FrkitInputError(f"{folder}: no {name}; expected a finished run's folder (params.yaml, "
                                  "metrics.json, progress.json), e.g. results/cpu_stsb/independent/en-es-ja/seed0")
    try:
        params = yaml.safe_load(files["params.yaml"].read_text(encoding="utf-8"))
        metrics = json.loads(files["metrics.json"].read_text(encoding="utf-8"))
        steps = json.loads(files["progress.json"].read_text(encoding="utf-8")).get("steps", [])
    except (UnicodeDecodeError, ValueError, yaml.YAMLError) as err:
        raise FrkitInputError(f"{folder}: a result file is not readable ({str(err).splitlines()[0]})") from None
    if not isinstance(params, dict) or "auc_matrix" not in metrics:
        raise FrkitInputError(f"{folder}: params.yaml is not a mapping or metrics.json has no auc_matrix")
    committed = np.array([[np.nan if x is None else x for x in row] for row in metrics["auc_matrix"]], dtype=float)
    return params, committed, steps


def choose_precision(folder: Path, params: dict, steps: list[dict], precision: str | None) -> str:
    """The precision to train in again: the one asked for, else the one the run recorded, else fp32 for a run
    whose params say fp32 or whose record is missing (runs made before frkit recorded it; said in the output)."""
    from frkit.reports.compare import UNRECORDED, run_precision

    if precision is not None:
        return precision
    recorded = run_precision(folder, steps)
    if recorded == "mixed":
        raise FrkitInputError(f"{folder}: its steps ran in different precisions (resumed on another machine); "
                              "choose one with --precision fp32 or --precision bf16")
    return "fp32" if recorded == UNRECORDED else recorded


def recheck(folder: str | Path, output_dir: str | Path = RECHECK_DIR, precision: str | None = None,
            show_progress: bool = True) -> Recheck:
    """Train the committed run in ``folder`` again (a fresh run folder under ``output_dir``) and return both
    AUC matrices. The run's own parameters are used unchanged apart from where it is written and ``precision``."""
    from frkit.artifacts import LEGACY_VALUES
    from frkit.config import make_config
    from frkit.runner import run

    folder = Path(folder)
    params, committed, steps = read_committed(folder)
    chosen = choose_precision(folder, params, steps, precision)
    params = {**{k: v for k, v in LEGACY_VALUES.items() if k not in params}, **params}  # what an older run did
    cfg = make_config({**params, "output_dir": str(output_dir), "resume": False}, source=str(folder / "params.yaml"),
                      override_source="frkit recheck (--precision)", precision=chosen)
    result = run(cfg, show_progress=show_progress)
    if result.auc_matrix.shape != committed.shape:
        raise FrkitInputError(f"{folder}: metrics.json's auc_matrix is {committed.shape}, the run gives "
                              f"{result.auc_matrix.shape}; the result folder does not match its params.yaml")
    return Recheck(folder, result.run_dir, chosen, list(cfg.marketplaces), committed, result.auc_matrix)


def report(check: Recheck) -> str:
    """The two matrices and their difference, as text."""
    import pandas as pd

    names = check.names
    rows = [f"after {n}" for n in names]
    frames = {"committed": check.committed, "again": check.again, "again - committed": check.again - check.committed}
    parts = [f"{check.folder} trained again in {check.precision} -> {check.run_dir}"]
    for title, matrix in frames.items():
        parts += [f"{title}:", pd.DataFrame(matrix, index=rows, columns=names).to_string(float_format="{:.6f}".format)]
    parts.append(f"largest |difference|: {check.max_difference:.3g}")
    return "\n".join(parts)
