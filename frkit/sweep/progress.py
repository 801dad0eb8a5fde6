"""What ``frkit sweep`` prints while it trains: a line per finished run and a progress bar over the sweep.

The bar counts the runs of this call (done of total), the time since it started, and an estimate of what is left:
each run still to train costs the mean recorded time (``progress.json``: learn + evaluation seconds of each
marketplace, and the initial scores) of the finished runs of its label, else of all finished runs, and ``parallel``
of them train at once. Finished runs are those in the results folder (earlier sessions: an estimate from the start)
and those finished in this call. In a terminal the bar redraws in place, with the run lines printed above it; where
stdout is not a terminal (a log file, ``nohup``, CI) each update is one plain line, so a log reads the same. A run's
own progress (epochs, losses) goes to its log beside its folder (``frkit.sweep.worker``), never here.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path

from tqdm.auto import tqdm

REFRESH_SECONDS = 1.0  # a terminal's bar: elapsed time and the estimate tick between finished runs


def recorded_seconds(folder: Path) -> float | None:
    """The seconds a finished run recorded (its steps' learn + evaluation time and the initial scores), or None
    where its ``progress.json`` is missing or unreadable: the estimate then goes without it."""
    try:
        progress = json.loads((Path(folder) / "progress.json").read_text(encoding="utf-8"))
        steps = progress["steps"]
        seconds = sum(float(s.get("learn_seconds", 0.0)) + float(s.get("eval_seconds", 0.0)) for s in steps)
        seconds += float(progress.get("init_seconds") or 0.0)
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    return seconds if steps and seconds > 0 else None


def duration(seconds: float) -> str:
    seconds = int(round(max(0.0, seconds)))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def estimate_left(labels: list[str], known: dict[str, list[float]], parallel: int = 1) -> float | None:
    """Seconds the runs of ``labels`` still take: each at the mean recorded time of its label where known, else of
    every finished run; None while no run has a recorded time."""
    every = [s for times in known.values() for s in times]
    if labels and not every:
        return None
    mean_all = sum(every) / len(every) if every else 0.0
    total = sum(sum(known[label]) / len(known[label]) if known.get(label) else mean_all for label in labels)
    return total / max(1, parallel)


class SweepProgress:
    """The sweep's lines and bar. ``pending``: the (key, cfg) pairs this call trains; ``finished_before``: the
    results folders of the sweep's runs that already have results (their recorded times seed the estimate)."""

    def __init__(
        self, name: str, pending: list, finished_before: list = (), parallel: int = 1, stream=None, clock=time.monotonic
    ):
        self.name, self.parallel, self.clock = name, max(1, parallel), clock
        self.stream = stream if stream is not None else sys.stdout
        self.left = {key: key.label for key, _ in pending}
        self.total, self.done, self.failed = len(pending), 0, 0
        self.known: dict[str, list[float]] = {}
        for key, folder in finished_before:
            self._record(key.label, recorded_seconds(folder))
        self.started = self.clock()
        self.estimated_at, self.estimate = (
            self.started,
            estimate_left(list(self.left.values()), self.known, self.parallel),
        )
        self.lock = threading.Lock()
        self.bar = self.ticker = None
        if self.total and getattr(self.stream, "isatty", lambda: False)():
            self.bar = tqdm(
                total=self.total,
                file=self.stream,
                desc=f"== {self.name}",
                dynamic_ncols=True,
                bar_format="{desc}: {n_fmt}/{total_fmt} runs |{bar}| {percentage:3.0f}%{postfix}",
            )
            self._refresh_bar()
            self.stop = threading.Event()
            self.ticker = threading.Thread(target=self._tick, daemon=True, name="sweep progress")
            self.ticker.start()

    def _record(self, label: str, seconds: float | None) -> None:
        if seconds is not None:
            self.known.setdefault(label, []).append(seconds)

    def status(self) -> str:
        """``elapsed 0:05:12, ETA 0:12:40`` (the estimate less the time since it was made)."""
        now = self.clock()
        if not self.left:
            eta = "done"
        elif self.estimate is None:
            eta = "ETA after the first finished run"
        else:
            eta = f"ETA {duration(self.estimate - (now - self.estimated_at))}"
        failed = f", {self.failed} failed" if self.failed else ""
        return f"elapsed {duration(now - self.started)}, {eta}{failed}"

    def line(self) -> str:
        """The bar as one plain line (``k/N``, a bar of 20, percent, elapsed, ETA)."""
        width = 20
        filled = width * self.done // self.total if self.total else width
        percent = 100 * self.done // self.total if self.total else 100
        return (
            f"== {self.name}: {self.done}/{self.total} runs [{'#' * filled}{'.' * (width - filled)}] "
            f"{percent}%, {self.status()}"
        )

    def write(self, text: str) -> None:
        """A line of the sweep's own (a run submitted, a marketplace learned), above the bar in a terminal."""
        with self.lock:
            if self.bar is not None:
                self.bar.write(text, file=self.stream)
            else:
                print(text, file=self.stream, flush=True)

    def finished(self, key, run_dir: Path, error: str | None = None) -> None:
        """A run of ``pending`` ended: its line (done in how long, or why it failed), then the bar."""
        seconds = None if error else recorded_seconds(run_dir)
        if not error:
            self._record(key.label, seconds)
        self.left.pop(key, None)
        self.done += 1
        self.failed += bool(error)
        self.estimated_at = self.clock()
        self.estimate = estimate_left(list(self.left.values()), self.known, self.parallel)
        took = f" in {duration(seconds)}" if seconds is not None else ""
        self.write(f"== {key}: failed: {error.strip().splitlines()[-1]}" if error else f"== {key}: done{took}")
        if self.bar is not None:
            with self.lock:
                self.bar.set_postfix_str(self.status(), refresh=False)  # count and estimate drawn together
                self.bar.update(1)
                self.bar.refresh()
        else:
            self.write(self.line())

    def _refresh_bar(self) -> None:
        self.bar.set_postfix_str(self.status(), refresh=True)

    def _tick(self) -> None:
        while not self.stop.wait(REFRESH_SECONDS):
            with self.lock:
                self._refresh_bar()

    def close(self) -> None:
        if self.ticker is not None:
            self.stop.set()
            self.ticker.join()
            self.ticker = None
        if self.bar is not None:
            self.bar.close()
            self.bar = None
