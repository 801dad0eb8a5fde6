"""``frkit sweep --executor ray``: a two-run sweep on a local Ray instance, one task's worker killed once, against the
local executor's results; and the refusals (no Ray, no cluster) before any run starts."""

from __future__ import annotations

import json
import os
import socket
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import kill_a_run_once

from frkit.errors import FrkitInputError
from frkit.reports.summary import summarize_sweep
from frkit.sweep import run_sweep

REPO = Path(__file__).resolve().parents[1]
TIMING = ("wall", "cpu", "seconds", "started")  # columns that measure time (or when), not results


def write_sweep(tmp_path: Path, tiny_params, name: str) -> Path:
    base = tiny_params(marketplaces=["en", "es"], epochs=1, lora_dropout=0.0)
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(base))
    sweep = {
        "base": "base.yaml",
        "name": name,
        "seeds": [0],
        "baseline": "sequential",
        "results": str(tmp_path / "results" / name),
        "resources": {"num_cpus": 1, "num_gpus": 0},
        "runs": {"sequential": {"method": "sequential"}, "lora": {"method": "lora"}},
    }
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(sweep))
    return path


def results_without_timing(folder: Path) -> dict:
    out = {}
    for name in ("summary.csv", "runs.csv"):
        frame = pd.read_csv(folder / name)
        out[name] = frame[[c for c in frame.columns if not any(t in c.lower() for t in TIMING)]]
    return out


def test_ray_executor_refuses_before_any_run_when_ray_is_missing(tmp_path, tiny_params, monkeypatch):
    path = write_sweep(tmp_path, tiny_params, "noray")
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray fails as it does where Ray is not installed
    with pytest.raises(FrkitInputError, match=r'pip install -e "\.\[cluster\]"'):
        run_sweep(path, executor="ray")
    assert not (tmp_path / "outputs").exists() and not (tmp_path / "results").exists()


def test_ray_executor_refuses_before_any_run_when_no_cluster_is_there(tmp_path, tiny_params):
    ray = pytest.importorskip("ray")
    if ray.is_initialized():
        ray.shutdown()
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    path = write_sweep(tmp_path, tiny_params, "nocluster")
    with pytest.raises(FrkitInputError, match=rf"no Ray cluster at 127\.0\.0\.1:{port}.*ray start --head"):
        run_sweep(path, executor="ray", address=f"127.0.0.1:{port}")
    assert not (tmp_path / "outputs").exists() and not (tmp_path / "results").exists()
    with pytest.raises(FrkitInputError, match="--address .* only with --executor ray"):
        run_sweep(path, address="auto")


@pytest.mark.timeout(1800)  # a Ray worker imports torch afresh: minutes on a loaded 2-core machine, twice (the retry)
def test_ray_sweep_survives_a_killed_worker_and_matches_the_local_executor(tmp_path, tiny_params, monkeypatch, capsys):
    ray = pytest.importorskip("ray")
    local = summarize_sweep(run_sweep(write_sweep(tmp_path, tiny_params, "local")))
    assert len(local.runs) == 2

    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    outputs = Path(tiny_params()["output_dir"]) / "onray"
    # SIGKILL the worker of the first run seen to finish a marketplace, once
    with kill_a_run_once(
        outputs, "*/*/seed0/progress.json", lambda steps: steps == 1, timeout=1500, poll=0.05
    ) as killed:
        try:
            on_ray = summarize_sweep(run_sweep(write_sweep(tmp_path, tiny_params, "onray"), executor="ray"))
        finally:
            ray.shutdown()
    printed = capsys.readouterr().out
    assert killed, "no worker was killed: the runs finished before the killer saw a finished marketplace"
    assert len(on_ray.runs) == 2  # both runs finished, the killed one after its retry
    # the killed run was retried and resumed from its finished marketplace: a second session, one step done before
    env = json.loads((killed["run_dir"] / "environment.json").read_text())
    assert len(env["sessions"]) == 2 and env["sessions"][1]["steps_done_before"] == 1, env["sessions"]
    assert "submitted to Ray (1 CPU, 0 GPU)" in printed and "en learned" in printed  # progress was streamed

    # the same folders and summaries as the local executor, up to the time it took
    assert sorted(
        p.relative_to(tmp_path / "results" / "onray").as_posix()
        for p in (tmp_path / "results" / "onray").rglob("*")
        if p.is_file()
    ) == sorted(
        p.relative_to(tmp_path / "results" / "local").as_posix()
        for p in (tmp_path / "results" / "local").rglob("*")
        if p.is_file()
    )
    a, b = (
        results_without_timing(tmp_path / "results" / "local"),
        results_without_timing(tmp_path / "results" / "onray"),
    )
    for name in a:
        pd.testing.assert_frame_equal(a[name], b[name], check_exact=False, rtol=1e-9)
    for label in ("sequential", "lora"):
        m_local = json.loads((tmp_path / "results" / "local" / label / "en-es" / "seed0" / "metrics.json").read_text())
        m_ray = json.loads((tmp_path / "results" / "onray" / label / "en-es" / "seed0" / "metrics.json").read_text())
        assert m_local["auc_matrix"] == m_ray["auc_matrix"], label
