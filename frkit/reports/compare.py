"""A sweep's results folder as the papers' tables: mean ± sample std over seeds x orders, relative to a baseline.

Reads only what ``frkit sweep`` copies into ``results/<sweep>/<label>/<order>/seed<k>/`` (params, environment,
metrics, AUC matrix, progress), so every figure can be rebuilt from committed files. A run that is missing or
half-written (no readable ``metrics.json``) is listed as missing and left out of the means; a row says how
many of its runs it averages (``runs``), so nothing is averaged silently.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

METRICS = ("average_auc", "forgetting", "backward_transfer", "forward_transfer")


@dataclass
class SweepResults:
    """Every run of a sweep that has results (``runs``), and the ones that do not (``missing``: key -> why)."""

    sweep: object
    runs: dict = field(default_factory=dict)  # RunKey -> flat record (metrics, finals, seconds, params)
    missing: dict = field(default_factory=dict)  # RunKey -> reason

    def frame(self) -> pd.DataFrame:
        """One row per finished run."""
        return pd.DataFrame([{"label": k.label, "order": k.order_tag, "seed": k.seed, **v} for k, v in self.runs.items()])

    def labels(self) -> list[str]:
        return [label for label in self.sweep.labels if any(k.label == label for k in self.sweep.configs)]


def read_run(folder: Path) -> dict | None:
    """The flat record of a finished run in a results folder, or None when it is missing or half-written."""
    try:
        metrics = json.loads((folder / "metrics.json").read_text())
        progress = json.loads((folder / "progress.json").read_text())
    except (OSError, ValueError):
        return None
    steps = progress.get("steps", [])
    record = {m: _num(metrics.get(m)) for m in METRICS}
    record.update({f"final {n}": _num(v) for n, v in metrics.get("final_auc", {}).items()})
    trainable = list(metrics.get("trainable_params", {}).values())
    record["trainable_params"] = trainable[-1] if trainable else np.nan
    record["wall_seconds"] = sum(s.get("learn_seconds", 0) + s.get("eval_seconds", 0) for s in steps) + \
        progress.get("init_seconds", 0.0)
    record["cpu_seconds"] = sum(s.get("cpu_seconds", np.nan) for s in steps) + progress.get("init_cpu_seconds", 0.0)
    return record


def _num(x) -> float:
    return np.nan if x is None else float(x)


def collect(sweep) -> SweepResults:
    out = SweepResults(sweep)
    for key in sweep.configs:
        folder = sweep.result_folder(key)
        record = read_run(folder)
        if record is None:
            out.missing[key] = "half-written (no readable metrics.json / progress.json)" if folder.exists() else "not run"
        else:
            out.runs[key] = record
    return out


def mean_std(values) -> tuple[float, float, int]:
    """Mean, sample standard deviation (ddof 1; NaN for one value) and count of the finite values."""
    v = np.asarray([x for x in values if x is not None and np.isfinite(x)], dtype=float)
    if len(v) == 0:
        return np.nan, np.nan, 0
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else np.nan, len(v)


def fmt(mean: float, std: float, digits: int = 4) -> str:
    if not np.isfinite(mean):
        return "–"
    return f"{mean:.{digits}f}" if not np.isfinite(std) else f"{mean:.{digits}f} ± {std:.{digits}f}"


def summary_frame(results: SweepResults) -> pd.DataFrame:
    """Numeric summary, one row per label: runs found / expected, mean and std of every metric and final AUC."""
    sweep = results.sweep
    names = list(sweep.orders[0]) if sweep.orders else []
    rows = []
    for label in results.labels():
        keys = sweep.keys(label)
        recs = [results.runs[k] for k in keys if k in results.runs]
        row = {"run": label, "runs": len(recs), "expected": len(keys)}
        for m in METRICS + tuple(f"final {n}" for n in sorted(names)):
            row[f"{m} mean"], row[f"{m} std"], _ = mean_std(r.get(m, np.nan) for r in recs)
        for m in ("trainable_params", "wall_seconds", "cpu_seconds"):
            row[m] = mean_std(r[m] for r in recs)[0]
        rows.append(row)
    return pd.DataFrame(rows).set_index("run") if rows else pd.DataFrame()


def relative_frame(results: SweepResults, baseline: str | None = None) -> pd.DataFrame:
    """FR-LoRA Tables 1-2's form: final ROC-AUC minus the baseline's ("1x"), per marketplace and on average.

    Differences are paired (same seed and order as the baseline run) before the mean and sample std are taken.
    """
    sweep = results.sweep
    baseline = baseline or sweep.baseline
    names = sorted(sweep.orders[0])
    base = {(k.order, k.seed): r for k, r in results.runs.items() if k.label == baseline}
    rows = []
    for label in results.labels():
        if label == baseline:
            continue
        pairs = [(r, base[(k.order, k.seed)]) for k, r in results.runs.items()
                 if k.label == label and (k.order, k.seed) in base]
        row = {"run": label, "pairs": len(pairs)}
        for n in names + ["average"]:
            col = "average_auc" if n == "average" else f"final {n}"
            row[f"{n} diff mean"], row[f"{n} diff std"], _ = mean_std(a[col] - b[col] for a, b in pairs)
        rows.append(row)
    return pd.DataFrame(rows).set_index("run") if rows else pd.DataFrame()


def summary_markdown(results: SweepResults) -> str:
    sweep = results.sweep
    summary = summary_frame(results)
    names = sorted(sweep.orders[0])
    lines = [f"# Sweep `{sweep.name}`", "",
             f"Base params: `{sweep.base.name}`; seeds {sweep.seeds}; default order{'s' if len(sweep.orders) > 1 else ''} "
             + ", ".join(" → ".join(o) for o in sweep.orders) + ". Mean ± sample std (ddof 1) over the seeds x orders a "
             "row has (`runs` of `expected`); forgetting as FR-LoRA §5.6.3 (≤ 0, closer to 0 = less forgetting).", ""]
    if summary.empty:
        return "\n".join(lines + ["No finished runs yet."]) + "\n"
    table = pd.DataFrame({
        "runs": [f"{int(r['runs'])}/{int(r['expected'])}" for _, r in summary.iterrows()],
        **{m.replace("_", " "): [fmt(r[f'{m} mean'], r[f'{m} std']) for _, r in summary.iterrows()] for m in METRICS},
        **{f"final {n}": [fmt(r[f'final {n} mean'], r[f'final {n} std']) for _, r in summary.iterrows()] for n in names},
        "trainable": [_millions(r["trainable_params"]) for _, r in summary.iterrows()],
        "wall s/run": [f"{r['wall_seconds']:.0f}" if np.isfinite(r["wall_seconds"]) else "–" for _, r in summary.iterrows()],
    }, index=summary.index)
    lines += ["## Summary", "", table.to_markdown(disable_numparse=True), ""]
    relative = relative_frame(results)
    if not relative.empty:
        rel = pd.DataFrame({n: [fmt(r[f"{n} diff mean"], r[f"{n} diff std"], 4) for _, r in relative.iterrows()]
                            for n in names + ["average"]}, index=relative.index)
        rel.insert(0, "pairs", relative["pairs"].astype(int))
        lines += [f"## Relative to {sweep.baseline} (= 1x): final ROC-AUC minus the baseline's, paired by seed and order", "",
                  rel.to_markdown(disable_numparse=True), ""]
    if results.missing:
        lines += [f"## Missing runs ({len(results.missing)} of {len(sweep.configs)}), left out of every mean above", ""]
        lines += [f"- {k}: {why}" for k, why in results.missing.items()]
        lines.append("")
    return "\n".join(lines)


def _millions(n: float) -> str:
    if not np.isfinite(n):
        return "–"
    return f"{n / 1e6:.2f}M" if n >= 1e5 else f"{n / 1e3:.1f}k"


def write_summary(sweep, results: SweepResults) -> str:
    """summary.md, summary.csv (one row per run label) and runs.csv (one row per run) in the results folder."""
    out = sweep.results_dir
    out.mkdir(parents=True, exist_ok=True)
    text = summary_markdown(results)
    (out / "summary.md").write_text(text)
    summary = summary_frame(results)
    if not summary.empty:
        summary.join(relative_frame(results), how="left").to_csv(out / "summary.csv", float_format="%.6g")
        results.frame().to_csv(out / "runs.csv", index=False, float_format="%.6g")
    return text
