"""A sweep's results as the papers' tables: mean ± sample std over seeds x orders, relative to a baseline.

Built from ``collect`` (``frkit.reports.collect``) alone, so every figure can be rebuilt from committed files. A row
says how many of its runs it averages (``runs``), so nothing is averaged silently. ``frkit sweep FILE`` writes the
summary after training; ``--summary-only`` writes it without training.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from frkit import atomic
from frkit.records.precision import UNRECORDED
from frkit.reports.claims import VERDICT_RULE, claims_markdown, claims_table
from frkit.reports.collect import LEARNS, METRICS, SweepResults, collect


def precision_counts(precisions) -> str:
    """``3 fp32`` or ``2 fp32, 1 bf16``: how a row's runs computed (a mixed row is said, never hidden)."""
    counts = pd.Series(list(precisions), dtype=object).value_counts()
    return ", ".join(f"{n} {p}" for p, n in counts.items()) or "–"


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
        for m in ("trainable_params", "wall_seconds", "cpu_seconds", "just_learned", "least_just_learned"):
            row[m] = mean_std(r.get(m, np.nan) for r in recs)[0]
        row["precision"] = precision_counts(r.get("precision", UNRECORDED) for r in recs)
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
        pairs = [
            (r, base[(k.order, k.seed)])
            for k, r in results.runs.items()
            if k.label == label and (k.order, k.seed) in base
        ]
        row = {"run": label, "pairs": len(pairs)}
        for n in names + ["average"]:
            col = "average_auc" if n == "average" else f"final {n}"
            row[f"{n} diff mean"], row[f"{n} diff std"], _ = mean_std(a[col] - b[col] for a, b in pairs)
        rows.append(row)
    return pd.DataFrame(rows).set_index("run") if rows else pd.DataFrame()


PRECISION_NOTE = (
    "`precision`: how many of a row's runs trained and scored in fp32 or under bf16 autocast "
    "(`precision: auto` picks bf16 on a CUDA GPU with bf16 and on a CPU with AVX512-BF16 or AMX); `?`: "
    "not recorded (runs made before frkit recorded it per step, on a machine environment.json does not "
    "describe)."
)


LEARNING_NOTE = (
    f"`just learned`: each marketplace's test AUC right after it was learned (the AUC matrix's diagonal), averaged "
    f"over marketplaces and runs; **not learning** where the least marketplace's averages below {LEARNS:.2f}: such a "
    "row is no baseline to beat, and the claims against it are not counted (claims.md)."
)


def just_learned(row) -> str:
    """The summary cell: the mean just-learned AUC, marked where the row does not learn."""
    if not np.isfinite(row.get("just_learned", np.nan)):
        return "–"
    mark = " **not learning**" if row["least_just_learned"] < LEARNS else ""
    return f"{row['just_learned']:.4f}{mark}"


def summary_markdown(results: SweepResults) -> str:
    sweep = results.sweep
    summary = summary_frame(results)
    names = sorted(sweep.orders[0])
    lines = [
        f"# Sweep `{sweep.name}`",
        "",
        f"Base params: `{sweep.base.name}`; seeds {sweep.seeds}; "
        f"default order{'s' if len(sweep.orders) > 1 else ''} "
        + ", ".join(" → ".join(o) for o in sweep.orders)
        + ". Mean ± sample std (ddof 1) over the seeds x orders "
        "a row has (`runs` of `expected`); forgetting as FR-LoRA §5.6.3 (≤ 0, closer to 0 = less forgetting).",
        "",
    ]
    if summary.empty:
        return "\n".join(lines + ["No finished runs yet."]) + "\n"
    table = pd.DataFrame(
        {
            "runs": [f"{int(r['runs'])}/{int(r['expected'])}" for _, r in summary.iterrows()],
            **{
                m.replace("_", " "): [fmt(r[f"{m} mean"], r[f"{m} std"]) for _, r in summary.iterrows()]
                for m in METRICS
            },
            **{
                f"final {n}": [fmt(r[f"final {n} mean"], r[f"final {n} std"]) for _, r in summary.iterrows()]
                for n in names
            },
            "just learned": [just_learned(r) for _, r in summary.iterrows()],
            "trainable": [millions(r["trainable_params"]) for _, r in summary.iterrows()],
            "wall s/run": [
                f"{r['wall_seconds']:.0f}" if np.isfinite(r["wall_seconds"]) else "–" for _, r in summary.iterrows()
            ],
            "precision": list(summary["precision"]),
        },
        index=summary.index,
    )
    lines += ["## Summary", "", table.to_markdown(disable_numparse=True), "", PRECISION_NOTE, "", LEARNING_NOTE, ""]
    relative = relative_frame(results)
    if not relative.empty:
        rel = pd.DataFrame(
            {
                n: [fmt(r[f"{n} diff mean"], r[f"{n} diff std"], 4) for _, r in relative.iterrows()]
                for n in names + ["average"]
            },
            index=relative.index,
        )
        rel.insert(0, "pairs", relative["pairs"].astype(int))
        lines += [
            f"## Relative to {sweep.baseline} (= 1x): final ROC-AUC minus the baseline's, paired by seed and order",
            "",
            rel.to_markdown(disable_numparse=True),
            "",
        ]
    lines += time_lines(results)
    if results.missing:
        lines += [f"## Missing runs ({len(results.missing)} of {len(sweep.configs)}), left out of every mean above", ""]
        lines += [f"- {k}: {why}" for k, why in results.missing.items()]
        lines.append("")
    return "\n".join(lines)


def time_lines(results: SweepResults) -> list[str]:
    """What the finished runs cost (summed, and on the clock) and what the runs left would, from the seconds each
    run records: a one-thread run's CPU time is its wall time when it has a core to itself, so CPU-hours over the
    cores kept busy is the clock time to plan for. A run left is costed at its row's mean (a row with no finished
    run: the mean of all runs)."""
    frame = results.frame()
    if frame.empty:
        return []
    cpu = frame.groupby("label")["cpu_seconds"].mean()
    fallback = float(np.nanmean(frame["cpu_seconds"])) if frame["cpu_seconds"].notna().any() else np.nan
    left = sum(
        float(cpu.get(key.label, np.nan)) if np.isfinite(cpu.get(key.label, np.nan)) else fallback
        for key in results.missing
    )
    timed = int(frame["cpu_seconds"].notna().sum())
    lines = [
        "## Time",
        "",
        f"The {len(frame)} finished runs recorded {frame['wall_seconds'].sum() / 3600:.1f} h of wall time "
        f"({timed} of them also CPU time: {frame['cpu_seconds'].sum() / 3600:.1f} CPU-hours).",
    ]
    started = frame["started"].notna() if "started" in frame else pd.Series(False, index=frame.index)
    if started.any():
        clock = clock_seconds(frame.loc[started, "started"], frame.loc[started, "wall_seconds"])
        lines.append(
            f"On the clock, the {int(started.sum())} runs that recorded their start (environment.json) cover "
            f"{clock / 3600:.1f} h: the union of each run's [start, start + wall time], so runs trained side "
            f"by side count once and the time between sessions not at all (loading the model is left out); "
            f"{frame.loc[started, 'wall_seconds'].sum() / clock:.1f} runs at a time on average."
        )
    if results.missing:
        lines.append(
            f"The {len(results.missing)} runs left would take about {left / 3600:.1f} CPU-hours at their "
            "rows' "
            "mean CPU time per run (a row with none finished: the mean of all runs); with one-thread runs on "
            "c busy cores (`--jobs c`, `OMP_NUM_THREADS=1`) that is about that many hours over c."
        )
    return lines + [""]


def millions(n: float) -> str:
    if not np.isfinite(n):
        return "–"
    return f"{n / 1e6:.2f}M" if n >= 1e5 else f"{n / 1e3:.1f}k"


def write_summary(sweep, results: SweepResults) -> str:
    """summary.md, summary.csv (one row per run label), runs.csv (one row per run) and claims.md (both papers'
    claims checked on these runs) in the results folder."""
    out = sweep.results_dir
    out.mkdir(parents=True, exist_ok=True)
    text = summary_markdown(results)
    atomic.write_text(out / "summary.md", text)
    summary = summary_frame(results)
    if not summary.empty:
        atomic.write_csv(out / "summary.csv", summary.join(relative_frame(results), how="left"), float_format="%.6g")
        atomic.write_csv(out / "runs.csv", results.frame(), index=False, float_format="%.6g")
        claims = claims_table(results.frame(), sorted(sweep.orders[0]), blocked=sweep.unit == "seed")
        atomic.write_text(
            out / "claims.md",
            f"# Claims checked on sweep `{sweep.name}`\n\n{VERDICT_RULE}\n\n{claims_markdown(claims)}\n",
        )
    return text


def clock_seconds(starts, walls) -> float:
    """Seconds of the clock covered by at least one run: the union of the intervals [start, start + wall]. Runs
    trained side by side (``--jobs``) overlap and count once; the gaps between sessions do not count."""
    intervals = sorted(
        (s, s + pd.Timedelta(seconds=float(w)))
        for s, w in zip(starts, walls)
        if s is not None and not pd.isna(s) and np.isfinite(w)
    )
    total, end = 0.0, None
    for a, b in intervals:
        if end is None or a > end:
            total, end = total + (b - a).total_seconds(), b
        elif b > end:
            total, end = total + (b - end).total_seconds(), b
    return total


def summarize_sweep(sweep, write: bool = True) -> SweepResults:
    """The comparison tables of the sweep's results folder, written beside them (and printed) unless ``write`` is
    false."""
    results = collect(sweep)
    if write:
        print(write_summary(sweep, results))
    return results
