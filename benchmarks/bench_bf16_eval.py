"""Issue 30, item 4: may a sweep evaluate in bf16? Scores a finished run's final model on every test set in fp32 and
under bf16 autocast, and prints each AUC, the largest |AUC difference| (the issue's bar: 1e-3) and the time each
precision took, on this CPU.

    python benchmarks/bench_bf16_eval.py outputs/probe_mixed/sequential/stsb_en-pawsx_es-stsb_ja/seed0 \\
        --json results/benchmarks/bf16_eval.json

On a CPU without fast bf16 (no AVX512-BF16 / AMX) bf16 is emulated: the AUCs still compare, the times do not.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import torch

from frkit import atomic
from frkit.precision import bf16_support, cpu_model
from frkit.reload import load_method
from frkit.train import predict_scores, roc_auc


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", help="a finished run folder (with its checkpoints), e.g. outputs/<sweep>/...")
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args()
    cfg, method, marketplaces = load_method(args.run_dir)
    fast, why = bf16_support(torch.device("cpu"))
    print(f"{cpu_model()}; bf16: {why}; threads {torch.get_num_threads()}")
    rows, seconds = [], {"fp32": 0.0, "bf16": 0.0}
    for m in marketplaces:
        model, head = method.model_for(method.scoring_name(m.name))
        loader = method.ctx.loader(m.test, train=False)
        auc = {}
        for precision in ("fp32", "bf16"):
            started = time.perf_counter()
            auc[precision] = roc_auc(m.test["label"], predict_scores(model, loader, head, precision))
            seconds[precision] += time.perf_counter() - started
        rows.append({"marketplace": m.name, "pairs": len(m.test), **auc, "difference": auc["bf16"] - auc["fp32"]})
        print(f"{m.name:<12} {len(m.test):>6} pairs  fp32 {auc['fp32']:.5f}  bf16 {auc['bf16']:.5f}")
    worst = max(abs(r["difference"]) for r in rows)
    times = f"fp32 {seconds['fp32']:.1f} s, bf16 {seconds['bf16']:.1f} s"
    print(f"largest |AUC difference| {worst:.2e} (bar: 1e-3); {times}")
    if args.json:
        result = {
            "run": str(args.run_dir),
            "cpu": cpu_model(),
            "bf16_fast": fast,
            "threads": torch.get_num_threads(),
            "load_average_after": os.getloadavg(),  # the times count only on an otherwise idle machine
            "rows": rows,
            "largest_abs_auc_difference": worst,
            "seconds": seconds,
        }
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        atomic.write_json(Path(args.json), result, indent=2)


if __name__ == "__main__":
    main()
