"""The run folder: self-describing, resumable, readable by notebooks.

outputs/<run>/
  params.yaml          resolved parameters (every key)
  environment.json     package versions, git revision, seed, python, device of the process that started the run;
                       ``sessions``: one entry per process that ran it (start, resume), each with its own revision
  fingerprint.json     per marketplace and split: rows and a sha256 of the data; the model's files (frkit/fingerprint.py)
  progress.json        one entry per finished marketplace: AUC row, training log, trainable params, seconds
  checkpoints/step_<k>_<name>/   the method's state after marketplace k, with checksums.json (sha256 of each
                       file); the latest two are kept, so a damaged latest one falls back to the one before
  damaged/             checkpoints that failed their checksums, set aside (never deleted) with a note of why
  metrics.json, auc_matrix.csv   written when the sequence is complete
Every file is written atomically and fsynced (frkit/atomic.py), JSON strictly (no NaN / Infinity), so a run
stopped at any point resumes from the last finished marketplace with everything before it intact.
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
from safetensors.torch import load_file

from frkit import atomic, checksums
from frkit.errors import FrkitInputError
from frkit.fingerprint import differences

# keys that may change between a stopped run and its resumption
RESUME_FREE_KEYS = {"resume", "output_dir", "run_name"}
# keys added with a default that behaves differently from what older run folders did: their old behaviour
LEGACY_VALUES = {"parallel_pairs": "shared", "length_batching": False}
PACKAGES = ("frkit", "torch", "transformers", "peft", "accelerate", "datasets", "scikit-learn", "pandas", "numpy")
START_AGAIN = "use another run_name, or resume: false (-p resume false) to set the old folder aside and start again"


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

    from frkit.precision import bf16_support, cpu_model

    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    bf16_fast, bf16_why = bf16_support(device)
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
        "device": torch.cuda.get_device_name(0) if cuda else "cpu",
        # the hardware: the same params run bf16 autocast on one machine and fp32 on another (precision: auto),
        # and bf16 kernels differ between CPUs, so a result says where it was computed
        "cpu": cpu_model(),
        "torch_threads": torch.get_num_threads(),
        "bf16_autocast_fast": bf16_fast,
        "bf16_autocast_why": bf16_why,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }


def _read_json(path: Path, what: str):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise FrkitInputError(f"{path} is not valid JSON ({err}); it holds {what}: restore it, or {START_AGAIN}") from None


def _check_writable(path: Path) -> None:
    """The run folder (or the folder it will be made in) must be a writable folder: said before anything runs."""
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise FrkitInputError(f"output_dir: cannot make the run folder {path}: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise FrkitInputError(f"output_dir: cannot write the run folder {path}: {existing} is not writable "
                              "(permissions or a read-only file system); choose another output_dir")


class RunFolder:
    def __init__(self, path: str | Path):
        self.path = Path(path)

    # -- set-up ------------------------------------------------------------------------------------
    def check(self, params: dict, resume: bool, defaults: dict | None = None) -> None:
        """Refuse a folder that cannot be written, or resumed: other parameters, an unreadable record (reads only;
        :meth:`open` writes).

        A key the saved params lack (an option added to frkit since the run started) counts as unchanged
        when its value is what the old run did: the key's ``LEGACY_VALUES`` entry where the default has
        changed behaviour since, else its default in ``defaults``.
        """
        _check_writable(self.path)
        if not resume:  # an existing folder is set aside whole, however its files read
            return
        saved = self.params()
        if saved is None:
            return
        defaults = {**(defaults or {}), **LEGACY_VALUES}
        saved = {**{k: v for k, v in defaults.items() if k not in saved}, **saved}
        changed = sorted(k for k in set(saved) | set(params)
                         if k not in RESUME_FREE_KEYS and saved.get(k) != params.get(k))
        if changed:
            diffs = ", ".join(f"{k}: {saved.get(k)!r} -> {params.get(k)!r}" for k in changed)
            raise FrkitInputError(f"run folder {self.path} was started with other parameters ({diffs}); {START_AGAIN}")
        self.progress()  # readable, or named now
        self.fingerprint()
        self._environment()

    def check_fingerprint(self, now: dict, resume: bool) -> None:
        """Refuse to resume on other data or another model than the folder's run started with, naming each change."""
        saved = self.fingerprint() if resume and self.params() is not None else None
        if saved is None:
            return
        changed = differences(saved, now)
        if changed:
            raise FrkitInputError(f"run folder {self.path} was started with other data or another model "
                                  f"({'; '.join(changed)}); {START_AGAIN}")

    def open(self, params: dict, resume: bool, defaults: dict | None = None, fingerprint: dict | None = None) -> None:
        """Create the folder, or check that an existing one was made with the same parameters (:meth:`check`)
        and record this process as a new session of it."""
        self.check(params, resume, defaults)
        if fingerprint is not None:
            self.check_fingerprint(fingerprint, resume)
        saved = self.params() if resume else None
        if not resume and (self.path / "params.yaml").exists():
            aside = self.path.with_name(f"{self.path.name}.old-{time.strftime('%Y%m%d-%H%M%S')}")
            self.path.rename(aside)  # never delete finished work
            saved = None
        session = environment(params.get("seed", 0))
        if saved is None:
            self.path.mkdir(parents=True, exist_ok=True)
            atomic.write_text(self.path / "params.yaml", yaml.safe_dump(params, sort_keys=False))
            atomic.write_json(self.path / "environment.json", {**session, "sessions": [session]})
        else:  # resumed: the first session stays on top, every session is listed
            env = self._environment() or {}
            sessions = env.get("sessions") or ([{k: v for k, v in env.items() if k != "sessions"}] if env else [])
            session["steps_done_before"] = len(self.progress()["steps"])
            atomic.write_json(self.path / "environment.json", {**(env or session), "sessions": sessions + [session]})
        if fingerprint is not None and self.fingerprint() is None:  # new, or started by an frkit without fingerprints
            atomic.write_json(self.path / "fingerprint.json", fingerprint)

    def params(self) -> dict | None:
        p = self.path / "params.yaml"
        if not p.exists():
            return None
        try:
            saved = yaml.safe_load(p.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, yaml.YAMLError) as err:
            raise FrkitInputError(f"{p} is not readable YAML ({str(err).splitlines()[0]}); it holds the run's "
                                  f"parameters: restore it, or {START_AGAIN}") from None
        if not isinstance(saved, dict):
            raise FrkitInputError(f"{p}: expected the run's parameters as key: value, got {type(saved).__name__}; "
                                  f"restore it, or {START_AGAIN}")
        return saved

    def fingerprint(self) -> dict | None:
        p = self.path / "fingerprint.json"
        if not p.exists():
            return None
        saved = _read_json(p, "the fingerprint of the run's data and model")
        if not isinstance(saved, dict) or not isinstance(saved.get("data"), dict):
            raise FrkitInputError(f"{p}: expected {{'data': ..., 'model': ...}}; restore it, or {START_AGAIN}")
        return saved

    def _environment(self) -> dict | None:
        p = self.path / "environment.json"
        if not p.exists():
            return None
        env = _read_json(p, "the environment of each session of the run")
        if not isinstance(env, dict):
            raise FrkitInputError(f"{p}: expected a mapping; restore it, or {START_AGAIN}")
        return env

    # -- progress ------------------------------------------------------------------------------------
    def progress(self) -> dict:
        p = self.path / "progress.json"
        if not p.exists():
            return {"steps": [], "init_aucs": None}
        prog = _read_json(p, "the finished marketplaces of the run")
        steps = prog.get("steps") if isinstance(prog, dict) else None
        if not isinstance(steps, list) or any(
                not isinstance(s, dict) or s.get("step") != i or not isinstance(s.get("marketplace"), str)
                or not isinstance(s.get("auc_row"), list) for i, s in enumerate(steps)):
            raise FrkitInputError(f"{p}: expected {{'steps': [{{'step': 0, 'marketplace': ..., 'auc_row': [...]}}, "
                                  f"...]}} with steps 0, 1, ... in order; restore it, or {START_AGAIN}")
        prog.setdefault("init_aucs", None)
        return prog

    def save_init_aucs(self, aucs: list[float], timing: dict | None = None) -> None:
        prog = self.progress()
        prog["init_aucs"] = aucs
        prog.update(timing or {})
        atomic.write_json(self.path / "progress.json", prog)

    def checkpoint_dir(self, step: int, name: str) -> Path:
        return self.path / "checkpoints" / f"step_{step}_{name}"

    def save_step(self, step: int, name: str, row: list[float], log: dict, method) -> None:
        """Checkpoint (with its checksums) first, then record the step: a crash in between leaves the previous
        step intact. The previous step's checkpoint is kept too, to fall back on if the latest is damaged."""
        final = self.checkpoint_dir(step, name)
        tmp = final.with_name(final.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        method.save(tmp)
        checksums.write_manifest(tmp)
        atomic.replace_dir(tmp, final)
        prog = self.progress()
        prog["steps"] = [s for s in prog["steps"] if s["step"] < step] + [{
            "step": step, "marketplace": name, "auc_row": row, "trainable_params": method.trainable_params, **log,
        }]
        atomic.write_json(self.path / "progress.json", prog)
        keep = {self.checkpoint_dir(s["step"], s["marketplace"]) for s in prog["steps"][-2:]}
        for old in (self.path / "checkpoints").glob("step_*"):
            if old not in keep:
                shutil.rmtree(old, ignore_errors=True)

    def keep_steps(self, n: int) -> None:
        """Forget the steps after the first ``n`` (their checkpoints are gone or damaged: they run again)."""
        prog = self.progress()
        prog["steps"] = prog["steps"][:n]
        atomic.write_json(self.path / "progress.json", prog)

    def set_aside(self, checkpoint: Path, problem: str) -> Path:
        """Move a damaged checkpoint to ``damaged/`` (never deleted), with a note saying what was wrong."""
        aside = self.path / "damaged" / f"{checkpoint.name}-{time.strftime('%Y%m%d-%H%M%S')}"
        aside.parent.mkdir(parents=True, exist_ok=True)
        os.replace(checkpoint, aside)
        atomic.fsync_dir(checkpoint.parent)
        atomic.write_text(aside.with_name(aside.name + ".why.txt"), problem + "\n")
        return aside

    def save_artifacts(self, step: int, name: str, artifacts: dict) -> None:
        if not artifacts:
            return
        folder = self.path / "artifacts" / f"step_{step}_{name}"
        folder.mkdir(parents=True, exist_ok=True)
        for key, tensors in artifacts.items():
            atomic.save_tensors(folder / f"{key}.safetensors", tensors)

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
        atomic.write_json(self.path / "metrics.json", metrics)
        atomic.write_csv(self.path / "auc_matrix.csv", frame)


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
    return RunRecord(path, params, _read_json(m, "the run's metrics") if m.exists() else None, folder.progress())
