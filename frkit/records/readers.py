"""Reading run folders: strictly where a run goes on from them, leniently where results are summarised.

Strict (``read_json``, ``read_run_params``, ``read_progress``, ``load_run``): an unreadable or malformed file is
an ``FrkitInputError`` naming it and what it holds, since resuming from it would compute something else.
Lenient (``read_run_files``, ``read_params``): a results folder whose run is missing or half-written reads as
None / {} and is listed as missing by the summary, never averaged.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from frkit.errors import FrkitInputError
from frkit.records.params import START_AGAIN


def read_json(path: Path, what: str):
    """The JSON in ``path``; not valid JSON: an error naming the file and ``what`` it holds."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise FrkitInputError(
            f"{path} is not valid JSON ({err}); it holds {what}: restore it, or {START_AGAIN}"
        ) from None


def read_run_params(folder: Path) -> dict | None:
    """The run's ``params.yaml`` (None: no such file, a new run)."""
    p = Path(folder) / "params.yaml"
    if not p.exists():
        return None
    try:
        saved = yaml.safe_load(p.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, yaml.YAMLError) as err:
        raise FrkitInputError(
            f"{p} is not readable YAML ({str(err).splitlines()[0]}); it holds the run's "
            f"parameters: restore it, or {START_AGAIN}"
        ) from None
    if not isinstance(saved, dict):
        raise FrkitInputError(
            f"{p}: expected the run's parameters as key: value, got {type(saved).__name__}; "
            f"restore it, or {START_AGAIN}"
        )
    return saved


def read_progress(folder: Path) -> dict:
    """The run's ``progress.json`` (no file: no step finished yet), its steps checked to be 0, 1, ... in order."""
    p = Path(folder) / "progress.json"
    if not p.exists():
        return {"steps": [], "init_aucs": None}
    prog = read_json(p, "the finished marketplaces of the run")
    steps = prog.get("steps") if isinstance(prog, dict) else None
    if not isinstance(steps, list) or any(
        not isinstance(s, dict)
        or s.get("step") != i
        or not isinstance(s.get("marketplace"), str)
        or not isinstance(s.get("auc_row"), list)
        for i, s in enumerate(steps)
    ):
        raise FrkitInputError(
            f"{p}: expected {{'steps': [{{'step': 0, 'marketplace': ..., 'auc_row': [...]}}, "
            f"...]}} with steps 0, 1, ... in order; restore it, or {START_AGAIN}"
        )
    prog.setdefault("init_aucs", None)
    return prog


@dataclass
class RunRecord:
    """A finished (or partial) run, as notebooks and reports read it."""

    path: Path
    params: dict
    metrics: dict | None
    progress: dict

    @property
    def marketplaces(self) -> list[str]:
        return [s["marketplace"] for s in self.progress["steps"]]

    def auc_matrix(self) -> pd.DataFrame:
        names = self.params["marketplaces"]
        R = np.full((len(names), len(names)), np.nan)
        for s in self.progress["steps"]:
            R[s["step"]] = [np.nan if x is None else x for x in s["auc_row"]]
        return pd.DataFrame(R, index=[f"after {n}" for n in names], columns=names)


def load_run(path: str | Path) -> RunRecord:
    path = Path(path)
    params = read_run_params(path)
    if params is None:
        raise FrkitInputError(f"{path} is not a frkit run folder (no params.yaml)")
    m = path / "metrics.json"
    return RunRecord(path, params, read_json(m, "the run's metrics") if m.exists() else None, read_progress(path))


def read_run_files(folder: Path) -> tuple[dict, dict] | None:
    """A finished run's ``metrics.json`` and ``progress.json``, or None when either is missing or unreadable."""
    try:
        return json.loads((folder / "metrics.json").read_text()), json.loads((folder / "progress.json").read_text())
    except (OSError, ValueError):
        return None


def read_params(folder: Path) -> dict:
    """A run's ``params.yaml`` ({} when it is missing or not a mapping: old fixtures hold none)."""
    try:
        params = yaml.safe_load((folder / "params.yaml").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return {}
    return params if isinstance(params, dict) else {}
