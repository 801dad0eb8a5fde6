"""Data-parallel training (frkit/distributed.py), run for real: two CPU processes (gloo) against one.

What must match, and how closely:
- the Fisher (Eq. 3) of a 2-process run equals the single-process Fisher over the same samples on the same weights
  (rtol 1e-5, fp32): each process sums its shard's per-sample squared gradients, the sums and counts are all-reduced;
- the AUC rows a 2-process run recorded equal what one process scores with the same weights (its checkpoint):
  evaluation is sharded and gathered, padding dropped;
- training: 2 processes x batch 8 take the same optimiser steps as 1 process x batch 16 when the global batches
  hold the same rows. That holds here by construction (``length_batching: false``, a train split of 32 rows: the
  seeded permutation is cut into batches of 8 and process r takes batches r, r + 2, ...). The trained weights then
  differ only by float summation order (the mean of two half-batch gradients against one full-batch gradient):
  checked to 1e-4 absolute, AUCs to 1e-3. In fp32 (``precision: fp32``): under bf16 autocast the half batches'
  matmuls round differently, and Adam turns those roundings into weight differences of up to the learning rate
  (6.7e-4 after one marketplace on an AMD EPYC with AVX512-BF16, against 7e-8 in fp32), which depend on the CPU's
  kernels and say nothing about the data-parallel math. Expected to differ more, and not checked: length-bucketed
  batches (the buckets depend on the per-process batch size), a train split that does not divide into whole global
  batches (the last round is padded with repeated batches), and dropout (each process draws its own masks).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import load_file

from frkit import distributed
from frkit.config import make_config
from frkit.methods import METHODS
from frkit.methods.base import MethodContext
from frkit.models.encoder import load_tokenizer
from frkit.records import RunFolder
from frkit.runner import load_configured_marketplaces, run
from frkit.train import roc_auc

REPO = Path(__file__).resolve().parents[1]
LAUNCH_TIMEOUT = 300


def launch(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """``torchrun --nproc_per_node 2`` (two CPU processes, gloo), one thread per process (this machine has few cores).

    Not ``accelerate launch --cpu --num_processes 2``: accelerate 1.15 starts ONE process for that unless it is given
    an MPI hostfile (``--mpirun_hostfile``); torchrun starts two and frkit makes them one gloo group."""
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
    }
    env.pop("ACCELERATE_USE_CPU", None)
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_port",
        str(free_port()),
        *args,
    ]
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=LAUNCH_TIMEOUT)
    assert done.returncode == 0, f"{' '.join(cmd)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-6000:]}"
    return done


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def ddp_params(tiny_params, **overrides) -> dict:
    """Two marketplaces of 32 train rows each (two global batches of 16), no dropout, plain (not length) batching,
    fp32 (module doc)."""
    return tiny_params(
        marketplaces=["en", "es"],
        max_train=32,
        length_batching=False,
        batch_size=8,
        eval_batch_size=8,
        epochs=2,
        patience=1,
        lora_dropout=0.0,
        precision="fp32",
        **overrides,
    )


def write_params(tmp_path: Path, params: dict) -> Path:
    path = tmp_path / "ddp.yaml"
    path.write_text(yaml.safe_dump(params))
    return path


def reload(run_dir: Path, step: int):
    """(method, marketplaces) with the method loaded from the checkpoint of ``step``, in this (one) process."""
    folder = RunFolder(run_dir)
    cfg = make_config(folder.params())
    marketplaces = load_configured_marketplaces(cfg)
    ctx = MethodContext(cfg, Path(cfg.model_name_or_path), load_tokenizer(cfg.model_name_or_path), show_progress=False)
    method = METHODS[cfg.method](cfg, ctx)
    method.load(folder.checkpoint_dir(step, marketplaces[step].name))
    return method, marketplaces


# -- the helpers in one process ------------------------------------------------------------------------------------


def test_sharded_batches_cover_every_row_once_in_evaluation_and_pad_training():
    batches = [[0, 1], [2, 3], [4, 5], [6, 7], [8]]
    evaluation = [list(distributed.ShardedBatches(batches, r, 2, pad=False)) for r in range(2)]
    assert evaluation == [[[0, 1], [4, 5], [8]], [[2, 3], [6, 7]]]
    assert sorted(i for shard in evaluation for b in shard for i in b) == list(range(9))
    training = [distributed.ShardedBatches(batches, r, 2, pad=True) for r in range(2)]
    assert [len(s) for s in training] == [3, 3]  # the same number of steps on every process
    assert [list(s) for s in training] == [[[0, 1], [4, 5], [8]], [[2, 3], [6, 7], [0, 1]]]  # padded with the first


def test_helpers_leave_a_single_process_alone():
    assert distributed.world_size() == 1 and distributed.is_main()
    p = torch.nn.Parameter(torch.ones(3))
    p.grad = torch.full((3,), 2.0)
    distributed.average_gradients([p])
    assert torch.equal(p.grad, torch.full((3,), 2.0))
    t = {"a": torch.ones(2)}
    assert torch.equal(distributed.all_reduce_sum(t)["a"], torch.ones(2))
    distributed.agree("parameters", {"lr": 1})  # nothing to compare with
    distributed.barrier()


# -- two processes against one ----------------------------------------------------------------------------------------


def test_two_process_ewc_run_matches_one_process(tiny_params, tmp_path):
    """The issue's command on tiny data: same Fisher, same scores for the same weights, same training (module doc)."""
    params = ddp_params(tiny_params, method="ewc", run_name="ddp")
    launch("--module", "frkit", "run", str(write_params(tmp_path, params)), cwd=REPO)
    ddp_dir = Path(params["output_dir"]) / "ddp"
    progress = json.loads((ddp_dir / "progress.json").read_text())
    assert [s["processes"] for s in progress["steps"]] == [2, 2]
    env = json.loads((ddp_dir / "environment.json").read_text())
    assert len(env["sessions"]) == 1  # written by the main process alone
    assert not list(Path(params["output_dir"]).glob("ddp.old-*"))  # no second process set the folder aside

    # one process, global batch 16 = the two processes' 8 + 8
    single = run(
        make_config({**params, "run_name": "single", "batch_size": 16, "eval_batch_size": 16}), show_progress=False
    )
    R_ddp = np.array([s["auc_row"] for s in progress["steps"]], dtype=float)

    for step in range(2):
        method, marketplaces = reload(ddp_dir, step)
        m = marketplaces[step]
        assert len(m.train) == 32  # two whole global batches of 16 (module doc)
        # Eq. 3: the 2-process Fisher (sharded, all-reduced) against this process's over the same samples and weights
        saved = RunFolder(ddp_dir).load_artifact(step, m.name, "fisher_qkv")
        here = method.compute_fisher(m, m.name)
        assert set(saved) and set(saved) <= set(here)
        for key, value in saved.items():
            torch.testing.assert_close(value, here[key], rtol=1e-5, atol=1e-12, msg=f"Fisher {key} after {m.name}")
        # the AUC row the 2-process run recorded, scored again here with its weights
        for t, other in enumerate(marketplaces):
            again = roc_auc(other.test["label"], method.predict(other.test, other.name))
            assert again == pytest.approx(R_ddp[step, t], abs=1e-9), (step, other.name)
        # training: the same optimiser steps (module doc), up to float summation order
        a = load_file(str(RunFolder(ddp_dir).checkpoint_dir(step, m.name) / "model.safetensors"))
        b = load_file(str(RunFolder(single.run_dir).checkpoint_dir(step, m.name) / "model.safetensors"))
        assert set(a) == set(b)
        diffs = torch.cat([(a[k] - b[k]).abs().reshape(-1) for k in a])
        print(
            f"after {m.name}: max weight difference {float(diffs.max()):.3g}, "
            f"{int((diffs > 1e-5).sum())} of {diffs.numel()} above 1e-5"
        )
        assert float(diffs.max()) < 1e-4, f"weights after {m.name} differ by {float(diffs.max())}"
        single_fisher = RunFolder(single.run_dir).load_artifact(step, m.name, "fisher_qkv")
        for key in saved:
            torch.testing.assert_close(saved[key], single_fisher[key], rtol=1e-3, atol=1e-9)
    np.testing.assert_allclose(R_ddp, single.auc_matrix, atol=1e-3)
    metrics = json.loads((ddp_dir / "metrics.json").read_text())
    np.testing.assert_array_equal(np.array(metrics["auc_matrix"], dtype=float), R_ddp)


def test_two_process_launch_runs_each_method_resumes_and_refuses_disagreeing_processes(tiny_params, tmp_path):
    methods = ["sequential", "lora", "fr_lora", "attention_distillation"]
    params = ddp_params(tiny_params)
    report_file = tmp_path / "report.json"
    launch(
        str(REPO / "tests" / "ddp_probe.py"),
        str(write_params(tmp_path, params)),
        str(report_file),
        "fr_lora",
        *methods,
        cwd=REPO,
    )
    report = json.loads(report_file.read_text())
    assert report["world_size"] == 2
    for method in methods:
        R = np.array(report["runs"][method]["auc_matrix"], dtype=float)
        run_dir = Path(report["runs"][method]["run_dir"])
        assert R.shape == (2, 2) and np.isfinite(R).all(), method
        steps = json.loads((run_dir / "progress.json").read_text())["steps"]
        assert [s["processes"] for s in steps] == [2, 2], method
        assert (run_dir / "metrics.json").exists()
        # the same training in one process with the global batch (module doc)
        single = run(
            make_config(
                {**params, "method": method, "run_name": f"single_{method}", "batch_size": 16, "eval_batch_size": 16}
            ),
            show_progress=False,
        )
        np.testing.assert_allclose(R, single.auc_matrix, atol=1e-3, err_msg=method)

    # resumed from its first marketplace's checkpoint, the 2-process run ends as the uninterrupted one did
    resume = report["resume"]
    np.testing.assert_allclose(resume["resumed"], resume["uninterrupted"], atol=1e-6)
    env = json.loads((Path(resume["run_dir"]) / "environment.json").read_text())
    assert len(env["sessions"]) == 2 and env["sessions"][1]["steps_done_before"] == 1  # the main process's record

    # processes that disagree on a parameter: both stop before anything is written, the differing one names lr
    messages = report["disagree_all"]
    assert all(messages), messages
    assert "lr: 0.001 on the main process, 0.002 here" in messages[1]
    assert not (Path(params["output_dir"]) / "disagree").exists()
