"""Sweeps: methods / variants x seeds x marketplace orders on one base params file.

spec      the sweep file (RunKey, Sweep, load_sweep) and its validation, before anything trains
worker    one run in a process of its own: the worker body both executors run (run_in_worker, log_path)
local     the local executor: runs one after another, or ``jobs`` at once in spawned processes
ray       the Ray executor: a task per run on a cluster (Ray is optional: ``pip install -e ".[cluster]"``)
export    a finished run into the results folder with its sha256 manifest; kept results checked
run       ``run_sweep``: what is left to train, in order, on the chosen executor
progress  what a sweep prints while it trains: a line per finished run, a bar over its runs with the time left

The summary of a results folder is the reports' (``frkit.reports.summary``): nothing here imports the reports.
"""

from frkit.sweep.export import check_results_match, export_run, write_manifests
from frkit.sweep.run import run_sweep
from frkit.sweep.spec import RunKey, Sweep, load_sweep

__all__ = ["load_sweep", "run_sweep", "export_run", "write_manifests", "check_results_match", "Sweep", "RunKey"]
