"""Run tracking (``report_to``): a run's learning curves, AUC rows, final metrics and params where researchers look.

``report_to``: ``tensorboard`` (the default: event files in ``<run folder>/tensorboard/``, no server), ``mlflow`` (a
store inside the run folder, or ``MLFLOW_TRACKING_URI``; the ``tracking`` extra), ``wandb`` (a W&B account), or
``none``. What is logged: ``frkit/tracking/points.py``; how: ``frkit/tracking/backends.py``.

The runner holds one :class:`RunTracking` per run: made before the run folder, so a tracker that cannot log (W&B
without a key, a library not installed) fails before any data or model loads, with the command that fixes it; fed
from what the runner already has per marketplace (the method's learn log with its learning curve, the AUC row), so
the training loop knows nothing of tracking; closed however the run ends (a failed run is marked failed where the
tracker has the notion). Only the process that writes the run folder logs.
"""

from __future__ import annotations

import importlib.util
import netrc
import os
from pathlib import Path
from urllib.parse import urlparse

from frkit.errors import FrkitInputError
from frkit.tracking.points import auc_points, final_points, learning_points

REPORT_TO = ("none", "tensorboard", "mlflow", "wandb")
_INSTALL = {
    "tensorboard": "pip install tensorboard  (frkit's own install brings it: pip install -e .)",
    "mlflow": 'pip install -e ".[tracking]"  (or pip install mlflow)',
    "wandb": "pip install wandb",
}
_INSTEAD = "or -p report_to tensorboard (event files in the run folder), or -p report_to none"


def _wandb_logged_in() -> bool:
    """A W&B key where wandb looks: ``WANDB_API_KEY``, or the netrc entry ``wandb login`` writes for its host."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    host = urlparse(os.environ.get("WANDB_BASE_URL") or "https://api.wandb.ai").hostname
    path = os.environ.get("NETRC") or str(Path.home() / ".netrc")
    try:
        return bool(os.path.isfile(path) and netrc.netrc(path).authenticators(host))
    except (netrc.NetrcParseError, OSError):
        return False


def check_tracker(report_to: str) -> None:
    """Refuse a tracker that cannot log here, naming the fix: its library missing, or W&B without a key (W&B's own
    offline or disabled modes need none)."""
    if report_to not in REPORT_TO:
        raise FrkitInputError(f"report_to {report_to!r}: expected one of {list(REPORT_TO)}")
    if report_to == "none":
        return
    if importlib.util.find_spec(report_to) is None:
        raise FrkitInputError(
            f"report_to: {report_to} needs the {report_to} package, which is not installed here: "
            f"{_INSTALL[report_to]}; {_INSTEAD}"
        )
    if report_to == "wandb" and os.environ.get("WANDB_MODE") not in ("offline", "disabled") and not _wandb_logged_in():
        raise FrkitInputError(
            "report_to: wandb needs a W&B API key and none is set here (WANDB_API_KEY is unset and "
            "no `wandb login` is recorded in ~/.netrc): run `wandb login` (or export "
            f"WANDB_API_KEY=<key>, or WANDB_MODE=offline to log without an account); {_INSTEAD}"
        )


class RunTracking:
    """One run's tracker: checked when made, opened once the run folder is written, closed on leaving the block."""

    def __init__(self, report_to: str):
        check_tracker(report_to)
        self.report_to = report_to
        self.writer = None
        self.names: list[str] = []

    def __enter__(self) -> RunTracking:
        return self

    def open(self, run_dir: Path, run_name: str, params: dict, names: list[str]) -> None:
        """Start logging the run (``names``: its marketplaces in training order); ``report_to: none``: nothing."""
        from frkit.tracking.backends import WRITERS

        if self.report_to != "none":
            self.names = list(names)
            self.writer = WRITERS[self.report_to](run_dir, run_name, params)

    def step(self, k: int, marketplace: str, learn_log: dict, auc_row: list[float | None]) -> None:
        """The ``k``-th marketplace learned: its learning curve(s), learn log numbers and the AUC row after it."""
        if self.writer is not None:
            self.writer.write(learning_points(k, marketplace, learn_log) + auc_points(k, self.names, auc_row))

    def final(self, metrics: dict) -> None:
        if self.writer is not None:
            self.writer.final(final_points(metrics, max(0, len(self.names) - 1)))

    def __exit__(self, exc_type, exc, tb) -> None:
        if self.writer is not None:
            writer, self.writer = self.writer, None
            writer.close(finished=exc_type is None)
