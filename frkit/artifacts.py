"""The run folder: self-describing, resumable, readable by notebooks.

outputs/<run>/
  params.yaml          resolved parameters (every key)
  environment.json     package versions, git revision, seed, python, device
  progress.json        one entry per finished marketplace: AUC row, training log, trainable params, seconds
  checkpoints/step_<k>_<name>/   the method's state after marketplace k (only the latest is kept)
  metrics.json, auc_matrix.csv   written when the sequence is complete
Writes are atomic (temp file / folder, then rename), so a run stopped at any point resumes from the
last finished marketplace with everything before it intact.
"""
from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import subprocess
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from safetensors.torch import load_file, save_file

from frkit.errors import FrkitInputError

# keys that may change between a stopped run and its resumption
RESUME_FREE_KEYS = {"resume", "output_dir", "run_name"}
# keys added with a default that behaves differently from what older run folders did: their old behaviour
LEGACY_VALUES = {"parallel_pairs": "shared", "length_batching": False}
PACKAGES = ("frkit", "torch", "transformers", "peft", "accelerate", "datasets", "scikit-learn", "pandas", "numpy")


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def git_revision() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=Path(__file__).resolve().parent)
        rev = out.stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain"], capture_output=True, text=True, timeout=5,
                               cwd=Path(__file__).resolve().parent).stdout.strip()
        return (rev + ("-dirty" if dirty else "")) if rev else None
    except (OSError, subprocess.SubprocessError):
        return None


def code_hash() -> str:
    """sha256 of the frkit sources as this process imported them (computed once, at import): what a result was
    made with, even from a dirty tree or in a long-lived worker that started before later commits."""
    return _CODE_HASH


def _hash_sources() -> str:
    digest = hashlib.sha256()
    root = Path(__file__).resolve().parent
    for path in sorted(root.rglob("*.py")):
        digest.update(str(path.relative_to(root)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


_CODE_HASH = _hash_sources()
_CODE_REVISION = git_revision()  # the revision this process's code came from (not the tree's at a later run start)


def environment(seed: int) -> dict:
    import torch

    versions = {}
    for pkg in PACKAGES:
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = None
    return {
        "versions": versions,
        "python": platform.python_version(),
        "git_revision": _CODE_REVISION,
        "frkit_code_sha256": code_hash(),
        "seed": seed,
        "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
        "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }


class RunFolder:
    def __init__(self, path: str | Path):
        self.path = Path(path)

    # -- set-up ------------------------------------------------------------------------------------
    def check(self, params: dict, resume: bool, defaults: dict | None = None) -> None:
        """Refuse to resume a folder made with other parameters (reads only; :meth:`open` writes).

        A key the saved params lack (an option added to frkit since the run started) counts as unchanged
        when its value is what the old run did: the key's ``LEGACY_VALUES`` entry where the default has
        changed behaviour since, else its default in ``defaults``.
        """
        saved = self.params()
        if saved is None or not resume:
            return
        defaults = {**(defaults or {}), **LEGACY_VALUES}
        saved = {**{k: v for k, v in defaults.items() if k not in saved}, **saved}
        changed = sorted(k for k in set(saved) | set(params)
                         if k not in RESUME_FREE_KEYS and saved.get(k) != params.get(k))
        if changed:
            diffs = ", ".join(f"{k}: {saved.get(k)!r} -> {params.get(k)!r}" for k in changed)
            raise FrkitInputError(
                f"run folder {self.path} was started with other parameters ({diffs}); "
                "use another run_name, or resume: false to set the old folder aside and start again"
            )

    def open(self, params: dict, resume: bool, defaults: dict | None = None) -> None:
        """Create the folder, or check that an existing one was made with the same parameters (:meth:`check`)."""
        self.check(params, resume, defaults)
        saved = self.params()
        if saved is not None and not resume:
            aside = self.path.with_name(f"{self.path.name}.old-{time.strftime('%Y%m%d-%H%M%S')}")
            self.path.rename(aside)  # never delete finished work
            saved = None
        if saved is not None:
            return
        self.path.mkdir(parents=True, exist_ok=True)
        _atomic_write(self.path / "params.yaml", yaml.safe_dump(params, sort_keys=False))
        _atomic_write(self.path / "environment.json", json.dumps(environment(params.get("seed", 0)), indent=2))

    def params(self) -> dict | None:
        p = self.path / "params.yaml"
        return yaml.safe_load(p.read_text()) if p.exists() else None

    # -- progress ------------------------------------------------------------------------------------
    def progress(self) -> dict:
        p = self.path / "progress.json"
        return json.loads(p.read_text()) if p.exists() else {"steps": [], "init_aucs": None}

    def save_init_aucs(self, aucs: list[float], timing: dict | None = None) -> None:
        prog = self.progress()
        prog["init_aucs"] = aucs
        prog.update(timing or {})
        _atomic_write(self.path / "progress.json", json.dumps(prog, indent=2))

    def checkpoint_dir(self, step: int, name: str) -> Path:
        return self.path / "checkpoints" / f"step_{step}_{name}"

    def save_step(self, step: int, name: str, row: list[float], log: dict, method) -> None:
        """Checkpoint first, then record the step: a crash in between leaves the previous step intact."""
        final = self.checkpoint_dir(step, name)
        tmp = final.with_name(final.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        method.save(tmp)
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
        prog = self.progress()
        prog["steps"] = [s for s in prog["steps"] if s["step"] < step] + [{
            "step": step, "marketplace": name, "auc_row": row, "trainable_params": method.trainable_params, **log,
        }]
        _atomic_write(self.path / "progress.json", json.dumps(prog, indent=2, default=float))
        for old in (self.path / "checkpoints").glob("step_*"):  # keep only the latest checkpoint
            if old != final:
                shutil.rmtree(old, ignore_errors=True)

    def save_artifacts(self, step: int, name: str, artifacts: dict) -> None:
        if not artifacts:
            return
        folder = self.path / "artifacts" / f"step_{step}_{name}"
        folder.mkdir(parents=True, exist_ok=True)
        for key, tensors in artifacts.items():
            tmp = folder / f"{key}.safetensors.tmp"
            save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(tmp))
            os.replace(tmp, folder / f"{key}.safetensors")

    def load_artifact(self, step: int, name: str, key: str) -> dict:
        return load_file(str(self.path / "artifacts" / f"step_{step}_{name}" / f"{key}.safetensors"))

    def latest_checkpoint(self) -> Path | None:
        steps = self.progress()["steps"]
        if not steps:
            return None
        last = steps[-1]
        return self.checkpoint_dir(last["step"], last["marketplace"])

    # -- results ---------------------------------------------------------------------------------
    def write_metrics(self, metrics: dict, frame: pd.DataFrame) -> None:
        _atomic_write(self.path / "metrics.json", json.dumps(metrics, indent=2))
        frame.to_csv(self.path / "auc_matrix.csv")


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
    folder = RunFolder(path)
    params = folder.params()
    if params is None:
        raise FrkitInputError(f"{path} is not a frkit run folder (no params.yaml)")
    m = path / "metrics.json"
    return RunRecord(path, params, json.loads(m.read_text()) if m.exists() else None, folder.progress())
