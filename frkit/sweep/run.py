"""``frkit sweep FILE``: train every (run, order, seed) of a sweep file that has no results yet, on an executor.

Runs go seed-major, then order, so a stopped sweep already holds a complete comparison for its first seed. A run
whose results are already in the results folder is skipped (after checking they were made with its parameters now),
so a sweep spans sessions: commit the results folder as runs finish. The summary is built by the reports
(``frkit.reports.summary``) from the results folder alone, so ``--summary-only`` re-checks every figure from
committed files.
"""

from __future__ import annotations

import itertools
from pathlib import Path

from frkit.errors import FrkitInputError
from frkit.sweep.export import check_results_match, export_run, is_finished
from frkit.sweep.local import run_local
from frkit.sweep.progress import SweepProgress
from frkit.sweep.ray import connect, parallel_runs, run_on_ray
from frkit.sweep.spec import Sweep, load_sweep
from frkit.tracking import check_tracker

EXECUTORS = ("local", "ray")


def run_sweep(
    path: str | Path | Sweep,
    only: list[str] | None = None,
    overrides: dict | None = None,
    jobs: int = 1,
    seeds: list[int] | None = None,
    orders: list[str] | None = None,
    executor: str = "local",
    address: str | None = None,
) -> Sweep:
    """Train every (run, order, seed) of the sweep file whose results are not there yet; returns the sweep.

    ``only`` / ``seeds`` / ``orders`` (order tags such as ``en-es-ja``) pick a part of the sweep. ``executor``:
    ``"local"`` (processes here, ``jobs`` at once) or ``"ray"`` (a task per run on the Ray cluster at ``address``;
    none: a local Ray instance). ``path`` may be a sweep already loaded (``frkit tune`` builds its own)."""
    if jobs < 1:
        raise FrkitInputError(f"--jobs {jobs}: expected a whole number >= 1")
    if executor not in EXECUTORS:
        raise FrkitInputError(f"--executor {executor!r}: expected one of {list(EXECUTORS)}")
    if address is not None and executor != "ray":
        raise FrkitInputError(f"--address {address}: only with --executor ray")
    sweep = path if isinstance(path, Sweep) else load_sweep(path, overrides)
    path = sweep.path
    if sweep.tuning is not None and not sweep.tuned:
        raise FrkitInputError(
            f"sweep file {path} tunes its families first (its tuning: block) and {sweep.tuning.chosen_file} is "
            f"not there yet: run `frkit tune {path}` (it trains the tuning runs and writes the chosen values)"
        )
    if executor == "ray":
        connect(address)  # Ray installed and a cluster there, or the command that fixes it, before any run
    known_orders = sorted({k.order_tag for k in sweep.configs})
    for given, known, flag in (
        (only, sweep.labels, "--only"),
        (seeds, sweep.seeds, "--seeds"),
        (orders, known_orders, "--orders"),
    ):
        unknown = sorted(set(given or []) - set(known))
        if unknown:
            raise FrkitInputError(f"sweep file {path}: {flag} {unknown} not among its {known}")
    # seed-major, then order: a stopped sweep already holds a complete comparison for its first seed and order
    all_orders = list(dict.fromkeys(k.order for k in sweep.configs))
    rank = {(s, o): i for i, (s, o) in enumerate(itertools.product(sweep.seeds, all_orders))}
    todo = [
        (key, cfg)
        for key, cfg in sweep.configs.items()
        if (not only or key.label in only)
        and (not seeds or key.seed in seeds)
        and (not orders or key.order_tag in orders)
    ]
    todo.sort(key=lambda item: rank[(item[0].seed, item[0].order)])
    pending = []
    for key, cfg in todo:
        if is_finished(sweep.result_folder(key)):
            check_results_match(sweep, key, cfg)
            continue  # committed results of these very parameters: nothing to train
        if is_finished(cfg.run_dir):
            export_run(cfg.run_dir, sweep.result_folder(key))  # finished earlier, not yet exported
            continue
        pending.append((key, cfg))
    for report_to in sorted({cfg.report_to for _, cfg in pending}):
        check_tracker(report_to)  # W&B without a key fails now, not in every run
    print(
        f"== {sweep.name}: {len(todo) - len(pending)} of {len(todo)} runs already have results; "
        f"{len(pending)} to train",
        flush=True,
    )
    # the estimate of time left starts from the recorded times of every run of the sweep with results
    finished = [(key, sweep.result_folder(key)) for key in sweep.configs if is_finished(sweep.result_folder(key))]
    parallel = parallel_runs(connect(address), sweep, pending) if executor == "ray" else jobs
    progress = SweepProgress(sweep.name, pending, finished, parallel=parallel)
    try:
        if executor == "ray":
            run_on_ray(sweep, pending, address, progress)
        else:
            run_local(sweep, pending, jobs, progress)
    finally:
        progress.close()
    return sweep
