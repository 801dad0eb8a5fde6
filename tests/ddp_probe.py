"""Launched by tests/test_distributed.py as ``accelerate launch --cpu --num_processes 2 tests/ddp_probe.py ...``.

In one process group (one launch, so the test pays the start-up once): ``frkit run`` for each method given, then a
run stopped after its first marketplace and resumed, then a run whose processes disagree on a parameter. The main
process writes what it saw to ``report.json`` for the test to check; every run folder is the runner's own.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from frkit import atomic, distributed
from frkit.config import load_params
from frkit.errors import FrkitInputError
from frkit.records import RunFolder
from frkit.runner import run


def main(params_file: str, out: str, resume_method: str, *methods: str) -> None:
    report = {"runs": {}}
    for method in methods:
        result = run(load_params(params_file, method=method, run_name=method), show_progress=False)
        report["runs"][method] = {"run_dir": str(result.run_dir), "auc_matrix": result.auc_matrix.tolist()}

    # a run stopped after its first marketplace (its progress cut back, as a stop during the second leaves it) resumes
    first = run(load_params(params_file, method=resume_method, run_name="resumed"), show_progress=False)
    if distributed.is_main():
        folder = RunFolder(first.run_dir)
        folder.keep_steps(1)
        (first.run_dir / "metrics.json").unlink()
    distributed.barrier()
    again = run(load_params(params_file, method=resume_method, run_name="resumed"), show_progress=False)
    report["resume"] = {
        "uninterrupted": first.auc_matrix.tolist(),
        "resumed": again.auc_matrix.tolist(),
        "run_dir": str(again.run_dir),
    }

    # the processes disagree on lr: every process stops, naming the key
    lr = 1e-3 if distributed.is_main() else 2e-3
    try:
        run(load_params(params_file, method="sequential", run_name="disagree", lr=lr), show_progress=False)
        report["disagree"] = None
    except FrkitInputError as err:
        report["disagree"] = str(err)
    messages = [None] * distributed.world_size()
    import torch.distributed as dist

    dist.all_gather_object(messages, report["disagree"])
    report["disagree_all"] = messages
    report["world_size"] = distributed.world_size()
    if distributed.is_main():
        atomic.write_json(Path(out), report)
    distributed.barrier()


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main(*sys.argv[1:])
