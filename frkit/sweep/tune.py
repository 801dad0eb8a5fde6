"""``frkit tune``: the tuning runs of a sweep's ``tuning:`` block (``frkit/sweep/tuning.py`` says what is tuned and
how), built as a sweep of their own, and the choice they lead to (``chosen.yaml``, ``tuning.md``)."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import yaml

from frkit import atomic
from frkit.config import make_config
from frkit.errors import FrkitInputError
from frkit.methods import METHODS
from frkit.records.checksums import has_manifest, verify
from frkit.sweep.spec import RunKey, Sweep
from frkit.sweep.tuning import is_positive


def _round(x: float) -> float:
    return float(f"{x:.2g}")


def families(sweep, run_values: dict[str, dict]) -> dict[str, str]:
    """{method: its representative row's label}: the row named after the method, else its first row."""
    out: dict[str, str] = {}
    for label in sweep.labels:
        method = sweep.configs[sweep.keys(label)[0]].method
        if label == method:
            out[method] = label
        else:
            out.setdefault(method, label)
    for method, label in out.items():
        cls = METHODS[method]
        for key in filter(None, (cls.tuned_lr, cls.tuned_strength)):
            if key in run_values.get(label, {}):
                raise FrkitInputError(
                    f"sweep file {sweep.path} (run {label!r}): it is family {method!r}'s representative and sets "
                    f"{key!r}, which tuning chooses; give the centre in the base file or the sweep's overrides"
                )
    return out


def settings(sweep, method: str, label: str) -> list[dict[str, float]]:
    """The family's tried settings, the centre first: {key: value} for its lr (and strength) key(s)."""
    spec, cls = sweep.tuning, METHODS[method]
    cfg = sweep.configs[sweep.keys(label)[0]]
    axes = [(cls.tuned_lr, spec.lr_factors)]
    if cls.tuned_strength:
        axes.append((cls.tuned_strength, spec.strength_factors))
    centre = {}
    for key, _ in axes:
        value = getattr(cfg, key)
        if not is_positive(value):
            raise FrkitInputError(
                f"sweep file {sweep.path} (run {label!r}): tuning needs a positive {key!r} to centre its grid on, "
                f"got {value!r}; set it in the base file or the sweep's overrides"
            )
        centre[key] = value
    grid = [{}]
    for key, factors in axes:
        grid = [{**g, key: _round(centre[key] * f)} for g in grid for f in factors]
    first = {k: _round(v) for k, v in centre.items()}
    others = [g for g in grid if g != first]
    random.Random(f"{sweep.name}:{method}").shuffle(others)  # seeded: the same sample every time
    return [first] + others[: sweep.tuning.budget - 1]


def setting_label(label: str, setting: dict[str, float]) -> str:
    return label + "@" + ",".join(f"{k}={v:g}" for k, v in setting.items())


def tuning_sweep(sweep):
    """The tuning runs as a sweep of their own (same executors, resume, export and manifests as any sweep)."""
    spec = sweep.tuning
    order = sweep.orders[0]
    name = spec.results_dir.name
    out = Sweep(
        path=sweep.path,
        name=name,
        base=sweep.base,
        seeds=list(spec.seeds),
        orders=[order],
        baseline=sweep.baseline,
        results_dir=spec.results_dir,
        labels=[],
        description=f"tuning runs of {sweep.name}",
    )
    for method, label in families(sweep, sweep.run_values).items():
        base_values = sweep.configs[sweep.keys(label)[0]].model_dump()
        for setting in settings(sweep, method, label):
            tuned = setting_label(label, setting)
            out.labels.append(tuned)
            for seed in spec.seeds:
                key = RunKey(tuned, tuple(order), seed)
                values = {
                    **base_values,
                    **setting,
                    "seed": seed,
                    "marketplaces": list(order),
                    "evaluate_validation": True,
                    "run_name": f"{name}/{tuned}/{key.order_tag}/seed{seed}",
                }
                out.configs[key] = make_config(values, source=f"tuning of {label!r} in {sweep.path}")
                out.resources[key] = sweep.resources[sweep.keys(label)[0]]
    return out


def validation_score(folder: Path) -> float | None:
    """A finished tuning run's average validation AUC after its last marketplace (None when not there); a run whose
    files do not match its manifest is refused, naming it."""
    if has_manifest(folder):
        problem = verify(folder)
        if problem:
            raise FrkitInputError(f"tuning run {folder}: {problem}; export it again or delete it to train it again")
    try:
        value = json.loads((folder / "metrics.json").read_text()).get("average_validation_auc")
    except (OSError, ValueError):
        return None
    return float(value) if value is not None else None


def choose(sweep, tuned) -> tuple[dict[str, dict[str, float]], list[dict]]:
    """({method: chosen setting}, one record per tried setting) from the tuning sweep's results folder."""
    chosen, records, missing = {}, [], []
    for method, label in families(sweep, sweep.run_values).items():
        best = None
        for setting in settings(sweep, method, label):
            tag = setting_label(label, setting)
            scores = [validation_score(tuned.result_folder(k)) for k in tuned.keys(tag)]
            missing += [str(k) for k, s in zip(tuned.keys(tag), scores) if s is None]
            score = sum(s for s in scores if s is not None) / len(scores) if None not in scores else math.nan
            records.append({"family": method, "row": label, "setting": setting, "validation_auc": score})
            if not math.isnan(score) and (best is None or score > best["validation_auc"]):  # ties keep the centre
                best = records[-1]
        if best is not None:
            chosen[method] = best["setting"]
            best["chosen"] = True
    if missing:
        raise FrkitInputError(
            f"tuning of {sweep.path}: {len(missing)} tuning run(s) have no results yet (e.g. {missing[:3]}); "
            f"run `frkit tune {sweep.path}` again to train them"
        )
    return chosen, records


def write_choice(sweep, chosen: dict, records: list[dict]) -> Path:
    """chosen.yaml (what load_sweep applies) and tuning.md (every tried setting's score) in the tuning folder."""
    spec = sweep.tuning
    spec.results_dir.mkdir(parents=True, exist_ok=True)
    head = (
        f"# frkit tune {sweep.path.name}: per family, the setting with the highest average validation AUC\n"
        f"# after the last marketplace, on seeds {list(spec.seeds)} (never the comparison's). Rebuilt from the\n"
        f"# tuning runs' files in this folder by `frkit tune {sweep.path.name} --choose-only`; the sweep applies\n"
        "# it to every row of the family.\n"
    )
    atomic.write_text(spec.chosen_file, head + yaml.safe_dump(chosen, sort_keys=True))
    lines = [
        f"# Tuning of `{sweep.name}`",
        "",
        f"Budget: {spec.budget} settings per family (learning rate x {list(spec.lr_factors)}, strength x "
        f"{list(spec.strength_factors)} where a family has one; the centre is the sweep's own value). Seeds "
        f"{list(spec.seeds)}, order {'-'.join(sweep.orders[0])}. Score: average validation AUC after the last "
        "marketplace (test sets are never read).",
        "",
        "| family | row | setting | validation AUC | chosen |",
        "|:--|:--|:--|--:|:--|",
    ]
    for r in records:
        setting = ", ".join(f"{k} {v:g}" for k, v in r["setting"].items())
        score = "–" if math.isnan(r["validation_auc"]) else f"{r['validation_auc']:.4f}"
        lines.append(f"| {r['family']} | {r['row']} | {setting} | {score} | {'yes' if r.get('chosen') else ''} |")
    atomic.write_text(spec.results_dir / "tuning.md", "\n".join(lines) + "\n")
    return spec.chosen_file
