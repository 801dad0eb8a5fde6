"""A sweep's results folder: finished runs exported into it with a sha256 manifest, and kept results checked.

``results/<sweep>/<label>/<order>/seed<k>/`` holds a finished run's small files (never checkpoints or tensors) and
``checksums.json``, the sha256 of each (``frkit.records.checksums``): the summary refuses a run whose files no longer
match it, so a hand-edited ``metrics.json`` never reaches the tables or the claims silently. A deliberate change is
re-exported (the manifest is written anew) or blessed with ``frkit sweep FILE --write-manifests``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from frkit import atomic
from frkit.config import BaseRunConfig, default_params
from frkit.errors import FrkitInputError
from frkit.records.checksums import write_manifest
from frkit.records.params import describe_changes, params_changes
from frkit.records.precision import UNRECORDED, run_precision
from frkit.records.readers import read_params
from frkit.sweep.spec import RunKey, Sweep

RESULT_FILES = ("params.yaml", "environment.json", "metrics.json", "auc_matrix.csv", "progress.json")


def is_finished(folder: Path) -> bool:
    return (folder / "metrics.json").is_file()


def export_run(run_dir: Path, target: Path) -> None:
    """Copy a finished run's small files into the results folder with their manifest, atomically (the whole folder
    replaces the old one at once)."""
    tmp = target.with_name(target.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for name in RESULT_FILES:
        if (run_dir / name).is_file():
            shutil.copy2(run_dir / name, tmp / name)
    write_manifest(tmp)
    atomic.replace_dir(tmp, target)


def write_manifests(sweep: Sweep) -> list[Path]:
    """(Re)write the manifest of every run of the sweep that has a results folder: the files as they are now are
    the ones meant (``frkit sweep FILE --write-manifests``). Returns the folders written."""
    written = []
    for key in sweep.configs:
        folder = sweep.result_folder(key)
        if folder.is_dir():
            write_manifest(folder)
            written.append(folder)
    return written


def check_results_match(sweep: Sweep, key: RunKey, cfg: BaseRunConfig) -> None:
    """Results kept for a run must have been made with the run's parameters now: a changed base file or sweep
    entry would otherwise be summarised with numbers from other settings."""
    folder = sweep.result_folder(key)
    saved = read_params(folder)
    if not saved:
        raise FrkitInputError(f"{folder}: results without a readable params.yaml; delete the folder to run {key} again")
    changes = params_changes(saved, cfg.model_dump(), default_params())
    if changes.get("precision") == ("auto", "fp32") and _ran_fp32_or_unrecorded(folder):
        del changes["precision"]  # what auto resolved to there; see _ran_fp32_or_unrecorded
    if changes:
        raise FrkitInputError(
            f"results of {key} in {folder} were made with other parameters "
            f"({describe_changes(changes, limit=6)}); delete that folder to run it again, or "
            "restore the parameters"
        )


def _ran_fp32_or_unrecorded(folder: Path) -> bool:
    """Whether results made with ``precision: auto`` count for a sweep that now asks for fp32: yes where the run
    recorded fp32, and where it recorded nothing (runs from before frkit recorded it: the summary's precision
    column shows them as ``?``, never as fp32); no where any step ran under bf16 autocast."""
    try:
        steps = json.loads((folder / "progress.json").read_text(encoding="utf-8")).get("steps", [])
    except (OSError, UnicodeDecodeError, ValueError, AttributeError):
        raise FrkitInputError(
            f"{folder / 'progress.json'}: not readable; it holds the run's steps: restore it, or "
            "delete the folder to run it again"
        ) from None
    return run_precision(folder, steps) in ("fp32", UNRECORDED)
