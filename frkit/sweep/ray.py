"""The Ray executor, ``frkit sweep FILE --executor ray [--address auto]``: each run a Ray task (Ray: ``[cluster]``).

Each pending run becomes one task with the run's resource needs (``resources: {num_cpus, num_gpus}`` in the sweep
file, for every run or per run). The task is ``frkit run`` of that run's parameters in a Ray worker; the run folders
are written by the workers, so on a cluster of several machines ``output_dir`` must be a shared file system (the
driver reads the folders to stream progress and to export finished runs to the results folder, as the local executor
does). A worker that dies (killed, out of memory, its node lost) fails the task with a system error and Ray runs it
again (``max_retries``); the new attempt resumes the run folder from its last finished marketplace (``resume: true``,
the default). Progress is streamed by the driver: every finished marketplace of every run, read from its
``progress.json``, and every finished or failed run.
"""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

from frkit.errors import FrkitInputError
from frkit.sweep.export import export_run
from frkit.sweep.progress import SweepProgress
from frkit.sweep.spec import Sweep
from frkit.sweep.worker import log_path, run_in_worker

INSTALL = 'pip install -e ".[cluster]"  (Ray 2.60)'
RETRIES = 3  # attempts after a worker dies; each resumes from the last finished marketplace
POLL_SECONDS = 2.0


def import_ray():
    """Ray, or a FrkitInputError saying how to install it (before any run starts)."""
    try:
        import ray
    except ImportError:
        raise FrkitInputError(
            f"--executor ray needs Ray, which is not installed here: {INSTALL}; or leave "
            "--executor out to run the sweep as local processes"
        ) from None
    return ray


def connect(address: str | None):
    """Join the cluster at ``address`` ("auto": the one started on this machine with ``ray start --head``), or
    start a local Ray instance when no address is given. No cluster there: a FrkitInputError with the fix."""
    ray = import_ray()
    if ray.is_initialized():
        return ray
    if address not in (None, "auto", "local") and not address.startswith("ray://"):
        _reachable(address)  # ray.init would wait a long while for a head that is not there
    try:
        ray.init(address=address, log_to_driver=False, configure_logging=False)
    except (ConnectionError, RuntimeError, ValueError) as err:
        where = "on this machine (--address auto)" if address == "auto" else f"at {address}"
        raise FrkitInputError(
            f"--executor ray: no Ray cluster {where} ({str(err).splitlines()[0]}); start one "
            "with `ray start --head` on this machine (workers: `ray start --address <head>:6379`), "
            "or leave --address out to start a local Ray instance"
        ) from None
    return ray


def _reachable(address: str) -> None:
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host or "127.0.0.1", int(port)), timeout=5):
            return
    except (OSError, ValueError) as err:
        raise FrkitInputError(
            f"--executor ray: no Ray cluster at {address} ({err}); start one there with "
            "`ray start --head --port <port>`, or give its head's <host>:<port> (`ray status` on "
            "the head shows it), or leave --address out to start a local Ray instance"
        ) from None


def run_on_ray(sweep: Sweep, todo: list, address: str | None, progress: SweepProgress | None = None) -> None:
    """Submit every (key, cfg) of ``todo`` as a task, stream progress until all are done, export finished runs.
    The task is the local executor's worker body (which writes the pid beside the log)."""
    ray = connect(address)
    progress = progress or SweepProgress(sweep.name, todo, parallel=parallel_runs(ray, sweep, todo))
    remote = ray.remote(max_retries=RETRIES, retry_exceptions=False)(run_in_worker)
    refs = {}
    for key, cfg in todo:
        need = sweep.resources[key]
        threads = max(1, int(need["num_cpus"]))
        ref = remote.options(num_cpus=need["num_cpus"], num_gpus=need["num_gpus"], name=f"frkit {key}").remote(
            cfg.model_dump(), threads, str(log_path(cfg))
        )
        refs[ref] = (key, cfg)
        progress.write(
            f"== {key}: submitted to Ray ({need['num_cpus']} CPU, {need['num_gpus']} GPU), log in {log_path(cfg)}"
        )
    seen = {key: 0 for key, _ in todo}
    failed = []
    pending = list(refs)
    while pending:
        done, pending = ray.wait(pending, num_returns=1, timeout=POLL_SECONDS)
        for key, cfg in refs.values():
            seen[key] = _report_steps(key, cfg.run_dir, seen[key], progress.write)
        for ref in done:
            key, cfg = refs[ref]
            try:
                error = ray.get(ref)
            except Exception as err:  # noqa: BLE001 - the worker died more often than Ray retries
                error = f"{type(err).__name__}: {err}"
            if not error:
                export_run(cfg.run_dir, sweep.result_folder(key))
            progress.finished(key, cfg.run_dir, error)
            if error:
                failed.append(f"{key}:\n{error}")
    if failed:
        raise RuntimeError("sweep runs failed on Ray (finished runs are kept):\n" + "\n".join(failed))


def parallel_runs(ray, sweep: Sweep, todo: list) -> int:
    """How many of ``todo``'s tasks the cluster runs at once, by CPUs (for the sweep's estimate of time left)."""
    cpus = ray.cluster_resources().get("CPU", 1)
    need = max((sweep.resources[key]["num_cpus"] for key, _ in todo), default=1) or 1
    return max(1, int(cpus // need))


def _report_steps(key, run_dir: Path, already: int, write=print) -> int:
    """Print the marketplaces ``run_dir`` finished since the last look; the count now."""
    try:
        steps = json.loads((run_dir / "progress.json").read_text())["steps"]
    except (OSError, ValueError, KeyError):
        return already
    for s in steps[already:]:
        row = ", ".join(f"{x:.3f}" if isinstance(x, float) else "-" for x in s["auc_row"])
        write(f"== {key}: {s['marketplace']} learned ({time.strftime('%H:%M:%S')}), AUC row [{row}]")
    return max(already, len(steps))
