"""A run stopped during marketplace k resumes from k and ends with the same metrics as an uninterrupted run."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

import frkit.methods.base as base
from frkit.config import make_config
from frkit.runner import run


class Stop(KeyboardInterrupt):
    pass


@pytest.mark.parametrize(
    "method",
    [
        "sequential",
        "lora",
        "replay",
        "magmax",
        "opcm",
        "o_lora",
        "hat",
        "dytox",
        "b_cl",
        "ctr",
        "lora_stacking",
        "lora_merge_svd",
        "lora_merge_linear",
        "prefix",
        "progressive_prefix",
    ],
)
def test_stop_in_the_middle_of_a_marketplace_then_resume(method, tiny_params, monkeypatch):
    reference = run(make_config(tiny_params(method=method, run_name="ref")), show_progress=False)

    real_fit = base.fit
    calls = {"n": 0}

    def fit_that_stops(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:  # marketplace 1 (es): stop after two optimiser steps, as Ctrl-C would
            inner = kwargs.get("on_step")  # a method's own per-step hook (HAT) keeps running

            def on_step(step, loss):
                if inner is not None:
                    inner(step, loss)
                if step == 2:
                    raise Stop()

            kwargs["on_step"] = on_step
        return real_fit(*args, **kwargs)

    # every method trains through Method.train (frkit/methods/base.py), mixed memory batches too: no method file
    # calls the loop itself
    assert not [
        n
        for n, m in list(sys.modules.items())
        if n.startswith("frkit.methods.") and m is not base and getattr(m, "fit", None) is real_fit
    ]
    monkeypatch.setattr(base, "fit", fit_that_stops)
    cfg = make_config(tiny_params(method=method, run_name="stopped"))
    with pytest.raises(Stop):
        run(cfg, show_progress=False)
    progress = json.loads((cfg.run_dir / "progress.json").read_text())
    assert [s["marketplace"] for s in progress["steps"]] == ["en"]  # en intact, es not recorded
    assert not (cfg.run_dir / "metrics.json").exists()

    monkeypatch.setattr(base, "fit", real_fit)
    resumed = run(cfg, show_progress=False)
    np.testing.assert_allclose(resumed.auc_matrix, reference.auc_matrix, rtol=0, atol=1e-6)
    assert resumed.metrics["average_auc"] == pytest.approx(reference.metrics["average_auc"], abs=1e-6)


@pytest.mark.parametrize("method", ["sequential", "fr_lora", "attention_distillation"])
def test_killed_process_resumes_to_the_same_bytes(method, tiny_params, tmp_path):
    """SIGKILL a real ``frkit run`` in the middle of the second marketplace (after its first epoch), resume it:
    metrics.json is byte for byte the one of an unbroken run."""
    params = tiny_params(method=method, run_name="killed", epochs=3, patience=0, max_steps_per_epoch=3)
    run(make_config({**params, "run_name": "unkilled"}), show_progress=False)
    pfile = tmp_path / "p.yaml"
    pfile.write_text(yaml.safe_dump(params))
    repo = Path(__file__).resolve().parents[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "frkit", "run", str(pfile)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        cwd=repo,
        env={**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(repo)},
    )
    mid = f"{method}:es epoch 1/3:"  # the loop's log line after the first epoch of es
    seen = []
    try:
        for line in proc.stderr:  # read until the mark: the process is then inside es, en finished
            seen.append(line)
            if mid in line:
                proc.send_signal(signal.SIGKILL)
                break
    finally:
        proc.kill()
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL and any(mid in line for line in seen), "".join(seen)[-2000:]
    run_dir = tmp_path / "outputs" / "killed"
    progress = json.loads((run_dir / "progress.json").read_text())
    assert [s["marketplace"] for s in progress["steps"]] == ["en"]  # killed mid-es
    run(make_config(params), show_progress=False)
    assert (run_dir / "metrics.json").read_bytes() == (tmp_path / "outputs" / "unkilled" / "metrics.json").read_bytes()


def test_changed_parameters_refuse_to_resume(tiny_params):
    from frkit.errors import FrkitInputError

    run(make_config(tiny_params(method="independent", run_name="r", marketplaces=["en", "es"])), show_progress=False)
    with pytest.raises(FrkitInputError, match=r"other parameters.*lr"):
        run(
            make_config(tiny_params(method="independent", run_name="r", marketplaces=["en", "es"], lr=0.5)),
            show_progress=False,
        )


def test_a_key_added_since_the_run_started_resumes_at_its_default(tiny_params):
    """A run folder from an older frkit lacks newer keys: their defaults keep the old behaviour, so it resumes."""
    import yaml

    from frkit.errors import FrkitInputError

    cfg = make_config(tiny_params(method="independent", run_name="r", marketplaces=["en", "es"]))
    run(cfg, show_progress=False)
    saved = cfg.run_dir / "params.yaml"
    old = yaml.safe_load(saved.read_text())
    del old["weight_decay"]  # as if weight_decay had not existed when this run started
    saved.write_text(yaml.safe_dump(old, sort_keys=False))
    assert run(cfg, show_progress=False).metrics["average_auc"] > 0  # resumed: default value
    with pytest.raises(FrkitInputError, match=r"other parameters \(weight_decay: 0\.01 -> 0\.5\)"):
        run(
            make_config(tiny_params(method="independent", run_name="r", marketplaces=["en", "es"], weight_decay=0.5)),
            show_progress=False,
        )
