"""Run tracking (``report_to``, frkit/tracking/): a tiny run's TensorBoard event files read back with TensorBoard's
own reader, ``report_to: none`` writes none, MLflow's runs read back with ``mlflow.search_runs``, and W&B without a
key (or not installed) fails before any data or model loads, naming the command that fixes it."""

from __future__ import annotations

import json

import pytest

from frkit.config import make_config
from frkit.errors import FrkitInputError
from frkit.runner import run
from frkit.tracking import check_tracker
from frkit.tracking.points import auc_points, learning_points

NAMES = ["en", "es", "ja"]


def _scalars(logdir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(logdir), size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    return acc, {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def test_a_tiny_run_writes_tensorboard_events_read_back_with_the_expected_tags_and_steps(tiny_params):
    cfg = make_config(tiny_params(method="sequential", epochs=2, patience=0, eval_every_steps=5))
    assert cfg.report_to == "tensorboard"  # the default
    result = run(cfg, show_progress=False)
    steps = json.loads((result.run_dir / "progress.json").read_text())["steps"]
    acc, scalars = _scalars(result.run_dir / "tensorboard")
    for s in steps:  # the learning curve of each marketplace: every eval_every_steps point, at its optimiser step
        m = s["marketplace"]
        assert [step for step, _ in scalars[f"train_loss/{m}"]] == [p["step"] for p in s["curve"]]
        assert [round(v, 5) for _, v in scalars[f"val_auc/{m}"]] == [round(p["val_auc"], 5) for p in s["curve"]]
        assert scalars["learn/best_val_auc"][s["step"]][1] == pytest.approx(s["best_val_auc"], abs=1e-6)
    for t, name in enumerate(NAMES):  # the AUC row after every marketplace: R[k, t] at step k
        assert scalars[f"auc/{name}"] == [(k, pytest.approx(steps[k]["auc_row"][t], abs=1e-6)) for k in range(3)]
    assert [step for step, _ in scalars["auc/mean_seen"]] == [0, 1, 2]
    metrics = json.loads((result.run_dir / "metrics.json").read_text())
    for key in ("average_auc", "forgetting", "backward_transfer", "forward_transfer"):
        assert scalars[f"final/{key}"] == [(2, pytest.approx(metrics[key], abs=1e-6))]
    assert scalars["final/auc/ja"] == [(2, pytest.approx(metrics["final_auc"]["ja"], abs=1e-6))]
    assert "params/text_summary" in acc.Tags()["tensors"]  # the params as a table in TensorBoard's text tab
    assert "_hparams_/session_start_info" in acc.PluginTagToContent("hparams")  # its HParams tab, with the metrics


def test_report_to_none_writes_no_events_and_changing_it_resumes_the_same_run(tiny_params):
    params = tiny_params(method="sequential", epochs=1, report_to="none")
    result = run(make_config(params), show_progress=False)
    assert not (result.run_dir / "tensorboard").exists() and not (result.run_dir / "mlflow").exists()
    # where a run is logged does not change what it computes: the finished folder is taken as it is
    again = run(make_config({**params, "report_to": "tensorboard"}), show_progress=False)
    assert again.metrics["average_auc"] == result.metrics["average_auc"]


def test_a_staged_method_logs_each_stage_apart():
    fit = {"history": [{"epoch": 1, "step": 4, "train_loss": 0.7, "val_auc": 0.6}], "curve": [], "steps": 4}
    points = learning_points(1, "es", {"stage1": fit, "stage2": {**fit, "eq4_penalty": 0.25}, **fit, "stage1_lr": 1e-4})
    tags = {tag for tag, _, _ in points}
    assert {"train_loss/es/stage1", "val_auc/es/stage2", "learn/stage2/eq4_penalty", "learn/stage1_lr"} <= tags
    assert "learn/steps" not in tags  # the top level's copy of the last stage is not logged twice
    assert auc_points(0, NAMES, [0.7, None, 0.5]) == [("auc/en", 0.7, 0), ("auc/ja", 0.5, 0), ("auc/mean_seen", 0.7, 0)]


def test_mlflow_runs_read_back_with_search_runs(tiny_params):
    mlflow = pytest.importorskip("mlflow", reason='MLflow is not installed: pip install -e ".[tracking]"')
    params = tiny_params(method="sequential", epochs=1, report_to="mlflow", run_name="s/seq/en-es-ja/seed0")
    result = run(make_config(params), show_progress=False)
    store = result.run_dir / "mlflow" / "mlflow.db"
    assert store.is_file()
    mlflow.set_tracking_uri(f"sqlite:///{store}")
    try:
        runs = mlflow.search_runs(experiment_names=["s"])  # the sweep's name is the experiment
    finally:
        mlflow.set_tracking_uri(None)
    assert len(runs) == 1
    row = runs.iloc[0]
    assert row["tags.mlflow.runName"] == "s/seq/en-es-ja/seed0" and row["status"] == "FINISHED"
    assert row["params.method"] == "sequential" and row["params.marketplaces"] == '["en", "es", "ja"]'
    assert row["metrics.final/average_auc"] == pytest.approx(result.metrics["average_auc"], abs=1e-9)
    assert row["metrics.auc/ja"] == pytest.approx(result.auc_matrix[2, 2], abs=1e-9)  # the last of each curve


def _no_wandb_key(monkeypatch, tmp_path):
    for var in ("WANDB_API_KEY", "WANDB_MODE", "WANDB_BASE_URL"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no.netrc"))


def _nothing_may_load(monkeypatch):
    """Loading data or a model fails the test: the refusal must come first."""
    import frkit.runner

    def loaded(*args, **kwargs):
        raise AssertionError("data or the model loaded before the tracker was checked")

    monkeypatch.setattr(frkit.runner, "load_configured_marketplaces", loaded)
    monkeypatch.setattr(frkit.runner, "load_encoder", loaded)


def test_wandb_without_a_key_fails_before_the_model_loads(tiny_params, tmp_path, monkeypatch):
    _no_wandb_key(monkeypatch, tmp_path)
    fake = tmp_path / "site" / "wandb"  # wandb "installed" (found by import), but nobody logged in
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError('the test only needs wandb to be found')\n")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    _nothing_may_load(monkeypatch)
    cfg = make_config(tiny_params(report_to="wandb"))
    with pytest.raises(FrkitInputError, match=r"wandb login.*report_to tensorboard"):
        run(cfg, show_progress=False)
    assert not cfg.run_dir.exists()  # a refused run leaves no folder behind
    (tmp_path / "good.netrc").write_text("machine api.wandb.ai\n  login user\n  password abc\n")
    monkeypatch.setenv("NETRC", str(tmp_path / "good.netrc"))
    check_tracker("wandb")  # `wandb login` recorded: accepted
    monkeypatch.setenv("NETRC", str(tmp_path / "no.netrc"))
    monkeypatch.setenv("WANDB_MODE", "offline")
    check_tracker("wandb")  # W&B's offline mode needs no key


def test_wandb_not_installed_says_how_to_install_it(tiny_params, tmp_path, monkeypatch):
    import importlib.util

    _no_wandb_key(monkeypatch, tmp_path)
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a))
    _nothing_may_load(monkeypatch)
    with pytest.raises(FrkitInputError, match=r"needs the wandb package.*pip install wandb.*report_to tensorboard"):
        run(make_config(tiny_params(report_to="wandb")), show_progress=False)


def test_wandb_offline_logs_into_the_run_folder(tiny_params, monkeypatch):
    """W&B's own offline mode (no account): the run's W&B files go into the run folder, under a run id fixed by it."""
    pytest.importorskip("wandb", reason="W&B is not installed: pip install wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    result = run(make_config(tiny_params(method="sequential", epochs=1, report_to="wandb")), show_progress=False)
    runs = list((result.run_dir / "wandb").glob("offline-run-*-frkit-*/run-frkit-*.wandb"))
    assert len(runs) == 1 and runs[0].stat().st_size > 0


def test_a_sweep_with_wandb_and_no_key_fails_before_any_run(tiny_params, tmp_path, monkeypatch, capsys):
    import yaml

    from frkit.sweep import run_sweep

    _no_wandb_key(monkeypatch, tmp_path)
    _nothing_may_load(monkeypatch)
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(tiny_params(report_to="wandb")))
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(
        yaml.safe_dump(
            {
                "base": "base.yaml",
                "name": "s",
                "results": str(tmp_path / "results"),
                "runs": {"seq": {"method": "sequential"}},
            }
        )
    )
    with pytest.raises(FrkitInputError, match="report_to: wandb"):
        run_sweep(sweep)
    assert not (tmp_path / "outputs" / "s").exists() and "to train" not in capsys.readouterr().out
