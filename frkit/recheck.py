"""Re-check a committed result: train the run again from its own files and compare the AUC matrices.

``frkit recheck results/cpu_stsb/independent/en-es-ja/seed2`` trains that run again from its ``params.yaml`` into a
fresh folder under ``outputs/recheck/`` and prints, cell by cell, how far the new AUC matrix lies from the committed
one. fp32 is not bit-exact across CPUs (kernels sum in another order): rechecked on a Zen 4 EPYC, runs made on an
AVX2-only EPYC gave independent's AUC matrices to the last digit, FR-LoRA's within 0.0175 (its Stage II amplifies the
last-digit differences). Under bf16 autocast the rounding depends on the CPU's kernels too, so a run that recorded
bf16 is trained again in bf16. Use ``--tolerance`` for what counts as the same.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from frkit import atomic
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
        """Largest |again - committed|; a cell evaluated in one matrix and not the other counts as infinite."""
        both_missing = np.isnan(self.committed) & np.isnan(self.again)
        diff = np.abs(self.committed - self.again)[~both_missing]
        return float(np.nan_to_num(diff, nan=np.inf).max()) if diff.size else 0.0

    def record(self) -> dict:
        """What a recheck found, with where it ran (strict JSON: an unevaluated cell is null, as is a difference
        between a cell evaluated in one matrix only)."""
        from frkit.records import environment

        def rows(m):
            return [[None if np.isnan(x) else float(x) for x in row] for row in m]

        env = environment(0)
        return {
            "result": str(self.folder),
            "precision": self.precision,
            "marketplaces": self.names,
            "committed": rows(self.committed),
            "again": rows(self.again),
            "max_difference": None if np.isinf(self.max_difference) else self.max_difference,
            "again_on": {
                k: env[k] for k in ("cpu", "bf16_autocast_why", "torch_threads", "git_revision", "versions", "started")
            },
        }


def read_committed(folder: Path) -> tuple[dict, np.ndarray, list[dict]]:
    """(params, AUC matrix, progress steps) of a finished result folder, read and checked by
    :func:`frkit.records.load_run` (each unreadable file named); a missing file is named too."""
    from frkit.records import load_run

    for name in ("params.yaml", "metrics.json", "progress.json"):
        if not (folder / name).is_file():
            raise FrkitInputError(
                f"{folder}: no {name}; expected a finished run's folder (params.yaml, "
                "metrics.json, progress.json), e.g. results/cpu_stsb/independent/en-es-ja/seed0"
            )
    rec = load_run(folder)
    try:
        committed = np.array(
            [[np.nan if x is None else x for x in row] for row in rec.metrics["auc_matrix"]], dtype=float
        )
    except (TypeError, ValueError, KeyError) as err:
        raise FrkitInputError(
            f"{folder / 'metrics.json'}: no auc_matrix of numbers ({type(err).__name__}: "
            f"{str(err).splitlines()[0] if str(err) else ''})"
        ) from None
    if committed.ndim != 2 or committed.shape[0] != committed.shape[1]:
        raise FrkitInputError(f"{folder / 'metrics.json'}: auc_matrix is not a square matrix ({committed.shape})")
    return rec.params, committed, rec.progress["steps"]


def choose_precision(folder: Path, steps: list[dict], precision: str | None) -> tuple[str, str]:
    """(precision to train in again, where that came from): the one asked for, else the one the run recorded,
    else fp32 for a run with no record (runs made before frkit recorded it)."""
    from frkit.records import UNRECORDED, run_precision

    if precision is not None:
        return precision, "frkit recheck --precision"
    recorded = run_precision(folder, steps)
    if recorded == "mixed":
        raise FrkitInputError(
            f"{folder}: its steps ran in different precisions (resumed on another machine); "
            "choose one with --precision fp32 or --precision bf16"
        )
    if recorded == UNRECORDED:
        return "fp32", f"frkit recheck (no precision recorded in {folder}: fp32)"
    return recorded, f"frkit recheck (the precision {folder} recorded)"


def recheck(
    folder: str | Path, output_dir: str | Path = RECHECK_DIR, precision: str | None = None, show_progress: bool = True
) -> Recheck:
    """Train the committed run in ``folder`` again, in a new folder under ``output_dir`` (never setting an earlier
    recheck aside), and return both AUC matrices. The run's own parameters are used unchanged apart from where
    it is written and ``precision``; its checkpoints are deleted once it has finished (they serve only a resume)."""
    from frkit.config import make_config
    from frkit.distributed import get_accelerator
    from frkit.paths import resolve
    from frkit.precision import resolve_precision
    from frkit.records import with_legacy_values
    from frkit.runner import run

    folder = Path(folder)
    params, committed, steps = read_committed(folder)
    chosen, source = choose_precision(folder, steps, precision)  # checked before anything trains or is written
    params = with_legacy_values(params)  # a key an older run lacks: what that run did
    cfg = make_config(
        {**params, "resume": False}, source=str(folder / "params.yaml"), override_source=source, precision=chosen
    )
    if committed.shape != (len(cfg.marketplaces),) * 2:
        raise FrkitInputError(
            f"{folder}: metrics.json's auc_matrix is {committed.shape}, but params.yaml names "
            f"{len(cfg.marketplaces)} marketplaces; the result folder does not match its params"
        )
    try:
        resolve_precision(chosen, get_accelerator().device)
    except FrkitInputError as err:
        raise FrkitInputError(
            f"{source}: {chosen} cannot run on this machine ({err}); train it again with "
            "--precision fp32 and compare with a --tolerance"
        ) from None
    out = resolve(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    cfg = cfg.model_copy(update={"output_dir": tempfile.mkdtemp(prefix="recheck-", dir=out)})  # checked above
    result = run(cfg, show_progress=show_progress)
    shutil.rmtree(result.run_dir / "checkpoints", ignore_errors=True)
    check = Recheck(folder, result.run_dir, chosen, list(cfg.marketplaces), committed, result.auc_matrix)
    atomic.write_json(result.run_dir / "recheck.json", check.record())  # small: fit to commit beside the results
    return check


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


def table(paths: list[str | Path]) -> str:
    """Markdown table of recheck.json files: what was rechecked, in what precision, on what CPU, how far apart,
    and how far the final average AUC moved (``python -m frkit.recheck results/rechecks/*.json``)."""
    lines = [
        "| result | precision | rechecked on | largest \\|difference\\| | final average AUC: committed -> again |",
        "|---|---|---|---|---|",
    ]
    for path in paths:
        r = json.loads(Path(path).read_text(encoding="utf-8"))
        largest = "cell in one matrix only" if r["max_difference"] is None else f"{r['max_difference']:.3g}"
        avg = [float(np.mean(r[k][-1])) for k in ("committed", "again")]
        on = r["again_on"]
        lines.append(
            f"| `{r['result']}` | {r['precision']} | {on.get('bf16_autocast_why', on['cpu'])}; {on['torch_threads']} "
            f"thread(s) | {largest} | {avg[0]:.4f} -> {avg[1]:.4f} ({avg[1] - avg[0]:+.4f}) |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    import sys

    print(table(sys.argv[1:]))
