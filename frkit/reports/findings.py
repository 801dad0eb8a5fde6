"""The README's comparison sentences, computed from a sweep's runs as the tables are (issue 29, item 6).

A typed sentence such as "replay scores above FR-LoRA on each of the 3 seeds" goes stale or wrong when runs are
added or re-made; here each sentence is rebuilt from ``runs.csv``'s rows by ``frkit sweep FILE --summary-only
--readme README.md`` and checked by ``tests/test_readme.py``. A sentence whose rows the sweep lacks is left out.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from frkit.reports.collect import LEARNS, least_learned_below

# (a, b): "a against b" on average AUC, paired by order and seed; the comparisons the README discusses
COMPARISONS = (
    ("fr_lora", "independent"),
    ("fr_lora", "sequential"),
    ("fr_lora", "lora"),
    ("fr_lora", "fr_lora_beta0"),
    ("fr_lora", "fr_lora+uniform"),
    ("fr_lora", "fr_lora+shuffled"),
    ("replay", "fr_lora"),
    ("o_lora", "fr_lora"),
    ("joint", "fr_lora"),
    ("ewc", "sequential"),
    ("fr_lora+lr_decay", "fr_lora"),
    ("fr_lora+proj", "fr_lora"),
    ("attention_distillation", "independent"),
    ("attention_distillation", "sequential"),
    ("attention_distillation", "adapter_fusion"),
    ("dytox", "attention_distillation+table2"),
)


def _named(metric: str) -> str:
    return metric.replace("_", " ").replace("auc", "AUC")


def _learns(frame: pd.DataFrame, label: str) -> str:
    least = least_learned_below(frame[frame["label"] == label])
    return f" ({label} does not learn here: least just-learned AUC {least:.3f} < {LEARNS:.2f})" if least else ""


def comparison_sentence(frame: pd.DataFrame, a: str, b: str, metric: str = "average_auc") -> str | None:
    """ "a − b: mean ± std over n paired runs, a higher on k" (None where a pair is missing)."""
    rows = frame.set_index(["label", "order", "seed"])[metric]
    if a not in rows.index.get_level_values(0) or b not in rows.index.get_level_values(0):
        return None
    left, right = rows.xs(a, level="label"), rows.xs(b, level="label")
    common = left.index.intersection(right.index)
    if len(common) == 0:
        return None
    diffs = (left.loc[common] - right.loc[common]).to_numpy(dtype=float)
    orders = len({order for order, _ in common})
    spread = f" ± {np.std(diffs, ddof=1):.3f}" if len(diffs) > 1 else ""
    where = f"{len(diffs)} paired run{'s' if len(diffs) > 1 else ''}" + (f" ({orders} orders)" if orders > 1 else "")
    higher = int((diffs > 0).sum())
    return (
        f"**{a} − {b}**: {diffs.mean():+.3f}{spread} {_named(metric)} over {where}, {a} higher on "
        f"{higher} of {len(diffs)}{_learns(frame, a)}{_learns(frame, b)}."
    )


def spread_sentence(frame: pd.DataFrame, metric: str = "average_auc") -> str | None:
    """How much the seed moves a row: the range of the rows' sample standard deviations over their runs."""
    stds = frame.groupby("label")[metric].std(ddof=1).dropna()
    if stds.empty:
        return None
    return (
        f"Seeds and orders move a row's {_named(metric)} by a sample std of {stds.min():.3f} "
        f"({stds.idxmin()}) to {stds.max():.3f} ({stds.idxmax()}) over its runs."
    )


def findings_markdown(frame: pd.DataFrame) -> str:
    """The bullets for a sweep's runs frame (``SweepResults.frame()``); empty where none applies."""
    if frame.empty:
        return ""
    lines = [comparison_sentence(frame, a, b) for a, b in COMPARISONS]
    lines = [spread_sentence(frame), *lines]
    return "\n".join(f"- {line}" for line in lines if line)
