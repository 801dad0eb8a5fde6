"""The local executor: a sweep's pending runs on this machine, one after another or ``jobs`` at once.

``jobs > 1`` trains several runs at once, each in a fresh process of its own (spawn: safe with CUDA). Measured: on 2
CPU cores two one-thread runs beat one two-thread run by ~1.2x, and a small encoder leaves most of a GPU idle. A run
that fails, or whose process dies (killed, out of memory), fails alone: unlike a process pool, which breaks for every
queued run when one of its processes dies, the other runs go on.
"""

from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import ThreadPoolExecutor, as_completed

from frkit.sweep.export import export_run
from frkit.sweep.progress import SweepProgress
from frkit.sweep.spec import Sweep
from frkit.sweep.worker import log_path, logs_to, run_in_process


def run_local(sweep: Sweep, todo: list, jobs: int = 1, progress: SweepProgress | None = None) -> None:
    """Train every (key, cfg) of ``todo`` here and export each finished run to the sweep's results folder; each
    finished run is a line and a step of ``progress`` (frkit/sweep/progress.py), its own log beside its folder."""
    progress = progress or SweepProgress(sweep.name, todo, parallel=jobs)
    if jobs > 1:
        run_parallel(sweep, todo, jobs, progress)
        return
    # the model stack loads only when a run trains here, not where a sweep is validated or summarised
    from frkit.runner import run

    for key, cfg in todo:
        progress.write(f"== {key}: training, log in {log_path(cfg)}")
        try:
            with logs_to(log_path(cfg)):
                run(cfg, show_progress=False)
        except BaseException as err:  # the sweep stops at the first failed run, as before; the line says which
            progress.finished(key, cfg.run_dir, error=f"{type(err).__name__}: {err}".splitlines()[0])
            raise
        export_run(cfg.run_dir, sweep.result_folder(key))
        progress.finished(key, cfg.run_dir)


def run_parallel(sweep: Sweep, todo: list, jobs: int, progress: SweepProgress) -> None:
    """``jobs`` runs at a time, each in its own spawned process; the failures are raised together at the end."""
    threads = max(1, (os.cpu_count() or 1) // jobs)
    failed = []
    ctx = multiprocessing.get_context("spawn")
    pool = ThreadPoolExecutor(max_workers=jobs)  # threads only wait on the run processes
    try:
        futures = {pool.submit(run_in_process, ctx, key, cfg, threads): (key, cfg) for key, cfg in todo}
        for key, cfg in todo:
            progress.write(f"== {key}: log in {log_path(cfg)}")
        for future in as_completed(futures):
            key, cfg = futures[future]
            error = future.result()
            if not error:
                export_run(cfg.run_dir, sweep.result_folder(key))
            progress.finished(key, cfg.run_dir, error)
            if error:
                failed.append(f"{key}:\n{error}")
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)  # Ctrl-C: start no queued run (the running ones got it too)
        raise
    pool.shutdown()
    if failed:
        raise RuntimeError("sweep runs failed (finished runs are kept):\n" + "\n".join(failed))
