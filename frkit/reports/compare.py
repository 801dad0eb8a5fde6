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

from frkit import atomic
from frkit.errors import FrkitInputError
from frkit.paths import shown

METRICS = ("average_auc", "forgetting", "backward_transfer", "forward_transfer")


@dataclass
class SweepResults:
    """Every run of a sweep that has results (``runs``), and the ones that do not (``missing``: key -> why)."""

    sweep: object
    runs: dict = field(default_factory=dict)  # RunKey -> flat record (metrics, finals, seconds, params)
    missing: dict = field(default_factory=dict)  # RunKey -> reason
    params: dict = field(default_factory=dict)  # RunKey -> the run's params.yaml, as read once by collect()
    steps: dict = field(default_factory=dict)  # RunKey -> progress.json's per-marketplace steps

    def frame(self) -> pd.DataFrame:
        """One row per finished run."""
        return pd.DataFrame([{"label": k.label, "order": k.order_tag, "seed": k.seed, **v} for k, v in self.runs.items()])

    def labels(self) -> list[str]:
        return [label for label in self.sweep.labels if any(k.label == label for k in self.sweep.configs)]


def read_run(folder: Path) -> dict | None:
    """The flat record of a finished run in a results folder, or None when it is missing or half-written."""
    files = read_run_files(folder)
    return None if files is None else run_record(folder, *files)


def read_run_files(folder: Path) -> tuple[dict, dict] | None:
    """A finished run's ``metrics.json`` and ``progress.json``, or None when either is missing or unreadable."""
    try:
        return json.loads((folder / "metrics.json").read_text()), json.loads((folder / "progress.json").read_text())
    except (OSError, ValueError):
        return None


def read_params(folder: Path) -> dict:
    """A run's ``params.yaml`` ({} when it is missing or not a mapping: old fixtures hold none)."""
    import yaml

    try:
        params = yaml.safe_load((folder / "params.yaml").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return {}
    return params if isinstance(params, dict) else {}


def run_record(folder: Path, metrics: dict, progress: dict) -> dict:
    """The flat record (one row of ``SweepResults.frame``) of a run's metrics and progress."""
    steps = progress.get("steps", [])
    record = {m: _num(metrics.get(m)) for m in METRICS}
    record.update({f"final {n}": _num(v) for n, v in metrics.get("final_auc", {}).items()})
    trainable = list(metrics.get("trainable_params", {}).values())
    record["trainable_params"] = trainable[-1] if trainable else np.nan
    record["wall_seconds"] = sum(s.get("learn_seconds", 0) + s.get("eval_seconds", 0) for s in steps) + \
        progress.get("init_seconds", 0.0)
    record["cpu_seconds"] = sum(s.get("cpu_seconds", np.nan) for s in steps) + progress.get("init_cpu_seconds", 0.0)
    record["precision"] = run_precision(folder, steps)
    record["started"] = _started(folder)
    return record


def _started(folder: Path) -> pd.Timestamp | None:
    """When the run first started (environment.json's ``started``), or None where it is not recorded."""
    try:
        started = json.loads((folder / "environment.json").read_text()).get("started")
        return pd.Timestamp(started) if started else None
    except (OSError, ValueError, AttributeError):
        return None


def clock_seconds(starts, walls) -> float:
    """Seconds of the clock covered by at least one run: the union of the intervals [start, start + wall]. Runs
    trained side by side (``--jobs``) overlap and count once; the gaps between sessions do not count."""
    intervals = sorted((s, s + pd.Timedelta(seconds=float(w))) for s, w in zip(starts, walls)
                       if s is not None and not pd.isna(s) and np.isfinite(w))
    total, end = 0.0, None
    for a, b in intervals:
        if end is None or a > end:
            total, end = total + (b - a).total_seconds(), b
        elif b > end:
            total, end = total + (b - end).total_seconds(), b
    return total


UNRECORDED = "?"


def run_precision(folder: Path, steps: list[dict]) -> str:
    """How the run's encoder computed: ``fp32``, ``bf16``, ``mixed`` (steps differ: resumed on another machine) or
    ``?`` (not recorded). ``precision: auto`` means bf16 on one machine and fp32 on another, so each step records
    what it ran; for older runs params.yaml and environment.json say it where they can."""
    seen = {s.get("precision") for s in steps}
    if None in seen or not seen:
        seen = (seen - {None}) | _precision_from_record(folder, len(steps))
    if not seen or None in seen:
        return UNRECORDED
    return seen.pop() if len(seen) == 1 else "mixed"


def _precision_from_record(folder: Path, n_steps: int) -> set:
    """The precision of a run without per-step records (None: unknown). One asked for by name (params.yaml) holds
    on any machine; ``auto`` is what each session's machine chose (environment.json's ``bf16_autocast_fast``),
    counting only the sessions that ran steps (a resume after the last step ran none)."""
    import yaml

    try:
        requested = (yaml.safe_load((folder / "params.yaml").read_text(encoding="utf-8")) or {}).get("precision", "auto")
    except (OSError, UnicodeDecodeError, ValueError, yaml.YAMLError, AttributeError):
        return {None}
    if requested in ("fp32", "bf16"):
        return {requested}
    try:
        env = json.loads((folder / "environment.json").read_text(encoding="utf-8"))
        sessions = env.get("sessions") or [env]
        starts = [e.get("steps_done_before", 0) for e in sessions] + [n_steps]
    except (OSError, UnicodeDecodeError, ValueError, AttributeError):
        return {None}
    ran = [e for e, a, b in zip(sessions, starts, starts[1:]) if b > a]
    return {None if "bf16_autocast_fast" not in e else ("bf16" if e["bf16_autocast_fast"] else "fp32")
            for e in ran} or {None}


def precision_counts(precisions) -> str:
    """``3 fp32`` or ``2 fp32, 1 bf16``: how a row's runs computed (a mixed row is said, never hidden)."""
    counts = pd.Series(list(precisions), dtype=object).value_counts()
    return ", ".join(f"{n} {p}" for p, n in counts.items()) or "–"


def _num(x) -> float:
    return np.nan if x is None else float(x)


def collect(sweep) -> SweepResults:
    out = SweepResults(sweep)
    for key in sweep.configs:
        folder = sweep.result_folder(key)
        files = read_run_files(folder)
        if files is None:
            out.missing[key] = "half-written (no readable metrics.json / progress.json)" if folder.exists() else "not run"
        else:
            out.runs[key] = run_record(folder, *files)
            out.params[key] = read_params(folder)
            out.steps[key] = files[1].get("steps", [])
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
        pairs = [(r, base[(k.order, k.seed)]) for k, r in results.runs.items()
                 if k.label == label and (k.order, k.seed) in base]
        row = {"run": label, "pairs": len(pairs)}
        for n in names + ["average"]:
            col = "average_auc" if n == "average" else f"final {n}"
            row[f"{n} diff mean"], row[f"{n} diff std"], _ = mean_std(a[col] - b[col] for a, b in pairs)
        rows.append(row)
    return pd.DataFrame(rows).set_index("run") if rows else pd.DataFrame()


PRECISION_NOTE = ("`precision`: how many of a row's runs trained and scored in fp32 or under bf16 autocast "
                  "(`precision: auto` picks bf16 on a CUDA GPU with bf16 and on a CPU with AVX512-BF16 or AMX); `?`: "
                  "not recorded (runs made before frkit recorded it per step, on a machine environment.json does not "
                  "describe).")


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
        "precision": list(summary["precision"]),
    }, index=summary.index)
    lines += ["## Summary", "", table.to_markdown(disable_numparse=True), "", PRECISION_NOTE, ""]
    relative = relative_frame(results)
    if not relative.empty:
        rel = pd.DataFrame({n: [fmt(r[f"{n} diff mean"], r[f"{n} diff std"], 4) for _, r in relative.iterrows()]
                            for n in names + ["average"]}, index=relative.index)
        rel.insert(0, "pairs", relative["pairs"].astype(int))
        lines += [f"## Relative to {sweep.baseline} (= 1x): final ROC-AUC minus the baseline's, paired by seed and order", "",
                  rel.to_markdown(disable_numparse=True), ""]
    lines += time_lines(results)
    if results.missing:
        lines += [f"## Missing runs ({len(results.missing)} of {len(sweep.configs)}), left out of every mean above", ""]
        lines += [f"- {k}: {why}" for k, why in results.missing.items()]
        lines.append("")
    return "\n".join(lines)


def time_lines(results: SweepResults) -> list[str]:
    """What the finished runs cost (summed, and on the clock) and what the runs left would, from the seconds each
    run records: a one-thread run's CPU time is its wall time when it has a core to itself, so CPU-hours over the
    cores kept busy is the clock time to plan for. A run left is costed at its row's mean (a row with no finished run: the mean of all runs)."""
    frame = results.frame()
    if frame.empty:
        return []
    cpu = frame.groupby("label")["cpu_seconds"].mean()
    fallback = float(np.nanmean(frame["cpu_seconds"])) if frame["cpu_seconds"].notna().any() else np.nan
    left = sum(float(cpu.get(key.label, np.nan)) if np.isfinite(cpu.get(key.label, np.nan)) else fallback
               for key in results.missing)
    timed = int(frame["cpu_seconds"].notna().sum())
    lines = ["## Time", "",
             f"The {len(frame)} finished runs recorded {frame['wall_seconds'].sum() / 3600:.1f} h of wall time "
             f"({timed} of them also CPU time: {frame['cpu_seconds'].sum() / 3600:.1f} CPU-hours)."]
    started = frame["started"].notna() if "started" in frame else pd.Series(False, index=frame.index)
    if started.any():
        clock = clock_seconds(frame.loc[started, "started"], frame.loc[started, "wall_seconds"])
        lines.append(f"On the clock, the {int(started.sum())} runs that recorded their start (environment.json) cover "
                     f"{clock / 3600:.1f} h: the union of each run's [start, start + wall time], so runs trained side "
                     f"by side count once and the time between sessions not at all (loading the model is left out); "
                     f"{frame.loc[started, 'wall_seconds'].sum() / clock:.1f} runs at a time on average.")
    if results.missing:
        lines.append(f"The {len(results.missing)} runs left would take about {left / 3600:.1f} CPU-hours at their rows' "
                     "mean CPU time per run (a row with none finished: the mean of all runs); with one-thread runs on "
                     "c busy cores (`--jobs c`, `OMP_NUM_THREADS=1`) that is about that many hours over c.")
    return lines + [""]


def _millions(n: float) -> str:
    if not np.isfinite(n):
        return "–"
    return f"{n / 1e6:.2f}M" if n >= 1e5 else f"{n / 1e3:.1f}k"


def write_summary(sweep, results: SweepResults) -> str:
    """summary.md, summary.csv (one row per run label), runs.csv (one row per run) and claims.md (both papers'
    claims checked on these runs) in the results folder."""
    from frkit.reports.claims import VERDICT_RULE, claims_markdown, claims_table

    out = sweep.results_dir
    out.mkdir(parents=True, exist_ok=True)
    text = summary_markdown(results)
    atomic.write_text(out / "summary.md", text)
    summary = summary_frame(results)
    if not summary.empty:
        atomic.write_csv(out / "summary.csv", summary.join(relative_frame(results), how="left"), float_format="%.6g")
        atomic.write_csv(out / "runs.csv", results.frame(), index=False, float_format="%.6g")
        claims = claims_table(results.frame(), sorted(sweep.orders[0]))
        atomic.write_text(out / "claims.md", f"# Claims checked on sweep `{sweep.name}`\n\n{VERDICT_RULE}\n\n"
                                       f"{claims_markdown(claims)}\n")
    return text


README_BEGIN = "<!-- frkit:results {name} begin: written by `frkit sweep {file} --summary-only --readme README.md` -->"
README_END = "<!-- frkit:results {name} end -->"


def readme_section(sweep, results: SweepResults) -> str:
    """What the README shows of a sweep: the claims as checked and the summary table, from the results folder."""
    from frkit.reports.claims import VERDICT_RULE, claims_markdown, claims_table

    summary = summary_markdown(results)
    table = summary.split("## Summary", 1)[1].split("## Relative")[0].split("## Missing")[0].strip() if \
        "## Summary" in summary else "No finished runs yet."
    claims = claims_table(results.frame(), sorted(sweep.orders[0]))
    head = (f"{len(results.runs)} of {len(sweep.configs)} runs of `{shown(sweep.path)}` have results in "
            f"`{shown(sweep.results_dir)}/`.")
    rows = ["Every row (mean ± sample std over seeds x orders; `runs` found of expected):", "", table]
    if (claims["verdict"] == "missing").all():  # a sweep without the papers' rows (e.g. a strength sweep)
        return "\n".join([head, "", *rows])
    counts = ", ".join(f"{v} {k}" for k, v in claims["verdict"].value_counts().items())
    return "\n".join([f"{head} Claims: {counts}.", "", VERDICT_RULE, "", claims_markdown(claims), "", *rows])


def update_readme(readme: Path, sweep, results: SweepResults, sweep_file: str) -> None:
    """Replace the README's block between the sweep's markers (added at the end when absent)."""
    begin, end = README_BEGIN.format(name=sweep.name, file=sweep_file), README_END.format(name=sweep.name)
    text = readme.read_text()
    block = f"{begin}\n{readme_section(sweep, results)}\n{end}"
    start = text.find(f"<!-- frkit:results {sweep.name} begin")
    if start >= 0:
        stop = text.index(end, start) + len(end)
        text = text[:start] + block + text[stop:]
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    atomic.write_text(readme, text)


# -- the papers' tables and figures over a sweep (notebook 06) ---------------------------------------------------
FR_TABLE_ROWS = [  # FR-LoRA Tables 1-2, in the paper's order (rows the sweep lacks are skipped)
    ("independent", "Independent (1x)"), ("joint", "Multilingual (all data, upper bound)"), ("sequential", "Sequential"),
    ("replay", "Experience Replay"), ("prefix", "Prefix tuning"), ("progressive_prefix", "Progressive Prefix"),
    ("lora", "LoRA"), ("dora", "DoRA"), ("lora_stacking", "LoRA Sequential Stacking"),
    ("lora_merge_linear", "LoRA merge (linear)"), ("lora_merge_svd", "LoRA merge (svd)"),
    ("magmax+independent", "MagMax + independent"), ("magmax+sequential", "MagMax + sequential"),
    ("opcm+independent", "OPCM + independent"), ("opcm+sequential", "OPCM + sequential"), ("o_lora", "O-LoRA"),
    ("ewc", "EWC"), ("fr_lora", "FR-LoRA"), ("fr_lora+proj", "FR-LoRA + Proj."), ("fr_lora+lr_decay", "FR-LoRA + Lr-Decay"),
    ("fr_lora+lr_decay+proj", "FR-LoRA + Lr-Decay + Proj."), ("fr_dora", "FR-DoRA"), ("fr_dora+lr_decay", "FR-DoRA + Lr-Decay"),
]
AD_TABLE_ROWS = [("independent", "SM (single marketplace)"), ("sequential", "Sequential fine-tuning"),
                 ("adapter", "Adapter"), ("adapter_fusion", "Adapter Fusion (all data, not sequential)"),
                 ("attention_distillation", "Attention Distillation (30% translated)")]
TRANSLATION_ROWS = {0.0: "attention_distillation_t0", 0.1: "attention_distillation_t01", 0.3: "attention_distillation",
                    0.5: "attention_distillation_t05"}


def _runs_of(results: SweepResults, label: str) -> dict:
    return {k: r for k, r in results.runs.items() if k.label == label}


def relative_paper_table(results: SweepResults, rows=FR_TABLE_ROWS, baseline: str = "independent") -> pd.DataFrame:
    """FR-LoRA Table 1/2: per marketplace and on average, final ROC-AUC minus Independent's (paired), mean ± std."""
    rel = relative_frame(results, baseline)
    names = sorted(results.sweep.orders[0])
    out = {}
    for label, title in rows:
        if label == baseline and any(k.label == baseline for k in results.runs):
            out[title] = {n: "1x" for n in names + ["average"]}
        elif label in rel.index:
            r = rel.loc[label]
            out[title] = {n: fmt(r[f"{n} diff mean"], r[f"{n} diff std"]) for n in names + ["average"]}
            out[title]["pairs"] = int(r["pairs"])
    return pd.DataFrame.from_dict(out, orient="index")


def absolute_table(results: SweepResults, rows, metrics=("average_auc", "forgetting")) -> pd.DataFrame:
    """Final ROC-AUC per marketplace (and ``metrics``), mean ± std, with trainable parameters, for ``rows``."""
    summary = summary_frame(results)
    names = sorted(results.sweep.orders[0])
    out = {}
    for label, title in rows:
        if label not in summary.index or summary.loc[label, "runs"] == 0:
            continue
        r = summary.loc[label]
        out[title] = {**{n: fmt(r[f"final {n} mean"], r[f"final {n} std"]) for n in names},
                      **{m.replace("_", " "): fmt(r[f"{m} mean"], r[f"{m} std"]) for m in metrics},
                      "trainable": _millions(r["trainable_params"]), "runs": f"{int(r['runs'])}/{int(r['expected'])}"}
    return pd.DataFrame.from_dict(out, orient="index")


def bar_figure(results: SweepResults, labels: list[tuple[str, str]], metric: str, title: str, yaxis: str):
    """Bars of ``metric`` (mean, sample-std error bars) for the labels the sweep has."""
    import plotly.graph_objects as go

    summary = summary_frame(results)
    shown = [(label, name) for label, name in labels if label in summary.index and summary.loc[label, "runs"] > 0]
    means = [summary.loc[label, f"{metric} mean"] for label, _ in shown]
    stds = [summary.loc[label, f"{metric} std"] for label, _ in shown]
    fig = go.Figure(go.Bar(x=[n for _, n in shown], y=means,
                           error_y={"type": "data", "array": [0 if not np.isfinite(s) else s for s in stds]},
                           text=[f"{m:.4f}" for m in means]))
    fig.update_layout(title=title, yaxis_title=yaxis)
    return fig


def translation_figure(results: SweepResults):
    """AD Figure 4: mean final ROC-AUC of the older marketplaces (those translated into) and wall time per run,
    against the share of the new marketplace's data translated."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=2, subplot_titles=("older marketplaces' final ROC-AUC", "wall time per run (s)"))
    xs, ys, es, ts = [], [], [], []
    for fraction, label in TRANSLATION_ROWS.items():
        runs = _runs_of(results, label)
        if not runs:
            continue
        older = [np.mean([r[f"final {m}"] for m in k.order[:-1]]) for k, r in runs.items()]
        mean, std, _ = mean_std(older)
        xs.append(fraction)
        ys.append(mean)
        es.append(0 if not np.isfinite(std) else std)
        ts.append(mean_std(r["wall_seconds"] for r in runs.values())[0])
    fig.add_trace(go.Scatter(x=xs, y=ys, error_y={"type": "data", "array": es}, mode="lines+markers", name="ROC-AUC"),
                  row=1, col=1)
    fig.add_trace(go.Scatter(x=xs, y=ts, mode="lines+markers", name="seconds"), row=1, col=2)
    fig.update_xaxes(title_text="share of D_t translated into each older language")
    fig.update_layout(title="Attention Distillation, Figure 4: translation share", showlegend=False)
    return fig


def stage2_penalty_frame(results: SweepResults) -> pd.DataFrame:
    """FR-LoRA's Stage II loss split into Eq. 4's penalty and the task loss, per run and marketplace, for the runs
    that logged it (``stage2.eq4_penalty`` in progress.json); empty when none did. ``task loss`` is the mean training
    loss less the mean penalty (both over every Stage II step), ``penalty share`` the penalty's part of that loss;
    ``Fisher < eps``: the share of adapted weights whose Stage I Fisher lies below ``fr_eps``, where eps, not the
    Fisher, sets the weight 1/(F+eps)."""
    rows = []
    for key in results.runs:
        steps = results.steps[key]
        logged = [(s["marketplace"], s["stage2"]) for s in steps if (s.get("stage2") or {}).get("eq4_penalty")]
        if not logged:
            continue
        params = results.params[key]
        for marketplace, stage2 in logged:
            penalty = stage2["eq4_penalty"]
            loss = float(np.mean([h["train_loss"] for h in stage2["history"]]))  # epochs have equal steps
            rows.append({"run": key.label, "order": key.order_tag, "seed": key.seed, "marketplace": marketplace,
                         "beta": params.get("beta"), "Stage II loss": loss, "Eq. 4 penalty": penalty["mean"],
                         "task loss": loss - penalty["mean"], "penalty share": penalty["mean"] / loss,
                         "penalty, last step": penalty["last"],
                         "Fisher < eps": penalty.get("fisher_below_eps")})
    return pd.DataFrame(rows)


def strength_figure(results: SweepResults, prefix: str, parameter: str, groups: dict[str, str]):
    """AUC and forgetting against a penalty strength (ewc_lambda or beta), one line per Fisher scale (``groups``:
    label prefix -> legend name); the x value is read from each run's params."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=2, subplot_titles=("average ROC-AUC", "forgetting (higher = less)"))
    for group, name in groups.items():
        points = []
        for key, record in results.runs.items():
            if not key.label.startswith(group):
                continue
            if parameter not in results.params[key]:
                raise FrkitInputError(f"{shown(results.sweep.result_folder(key) / 'params.yaml')}: no {parameter!r}, "
                                      f"which strength_figure plots run {key.label!r} against")
            points.append((results.params[key][parameter], record["average_auc"], record["forgetting"]))
        points.sort()
        if not points:
            continue
        x = [max(p[0], 1e-8) for p in points]  # beta 0 on a log axis: drawn at 1e-8
        fig.add_trace(go.Scatter(x=x, y=[p[1] for p in points], mode="lines+markers", name=name, legendgroup=name),
                      row=1, col=1)
        fig.add_trace(go.Scatter(x=x, y=[p[2] for p in points], mode="lines+markers", name=name, legendgroup=name,
                                 showlegend=False), row=1, col=2)
    fig.update_xaxes(type="log", title_text=parameter)
    fig.update_layout(title=f"{prefix}: {parameter} over decades")
    return fig
