"""Continual-learning metrics over the ROC-AUC matrix.

R[k, t] = ROC-AUC on marketplace t's test set after learning marketplaces 0..k (k, t 0-based here;
rows = training steps, columns = evaluated marketplaces). Entries with t > k exist only when unseen
marketplaces are evaluated (``evaluate_unseen``); otherwise they are NaN.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def _check(R: np.ndarray) -> np.ndarray:
    R = np.asarray(R, dtype=float)
    if R.ndim != 2 or R.shape[0] != R.shape[1]:
        raise ValueError(f"the AUC matrix must be square (steps x marketplaces), got shape {R.shape}")
    return R


def final_aucs(R) -> np.ndarray:
    """Last row: every marketplace after the whole sequence."""
    return _check(R)[-1].copy()


def average_auc(R) -> float:
    """Average ROC-AUC over all marketplaces after the last one (both seeds' headline number)."""
    return float(np.mean(final_aucs(R)))


def forgetting(R) -> float:
    """FR-LoRA seed, section 5.6.3: (1/T) sum_t ( R[T, t] - max_{k<=T} R[k, t] ).

    The max runs over the steps at which marketplace t had been learned (k >= t): scores taken before
    t was trained (forward-transfer entries) are not a level the model "knew" and could forget.
    Sign convention as in the paper: the value is <= 0 and higher (closer to 0) means less forgetting.
    The last marketplace contributes 0 and is counted in T, as the formula is written.
    """
    R = _check(R)
    T = R.shape[0]
    return float(np.mean([R[T - 1, t] - np.max(R[t:, t]) for t in range(T)]))


def backward_transfer(R) -> float:
    """BWT (Lopez-Paz & Ranzato, 2017): (1/(T-1)) sum_{t<T} ( R[T, t] - R[t, t] ); negative = forgetting."""
    R = _check(R)
    T = R.shape[0]
    if T < 2:
        return float("nan")
    return float(np.mean([R[T - 1, t] - R[t, t] for t in range(T - 1)]))


def forward_transfer(R, init_aucs) -> float:
    """FWT (Lopez-Paz & Ranzato, 2017): (1/(T-1)) sum_{t>1} ( R[t-1, t] - b_t ).

    b_t: ROC-AUC of the untrained base encoder with a freshly initialised head on marketplace t.
    NaN when unseen marketplaces were not evaluated.
    """
    R = _check(R)
    T = R.shape[0]
    b = np.asarray(init_aucs, dtype=float) if init_aucs is not None else np.full(T, np.nan)
    if T < 2:
        return float("nan")
    return float(np.mean([R[t - 1, t] - b[t] for t in range(1, T)]))


def summarize(R, names: list[str], init_aucs=None) -> dict:
    """Everything ``metrics.json`` holds."""
    R = _check(R)
    return {
        "marketplaces": list(names),
        "auc_matrix": [[None if np.isnan(x) else float(x) for x in row] for row in R],
        "final_auc": dict(zip(names, map(float, final_aucs(R)))),
        "average_auc": average_auc(R),
        "forgetting": forgetting(R),
        "backward_transfer": backward_transfer(R),
        "forward_transfer": forward_transfer(R, init_aucs),
        "init_auc": None if init_aucs is None else dict(zip(names, map(float, init_aucs))),
    }


def auc_matrix_frame(R, names: list[str]) -> pd.DataFrame:
    """R as a labelled table: index 'after <k>', columns the evaluated marketplaces."""
    return pd.DataFrame(_check(R), index=[f"after {n}" for n in names], columns=list(names))


def relative_table(final_by_method: dict[str, dict[str, float]], baseline: str = "independent") -> pd.DataFrame:
    """Seed tables' style: the baseline row reads "1x", other rows the signed ROC-AUC difference to it.

    ``final_by_method[method][marketplace]`` = final ROC-AUC. Adds an AVG column (difference of averages).
    """
    if baseline not in final_by_method:
        raise KeyError(f"baseline {baseline!r} is not among the runs {sorted(final_by_method)}")
    names = list(final_by_method[baseline])
    base = np.array([final_by_method[baseline][n] for n in names])
    rows = {}
    for method, finals in final_by_method.items():
        vals = np.array([finals[n] for n in names])
        if method == baseline:
            rows[method] = ["1x"] * (len(names) + 1)
        else:
            diff = vals - base
            rows[method] = [f"{d:+.4f}" for d in diff] + [f"{vals.mean() - base.mean():+.4f}"]
    return pd.DataFrame.from_dict(rows, orient="index", columns=names + ["AVG"])
