"""One run of a sweep in a process of its own: the worker body that both executors (local processes, Ray tasks) run.

The worker rebuilds the run's config from its values, logs to ``<run folder>.log`` (beside the folder, which a
``resume: false`` start moves aside), writes its pid beside the log (``seed0.pid``: for ``kill`` or a debugger), and
reports a failure as its traceback text instead of raising, so the sweep decides what a failed run means.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
import traceback
from contextlib import contextmanager
from pathlib import Path

from frkit import atomic
from frkit.config import make_config


def log_path(cfg) -> Path:
    """Beside the run folder, not in it: a run started afresh (resume: false) moves its old folder aside."""
    return cfg.run_dir.with_name(f"{cfg.run_dir.name}.log")


def run_in_worker(values: dict, threads: int, log_file: str) -> str | None:
    """Worker body: rebuild the config, log to the run's log file, return the traceback text on failure. The
    process's pid goes beside the log (``seed0.pid``): who runs it, for ``kill`` or a debugger."""
    # torch and the model stack load in the process that trains, not where a sweep is validated or summarised
    import torch

    from frkit.runner import run

    torch.set_num_threads(threads)
    cfg = make_config(values)
    with logs_to(log_file):
        try:
            run(cfg, show_progress=False)
            return None
        except BaseException:  # noqa: BLE001 - reported to the parent, which decides
            error = traceback.format_exc()
            logging.getLogger(__name__).error("run failed:\n%s", error)  # kept in the run's log
            return error


def stop_with_sweep(sweep_pid: int, poll_seconds: float = 2.0) -> None:
    """A run's process ends when its sweep's process is gone. Ctrl-C reaches every process of the terminal's group,
    but ``kill``, ``timeout`` or a closed session stop only the sweep, and its runs went on unseen, holding their
    run folders' locks. The run's finished marketplaces are kept; running the sweep again resumes it."""
    while os.getppid() == sweep_pid:
        time.sleep(poll_seconds)
    logging.getLogger(__name__).error("the sweep (process %d) is gone: this run stops", sweep_pid)
    os.kill(os.getpid(), signal.SIGTERM)


def _nothing(record: logging.LogRecord) -> bool:
    return False


@contextmanager
def logs_to(log_file: str | Path):
    """For the block, the process's log records go to ``log_file`` (its pid beside it) and to no other handler of
    the root logger, and transformers draws no progress bar (loading weights): a run trained in the sweep's own
    process (``--jobs 1``) keeps its epochs in its log, as a run in a process of its own does, and the sweep's
    output holds only the sweep's lines and bar."""
    from transformers.utils import logging as hf_logging

    Path(log_file).parent.mkdir(parents=True, exist_ok=True)
    atomic.write_text(Path(log_file).with_suffix(".pid"), f"{os.getpid()}\n")
    root = logging.getLogger()
    others = list(root.handlers)
    handler = logging.FileHandler(log_file)
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s: %(message)s"))
    level, bars = root.level, hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    for other in others:
        other.addFilter(_nothing)
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield
    except BaseException:
        logging.getLogger(__name__).exception("run failed")  # the traceback stays in the run's log
        raise
    finally:
        root.removeHandler(handler)
        handler.close()
        root.setLevel(level)
        if bars:
            hf_logging.enable_progress_bar()
        for other in others:
            other.removeFilter(_nothing)


def run_in_process(ctx, key, cfg, threads: int) -> str | None:
    """One run in a spawned process: None when it finished, else its traceback or how its process died."""
    receive, send = ctx.Pipe(duplex=False)
    process = ctx.Process(
        target=process_main,
        args=(cfg.model_dump(), threads, str(log_path(cfg)), send, os.getpid()),
        name=f"frkit {key}",
        daemon=False,
    )
    process.start()
    send.close()  # the child holds the only sending end now: its death reads as end-of-file here
    try:
        error = receive.recv()
    except EOFError:
        process.join()
        code = process.exitcode
        if code is not None and code < 0:
            how = (
                f"its process died (killed by {signal.Signals(-code).name}) before reporting: killed, or out of memory?"
            )
        else:
            how = f"its process exited with code {code} before reporting (its error went to the sweep's stderr)."
        return f"{how} Its finished marketplaces are kept in {cfg.run_dir}; run the sweep again to resume it\n"
    finally:
        receive.close()
    process.join()
    return error


def process_main(values: dict, threads: int, log_file: str, send, sweep_pid: int | None = None) -> None:
    """Entry point of a run's process: the worker body, its outcome sent back through the pipe."""
    if sweep_pid is not None:
        threading.Thread(target=stop_with_sweep, args=(sweep_pid,), daemon=True).start()
    send.send(run_in_worker(values, threads, log_file))
    send.close()
