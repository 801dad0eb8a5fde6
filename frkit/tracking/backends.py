"""Where a run's points go: TensorBoard event files, an MLflow store, or W&B, each through its own library.

Each writer takes ``(tag, value, step)`` points (``frkit/tracking/points.py``), the run's params once, and is closed
once with whether the run finished. The libraries load only when a run logs to them (``report_to``).
"""

from __future__ import annotations

import json
import os
import time
import zlib
from pathlib import Path

from frkit.tracking.points import Point


def _flat_value(value) -> str | int | float | bool:
    """A param as the trackers take it: numbers, strings and bools as they are, anything else as JSON text."""
    if isinstance(value, (str, int, float, bool)):
        return value
    return json.dumps(value, sort_keys=True)


class TensorBoardWriter:
    """Event files in ``<run folder>/tensorboard/`` (``tensorboard --logdir outputs``: a sweep's runs side by side,
    named by their folders ``<sweep>/<label>/<order>/seed<k>``). The params go in as text at the start and, with
    the final metrics, as TensorBoard's HParams (its table compares the runs of a sweep)."""

    def __init__(self, run_dir: Path, run_name: str, params: dict):
        from torch.utils.tensorboard import SummaryWriter  # the tensorboard package (a dependency of frkit)

        self.logdir = Path(run_dir) / "tensorboard"
        self.writer = SummaryWriter(log_dir=str(self.logdir))
        self.params = {k: _flat_value(v) for k, v in params.items()}
        lines = "\n".join(f"| {k} | `{v}` |" for k, v in sorted(self.params.items()))
        self.writer.add_text("params", f"run **{run_name}**\n\n| key | value |\n|---|---|\n{lines}", 0)

    def write(self, points: list[Point]) -> None:
        for tag, value, step in points:
            self.writer.add_scalar(tag, value, step)
        self.writer.flush()  # a marketplace's points show up in a running TensorBoard now, not when the run ends

    def final(self, points: list[Point]) -> None:
        # run_name ".": the HParams summary goes into this run's own folder, not a subfolder named by the time
        self.writer.add_hparams(
            self.params,
            {tag: value for tag, value, _ in points},
            run_name=".",
            global_step=points[0][2] if points else None,
        )

    def close(self, finished: bool) -> None:
        self.writer.close()


class MlflowWriter:
    """One MLflow run in the experiment named after the sweep (the run_name's first part), named ``run_name``.

    The store: ``MLFLOW_TRACKING_URI`` where set (a server, or one database for a whole sweep), else a SQLite file
    inside the run folder (``<run folder>/mlflow/mlflow.db``, no server; ``mlflow ui --backend-store-uri
    sqlite:///<that file>``). Not MLflow's ``file:`` store: MLflow 3 refuses it as unmaintained. A resumed run
    continues the MLflow run of the same name."""

    def __init__(self, run_dir: Path, run_name: str, params: dict):
        from mlflow.entities import Param, RunStatus
        from mlflow.tracking import MlflowClient

        self._status = RunStatus
        folder = Path(run_dir).resolve() / "mlflow"
        uri = os.environ.get("MLFLOW_TRACKING_URI")
        if not uri:
            folder.mkdir(parents=True, exist_ok=True)
            uri = f"sqlite:///{folder / 'mlflow.db'}"
        self.tracking_uri = uri
        self.client = MlflowClient(tracking_uri=uri)
        experiment_name = run_name.split("/", 1)[0]
        experiment = self.client.get_experiment_by_name(experiment_name)
        experiment_id = (
            experiment.experiment_id
            if experiment
            else self.client.create_experiment(
                experiment_name,
                artifact_location=None if os.environ.get("MLFLOW_TRACKING_URI") else (folder / "artifacts").as_uri(),
            )
        )
        earlier = self.client.search_runs(
            [experiment_id], filter_string=f"tags.`mlflow.runName` = '{run_name}'", max_results=1
        )
        if earlier:  # a resumed run goes on in the MLflow run its first session made
            self.run_id = earlier[0].info.run_id
            self.client.update_run(self.run_id, status="RUNNING")
        else:
            self.run_id = self.client.create_run(experiment_id, run_name=run_name).info.run_id
            # MLflow keeps a param's first value: logged once, by the session that made the run
            self.client.log_batch(
                self.run_id, params=[Param(k, str(_flat_value(v))[:6000]) for k, v in sorted(params.items())]
            )

    def write(self, points: list[Point]) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [Metric(tag, value, now, step) for tag, value, step in points]
        for start in range(0, len(metrics), 1000):  # MLflow takes at most 1000 metrics per batch
            self.client.log_batch(self.run_id, metrics=metrics[start : start + 1000])

    def final(self, points: list[Point]) -> None:
        self.write(points)

    def close(self, finished: bool) -> None:
        status = self._status.FINISHED if finished else self._status.FAILED
        self.client.set_terminated(self.run_id, self._status.to_string(status))


class WandbWriter:
    """A W&B run in the project named after the sweep (the run_name's first part), named ``run_name``, its files in
    ``<run folder>/wandb/``. Its id is fixed by the run folder's path, so a resumed run continues the same W&B run.
    Each tag is drawn against its own step (``<tag>/step``): the learning curves of the marketplaces each start at 1."""

    def __init__(self, run_dir: Path, run_name: str, params: dict):
        import wandb

        run_id = f"frkit-{zlib.crc32(str(Path(run_dir).resolve()).encode()):08x}"
        (Path(run_dir) / "wandb").mkdir(parents=True, exist_ok=True)
        self.run = wandb.init(
            project=run_name.split("/", 1)[0],
            name=run_name,
            id=run_id,
            resume="allow",
            dir=str(run_dir),
            config={k: _flat_value(v) for k, v in params.items()},
        )
        self.defined: set[str] = set()

    def write(self, points: list[Point]) -> None:
        for tag, value, step in points:
            if tag not in self.defined:
                self.run.define_metric(f"{tag}/step", hidden=True)
                self.run.define_metric(tag, step_metric=f"{tag}/step")
                self.defined.add(tag)
            self.run.log({tag: value, f"{tag}/step": step})

    def final(self, points: list[Point]) -> None:
        self.run.summary.update({tag: value for tag, value, _ in points})

    def close(self, finished: bool) -> None:
        self.run.finish(exit_code=0 if finished else 1)


WRITERS = {"tensorboard": TensorBoardWriter, "mlflow": MlflowWriter, "wandb": WandbWriter}
