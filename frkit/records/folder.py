"""The run folder: self-describing, resumable, readable by notebooks; one process at a time.

outputs/<run>/
  params.yaml          resolved parameters (every key)
  environment.json     package versions, git revision, seed, python, device of the process that started the run;
                       ``sessions``: one entry per process that ran it (start, resume), each with its own revision
  fingerprint.json     per marketplace and split: rows and a sha256 of the data; the model's files (fingerprint.py)
  progress.json        one entry per finished marketplace: AUC row, training log, trainable params, seconds
  checkpoints/step_<k>_<name>/   the method's state after marketplace k, with checksums.json (sha256 of each
                       file); the latest two are kept, so a damaged latest one falls back to the one before
  damaged/             checkpoints that failed their checksums, set aside (never deleted) with a note of why
  metrics.json, auc_matrix.csv   written when the sequence is complete
  run.lock             while a process runs it: that process's pid and host (lock.py); never exported
Every file is written atomically and fsynced (frkit/atomic.py), JSON strictly (no NaN / Infinity), so a run
stopped at any point resumes from the last finished marketplace with everything before it intact.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
import yaml
from safetensors.torch import load_file

from frkit import atomic
from frkit.errors import FrkitInputError
from frkit.records.checksums import write_manifest
from frkit.records.environment import environment
from frkit.records.fingerprint import differences
from frkit.records.lock import LOCK, RunLock
from frkit.records.params import START_AGAIN, describe_changes, params_changes
from frkit.records.readers import read_json, read_progress, read_run_params

_PROBE = ".frkit-write-probe"


def make_writable_folder(path: Path) -> list[Path]:
    """Make the run folder ``path`` (and the folders above it that are missing) and write and delete a file in it:
    a folder that cannot be made or written (a file in the way, permissions, a read-only or virtual file system
    such as /proc) is refused here, naming ``output_dir``, before anything runs. Returns the folders it made,
    deepest first, for :func:`remove_made` to take away again when the run is refused."""
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise FrkitInputError(f"output_dir: cannot make the run folder {path}: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise FrkitInputError(
            f"output_dir: cannot write the run folder {path}: {existing} is not writable "
            "(permissions or a read-only file system); choose another output_dir"
        )
    missing = [p for p in [path, *path.parents] if not p.exists()]
    made = []
    try:
        for folder in reversed(missing):  # top down
            folder.mkdir(exist_ok=True)
            made.insert(0, folder)
        probe = path / f"{_PROBE}-{os.getpid()}"
        fd = os.open(probe, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        try:
            os.write(fd, b"frkit")
        finally:
            os.close(fd)
        probe.unlink()
    except OSError as err:
        remove_made(made)
        raise FrkitInputError(
            f"output_dir: cannot make or write the run folder {path} ({err.strerror or err}: "
            f"{err.filename or path}); a read-only or virtual file system, or permissions? choose "
            "another output_dir"
        ) from None
    return made


def remove_made(made: list[Path]) -> None:
    """Remove the folders of :func:`make_writable_folder` that are still empty (a refused run leaves none behind)."""
    for folder in made:
        try:
            folder.rmdir()
        except OSError:  # not empty (the run wrote it), or gone: it stays as it is
            pass


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
        remove_made(make_writable_folder(self.path))  # made and written, then left as it was
        if not resume:  # an existing folder is set aside whole, however its files read
            return
        saved = self.params()
        if saved is None:
            return
        changes = params_changes(saved, params, defaults)
        if changes:
            raise FrkitInputError(
                f"run folder {self.path} was started with other parameters ({describe_changes(changes)}); {START_AGAIN}"
            )
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
            raise FrkitInputError(
                f"run folder {self.path} was started with other data or another model "
                f"({'; '.join(changed)}); {START_AGAIN}"
            )

    def open(self, params: dict, resume: bool, defaults: dict | None = None, fingerprint: dict | None = None) -> None:
        """Create the folder, or check that an existing one was made with the same parameters (:meth:`check`)
        and record this process as a new session of it."""
        self.check(params, resume, defaults)
        if fingerprint is not None:
            self.check_fingerprint(fingerprint, resume)
        saved = self.params() if resume else None
        if not resume and (self.path / "params.yaml").exists():
            self._set_folder_aside()  # never delete finished work
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

    def _set_folder_aside(self) -> Path:
        """Move the folder's files into ``<run>.old-<time>`` (the lock stays: this process goes on holding it);
        params.yaml moves last, so a stop half-way leaves a folder that is set aside again, never resumed."""
        aside = self.path.with_name(f"{self.path.name}.old-{time.strftime('%Y%m%d-%H%M%S')}")
        aside.mkdir()
        entries = sorted(self.path.iterdir(), key=lambda p: p.name == "params.yaml")
        for entry in entries:
            if entry.name != LOCK:
                os.replace(entry, aside / entry.name)
        atomic.fsync_dir(aside)
        atomic.fsync_dir(self.path)
        return aside

    @contextmanager
    def locked(
        self, take: bool = True, share: Callable[[str | None], str | None] | None = None
    ) -> Iterator[RunLock | None]:
        """Make the folder (checked writable: :func:`make_writable_folder`) and hold its lock (lock.py) for the
        block; on leaving, however the block ends, drop the lock and remove the folders made here if the run
        left them empty (a refused run leaves no folder behind).

        In a launch of several processes only the main one takes the lock (``take``); ``share`` hands its
        refusal to every process (``distributed.broadcast_object``), so that all stop instead of waiting."""
        lock, made, refusal = None, [], None
        if take:
            try:
                made = make_writable_folder(self.path)
                lock = RunLock(self.path).acquire()
            except FrkitInputError as err:
                remove_made(made)
                refusal = str(err)
        if share is not None:
            refusal = share(refusal)
        if refusal is not None:
            raise FrkitInputError(refusal)
        try:
            yield lock
        finally:
            if lock is not None:
                lock.release()
            remove_made(made)

    def params(self) -> dict | None:
        return read_run_params(self.path)

    def fingerprint(self) -> dict | None:
        p = self.path / "fingerprint.json"
        if not p.exists():
            return None
        saved = read_json(p, "the fingerprint of the run's data and model")
        if not isinstance(saved, dict) or not isinstance(saved.get("data"), dict):
            raise FrkitInputError(f"{p}: expected {{'data': ..., 'model': ...}}; restore it, or {START_AGAIN}")
        return saved

    def _environment(self) -> dict | None:
        p = self.path / "environment.json"
        if not p.exists():
            return None
        env = read_json(p, "the environment of each session of the run")
        if not isinstance(env, dict):
            raise FrkitInputError(f"{p}: expected a mapping; restore it, or {START_AGAIN}")
        return env

    # -- progress ------------------------------------------------------------------------------------
    def progress(self) -> dict:
        return read_progress(self.path)

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
        write_manifest(tmp)
        atomic.replace_dir(tmp, final)
        prog = self.progress()
        prog["steps"] = [s for s in prog["steps"] if s["step"] < step] + [
            {
                "step": step,
                "marketplace": name,
                "auc_row": row,
                "trainable_params": method.trainable_params,
                **log,
            }
        ]
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
