"""Issue 30's protocol probe: candidate benchmark protocols (one sweep each) side by side on what decides a benchmark.

For each candidate (a sweep file and its committed results) and each of its rows:

* seed standard deviation of the average AUC and of the forgetting (the spread a claim must see through);
* just-learned AUC: each marketplace's test AUC right after it was learned (the AUC matrix's diagonal), the mean and
  the least marketplace, averaged over the row's runs: a row below 0.70 does not learn on that protocol;
* CPU minutes per run (process time, every thread counted), from the runs' own records.

And per candidate:

* whether sequential fine-tuning's forgetting is negative and *reproduced*: a one-sided one-sample t-test over its
  units (seeds, or orders where several; ``frkit.reports.statistics``) of "forgetting < 0" at 0.05;
* the minimal detectable effect at 80% power (two-sided paired t-test at 0.05) of the comparisons between its rows:
  the median and the largest over every pair of rows with results on the same units.

The criteria of the issue, in its words: the chosen protocol is the cheapest on which (a) sequential's forgetting is
reproduced, (b) every family's just-learned AUC is >= 0.70 (after fair tuning) and (c) the MDE is <= 0.02 AUC.

    frkit probe-report params/sweeps/probe_translations.yaml params/sweeps/probe_mixed.yaml \\
        -o results/protocol_probe.md

A candidate ``FILE@ORDER`` (e.g. ``params/sweeps/shift.yaml@stsb_en-stsb_ja-pawsx_es``) is one order of a sweep
that has several: the comparison's first order is the probe of its own protocol, so its runs are not trained twice,
and the seed spread is read within one order (pooled over orders it would hold the order's effect too).
"""

from __future__ import annotations

import dataclasses
import itertools
import math

import numpy as np
import pandas as pd
from scipy import stats

from frkit.errors import FrkitInputError
from frkit.paths import shown
from frkit.reports.collect import LEARNS, SweepResults, collect
from frkit.reports.statistics import mde, unit_differences

MDE_GOAL = 0.02  # issue 30 (c)


@dataclasses.dataclass
class Candidate:
    """One candidate protocol: a sweep, its collected results, and the one order read (None: every order)."""

    sweep: object
    results: SweepResults
    order: str | None = None

    @property
    def expected(self) -> int:
        return sum(1 for k in self.sweep.configs if self.order is None or k.order_tag == self.order)


def load_candidate(arg: str) -> Candidate:
    """``FILE`` or ``FILE@ORDER``: the sweep read and its results collected (only ORDER's runs where given)."""
    from frkit.sweep import load_sweep

    path, _, order = str(arg).partition("@")
    sweep = load_sweep(path)
    results = collect(sweep)
    if order:
        tags = sorted({k.order_tag for k in sweep.configs})
        if order not in tags:
            raise FrkitInputError(f"{arg}: order {order!r} is not one of {path}'s orders {tags}")
        results = dataclasses.replace(
            results,
            runs={k: v for k, v in results.runs.items() if k.order_tag == order},
            missing={k: v for k, v in results.missing.items() if k.order_tag == order},
        )
    return Candidate(sweep, results, order or None)


def _frame(results: SweepResults) -> pd.DataFrame:
    frame = results.frame()
    return frame.set_index(["label", "order", "seed"]) if not frame.empty else frame


def row_table(results: SweepResults) -> pd.DataFrame:
    """One row per label with results: runs, mean and seed std of average AUC and forgetting, just-learned AUC (mean,
    least marketplace), CPU minutes per run."""
    frame = _frame(results)
    rows = []
    for label in results.labels():
        if frame.empty or label not in frame.index.get_level_values("label"):
            continue
        runs = frame.xs(label, level="label")
        rows.append(
            {
                "row": label,
                "runs": len(runs),
                "average AUC": runs["average_auc"].mean(),
                "std average AUC": runs["average_auc"].std(ddof=1),
                "forgetting": runs["forgetting"].mean(),
                "std forgetting": runs["forgetting"].std(ddof=1),
                "just learned": runs["just_learned"].mean(),
                "least just learned": runs["least_just_learned"].mean(),
                "CPU min/run": runs["cpu_seconds"].mean() / 60,
            }
        )
    return pd.DataFrame(rows)


def sequential_forgetting(results: SweepResults, label: str = "sequential") -> dict:
    """Sequential's mean forgetting over its units and the one-sided t-test of "forgetting < 0" (n, mean, p, verdict:
    reproduced / within noise / one unit / missing)."""
    frame = _frame(results)
    if frame.empty or label not in frame.index.get_level_values("label"):
        return {"n": 0, "mean": math.nan, "p": math.nan, "verdict": "missing"}
    units, unit = unit_differences(frame.xs(label, level="label")["forgetting"], 0.0)
    n = len(units)
    if n < 2:
        return {"n": n, "unit": unit, "mean": float(units.mean()), "p": math.nan, "verdict": "one unit"}
    p = float(stats.ttest_1samp(units, 0.0, alternative="less").pvalue) if np.ptp(units) > 0 else float(units[0] >= 0)
    verdict = "reproduced" if p < 0.05 else "within noise"  # the claims table's words (forgetting is <= 0)
    return {"n": n, "unit": unit, "mean": float(units.mean()), "p": p, "verdict": verdict}


def pairwise_mde(results: SweepResults, metric: str = "average_auc") -> pd.Series:
    """MDE at 80% power of every pair of rows, paired on their common units; indexed by "a vs b"."""
    frame = _frame(results)
    out = {}
    labels = sorted(set(frame.index.get_level_values("label"))) if not frame.empty else []
    for a, b in itertools.combinations(labels, 2):
        diffs, _ = unit_differences(frame.xs(a, level="label")[metric], frame.xs(b, level="label")[metric])
        if len(diffs) >= 2:
            out[f"{a} vs {b}"] = mde(float(diffs.std(ddof=1)), len(diffs))
    return pd.Series(out, dtype=float)


def _num(x: float, digits: int = 3) -> str:
    return "–" if x is None or not np.isfinite(x) else f"{x:.{digits}f}"


def candidate_markdown(candidate: Candidate) -> str:
    """One candidate's section: what it stands in for, the criteria lines, the row table."""
    sweep, results = candidate.sweep, candidate.results
    table = row_table(results)
    mdes = pairwise_mde(results)
    title = f"## {sweep.name} (`{shown(sweep.path)}`)"
    if candidate.order:
        title = f"## {sweep.name}, order {candidate.order} (`{shown(sweep.path)}`)"
    lines = [title, ""]
    if sweep.description:
        lines += [sweep.description, ""]
    where = f"`{sweep.results_dir.name}/`" + (f", order {candidate.order} only" if candidate.order else "")
    lines.append(f"{len(results.runs)} of {candidate.expected} runs have results ({where}).")
    lines.append("")
    # every sequential row (the head-initialisation variants are sequential too); sequential itself even when missing
    with_results = set(table.get("row", []))
    rows = [r for r in results.labels() if r == "sequential" or (r.startswith("sequential+") and r in with_results)]
    for label in rows or ["sequential"]:
        f = sequential_forgetting(results, label)
        lines.append(
            f"- (a) {label}'s forgetting: {_num(f['mean'], 4)} over {f['n']} {f.get('unit', 'unit')}(s), one-sided p "
            f"{_num(f['p'], 4)}: **{f['verdict']}**"
        )
    if not table.empty:
        weak = table[table["least just learned"] < LEARNS]["row"].tolist()
        lines.append(
            f"- (b) rows whose least just-learned AUC is below {LEARNS}: {', '.join(weak) if weak else 'none'}"
            f" (of {len(table)} rows with results)"
        )
    if len(mdes):
        lines.append(
            f"- (c) MDE at 80% power of the {len(mdes)} pairwise comparisons: median {_num(mdes.median())}, "
            f"largest {_num(mdes.max())} ({mdes.idxmax()}); goal <= {MDE_GOAL}"
        )
    else:
        lines.append("- (c) MDE: no two rows share two units yet")
    if not table.empty:
        printed = table.copy()
        for col in printed.columns[2:]:
            printed[col] = printed[col].map(lambda x, c=col: _num(x, 1 if c == "CPU min/run" else 4))
        lines += ["", printed.to_markdown(index=False)]
    return "\n".join(lines)


def probe_markdown(candidates: list[Candidate]) -> str:
    head = [
        "# Protocol probe (issue 30)",
        "",
        "Each candidate protocol is one sweep; every figure is rebuilt from its committed results by "
        "`frkit probe-report " + " ".join(_shown_arg(c) for c in candidates) + "`. "
        "*forgetting*: FR-LoRA's (1/T) sum over the T marketplaces of (final AUC - best AUC since learned), <= 0, the "
        "last marketplace counting 0 as the formula is written; *just learned*: "
        "AUC right after a marketplace was learned (mean over marketplaces; *least*: the lowest one), means over a "
        "row's runs; std: sample standard deviation over its runs (seeds); CPU min/run: process time of all threads.",
        "",
    ]
    return "\n".join(head + [candidate_markdown(c) + "\n" for c in candidates])


def _shown_arg(candidate: Candidate) -> str:
    return shown(candidate.sweep.path) + (f"@{candidate.order}" if candidate.order else "")
