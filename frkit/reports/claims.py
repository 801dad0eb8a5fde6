"""Every quantitative claim of both papers, checked by computation on a sweep's results (never typed by hand).

A claim compares two sweep rows (or a row with a number) on one quantity. Its measured difference is the mean
of the paired differences (same seed and order in both rows), with their sample standard deviation and count n,
and how many of the n pairs lie on the claimed side (with n = 3 the t-interval is wide: t(0.975, 2) = 4.3, so
"higher on every seed" can still be within noise, and a reader should see both).

Verdict rule (stated once, applied to every claim):
  * ``reproduced``: the difference has the claimed sign and |mean| > t(0.975, n-1) x std / sqrt(n), i.e. a
    two-sided 95% confidence interval over the seeds x orders excludes zero on the claimed side;
  * ``not reproduced``: the same, on the opposite side;
  * ``within noise``: the interval contains zero;
  * ``one run``: n < 2, no spread to judge by (the difference is still shown);
  * ``missing``: a row the claim needs has no results.
Claims about a count (trainable parameters) have no noise: their verdict is the comparison itself.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

FR, AD = "FR-LoRA", "Attention Distillation"
GREATER, LESS = ">", "<"


@dataclass(frozen=True)
class Claim:
    paper: str
    where: str  # the table, figure or section it comes from
    text: str
    a: str  # sweep label (or labels joined by "|": the best of them) on the left of the comparison
    b: str | None  # the other label; None compares ``a`` with ``value``
    quantity: str  # "average_auc", "forgetting", "final <m>", "older_mean", "trainable_params"
    direction: str = GREATER  # a > b (or a < b) is what the paper says
    value: float | None = None  # for b None: a's quantity compared with this number (ratio for parameters)
    margin: float = 0.0  # "nearly comparable": a > b - margin


def _t_crit(n: int) -> float:
    return float(stats.t.ppf(0.975, n - 1)) if n > 1 else np.inf


def paper_claims(names: list[str]) -> list[Claim]:
    """The claims of both papers, written as comparisons between the sweep labels of ``params/sweeps/cpu_stsb.yaml``."""
    claims = [
        Claim(FR, "Abstract, Table 1-2", "FR-LoRA beats independent (single-marketplace) training on average ROC-AUC",
              "fr_lora", "independent", "average_auc"),
        Claim(FR, "Table 1-2", "FR-LoRA beats plain LoRA fine-tuning on average ROC-AUC", "fr_lora", "lora", "average_auc"),
        Claim(FR, "Table 1-2", "FR-LoRA beats sequential fine-tuning on average ROC-AUC", "fr_lora", "sequential", "average_auc"),
        Claim(FR, "Table 1-2", "FR-LoRA beats Experience Replay on average ROC-AUC", "fr_lora", "replay", "average_auc"),
        Claim(FR, "Table 1-2", "FR-LoRA beats O-LoRA on average ROC-AUC", "fr_lora", "o_lora", "average_auc"),
        Claim(FR, "Table 1", "FR-LoRA beats LoRA Sequential Stacking on average ROC-AUC", "fr_lora", "lora_stacking", "average_auc"),
        Claim(FR, "Table 1", "FR-LoRA beats a linear merge of per-marketplace LoRAs on average ROC-AUC", "fr_lora",
              "lora_merge_linear", "average_auc"),
        Claim(FR, "Table 1", "FR-LoRA beats an SVD merge of per-marketplace LoRAs on average ROC-AUC", "fr_lora",
              "lora_merge_svd", "average_auc"),
        Claim(FR, "Table 1", "FR-LoRA beats Progressive Prefix on average ROC-AUC", "fr_lora", "progressive_prefix", "average_auc"),
        Claim(FR, "Table 2 text", "Experience Replay slightly improves over independent training", "replay", "independent", "average_auc"),
        Claim(FR, "Table 2 text", "model merging (MagMax + sequential) falls below independent training",
              "magmax+sequential", "independent", "average_auc", LESS),
        Claim(FR, "Table 2 text", "model merging (OPCM + sequential) falls below independent training",
              "opcm+sequential", "independent", "average_auc", LESS),
        Claim(FR, "Table 1 caption", "multilingual (joint) training is an upper bound for FR-LoRA", "joint", "fr_lora", "average_auc"),
        Claim(FR, "Figure 3a", "Fisher regularisation helps: FR-LoRA beats FR-LoRA with beta = 0", "fr_lora", "fr_lora_beta0", "average_auc"),
        Claim(FR, "Table 1, section 4.4", "learning-rate decay helps FR-LoRA", "fr_lora+lr_decay", "fr_lora", "average_auc"),
        Claim(FR, "Table 1, section 4.5", "projection of older LoRAs helps FR-LoRA", "fr_lora+proj", "fr_lora", "average_auc"),
        Claim(FR, "Table 1", "learning-rate decay and projection together help FR-LoRA", "fr_lora+lr_decay+proj", "fr_lora", "average_auc"),
        Claim(FR, "Table 2", "FR-DoRA + Lr-Decay beats FR-LoRA (the top score of Table 2)", "fr_dora+lr_decay", "fr_lora", "average_auc"),
    ]
    for m in names:  # Table 3: adding LoRA / DoRA with FR on top of EWC helps on every marketplace
        claims.append(Claim(FR, "Table 3", f"FR-LoRA beats EWC alone on {m}", "fr_lora", "ewc", f"final {m}"))
        claims.append(Claim(FR, "Table 3", f"FR-DoRA beats EWC alone on {m}", "fr_dora", "ewc", f"final {m}"))
    for other in ("replay", "magmax+sequential", "opcm+sequential", "o_lora", "sequential", "lora"):  # Figure 3b
        claims.append(Claim(FR, "Figure 3b", f"FR-LoRA forgets less than {other}", "fr_lora", other, "forgetting"))
    claims += [
        Claim(AD, "Table 1 text", "sequential fine-tuning forgets the older marketplaces (backward transfer < 0)",
              "sequential", None, "backward_transfer", LESS, value=0.0),
        Claim(AD, "Table 1 text", "Attention Distillation surpasses the single-marketplace baseline (SM) on average",
              "attention_distillation", "independent", "average_auc"),
        Claim(AD, "Table 1 text", "Attention Distillation is nearly comparable to AdapterFusion on all data (within 0.01)",
              "attention_distillation", "adapter_fusion", "average_auc", margin=0.01),
        Claim(AD, "Table 1 text", "AdapterFusion on all data beats SM", "adapter_fusion", "independent", "average_auc"),
        Claim(AD, "Table 1 text", "Attention Distillation beats sequential fine-tuning on average",
              "attention_distillation", "sequential", "average_auc"),
        Claim(AD, "Table 1", "Attention Distillation trains ~80% fewer parameters than SM (ratio <= 0.2)",
              "attention_distillation", "independent", "trainable_params", LESS, value=0.2),
        Claim(AD, "Figure 4", "translating 30% of the new data beats translating none (older marketplaces)",
              "attention_distillation", "attention_distillation_t0", "older_mean"),
        Claim(AD, "Figure 4", "translating 30% beats translating 10% (older marketplaces)",
              "attention_distillation", "attention_distillation_t01", "older_mean"),
        Claim(AD, "Figure 4", "translating 30% beats translating 50% (older marketplaces)",
              "attention_distillation", "attention_distillation_t05", "older_mean"),
    ]
    for other in ("hat", "b_cl", "ctr", "dytox"):  # Table 2: on its protocol's 4 seeded random orders
        claims.append(Claim(AD, "Table 2", f"Attention Distillation beats {other.upper()} on average",
                            "attention_distillation+table2", other, "average_auc"))
    return claims


def _quantity(frame: pd.DataFrame, quantity: str) -> pd.Series:
    """One value per run (index: order, seed) of ``quantity``; "older_mean" = mean final AUC over every marketplace
    but the last of the run's order (Figure 4: gains on the languages translated into)."""
    if quantity == "older_mean":
        values = []
        for _, r in frame.iterrows():
            older = r["order"].split("-")[:-1]
            values.append(np.mean([r[f"final {m}"] for m in older]))
        return pd.Series(values, index=pd.MultiIndex.from_frame(frame[["order", "seed"]]))
    return pd.Series(frame[quantity].to_numpy(dtype=float), index=pd.MultiIndex.from_frame(frame[["order", "seed"]]))


def check(claim: Claim, runs: pd.DataFrame) -> dict:
    """The measured difference of one claim over a sweep's runs (``SweepResults.frame()``) and its verdict."""
    row = {"paper": claim.paper, "where": claim.where, "claim": claim.text,
           "comparison": f"{claim.a} {claim.direction} {claim.b if claim.b else claim.value} ({claim.quantity})"}
    a = runs[runs["label"] == claim.a]
    b = runs[runs["label"] == claim.b] if claim.b else None
    if a.empty or (b is not None and b.empty):
        return {**row, "difference": np.nan, "std": np.nan, "n": 0, "agree": np.nan, "verdict": "missing"}
    qa = _quantity(a, claim.quantity)
    if claim.quantity == "trainable_params":
        ratio = float(qa.mean() / _quantity(b, claim.quantity).mean()) if b is not None else float(qa.mean())
        holds = ratio <= claim.value if claim.direction == LESS else ratio >= claim.value
        return {**row, "difference": ratio, "std": 0.0, "n": len(qa), "agree": np.nan,
                "verdict": "reproduced" if holds else "not reproduced"}
    if b is None:
        diffs = qa - claim.value
    else:
        qb = _quantity(b, claim.quantity)
        common = qa.index.intersection(qb.index)
        diffs = qa.loc[common] - qb.loc[common]
    diffs = diffs.dropna()
    n = len(diffs)
    if n == 0:
        return {**row, "difference": np.nan, "std": np.nan, "n": 0, "agree": np.nan, "verdict": "missing"}
    mean = float(diffs.mean())
    std = float(diffs.std(ddof=1)) if n > 1 else np.nan
    return {**row, "difference": mean, "std": std, "n": n, "agree": claimed_side(diffs.to_numpy(), claim.direction, claim.margin),
            "verdict": verdict(mean, std, n, claim.direction, claim.margin)}


def claimed_side(diffs: np.ndarray, direction: str = GREATER, margin: float = 0.0) -> int:
    """How many paired differences lie strictly on the claimed side (a > b - margin, or a < b + margin)."""
    signed = diffs if direction == GREATER else -diffs
    return int(np.sum(signed + margin > 0))


def verdict(mean: float, std: float, n: int, direction: str = GREATER, margin: float = 0.0) -> str:
    """The rule of the module docstring. ``margin`` shifts the bar: a > b - margin ("nearly comparable")."""
    if n < 2:
        return "one run"
    signed = (mean + margin) if direction == GREATER else (-mean + margin)
    half_width = _t_crit(n) * std / np.sqrt(n)
    if signed > half_width:
        return "reproduced"
    if signed < -half_width:
        return "not reproduced"
    return "within noise"


def claims_table(runs: pd.DataFrame, names: list[str]) -> pd.DataFrame:
    """Every claim of both papers checked on ``runs`` (a sweep's ``SweepResults.frame()``); a claim whose rows
    the sweep lacks stays in the table as ``missing``, so what could not be checked is visible."""
    if runs.empty:
        runs = pd.DataFrame(columns=["label", "order", "seed"])
    return pd.DataFrame([check(c, runs) for c in paper_claims(names)])


def claims_markdown(table: pd.DataFrame) -> str:
    """The claims table as markdown: measured difference ± std (n), verdict by the rule of this module."""
    rows = []
    for _, r in table.iterrows():
        diff = "–" if not np.isfinite(r["difference"]) else (
            f"{r['difference']:+.4f}" + (f" ± {r['std']:.4f}" if np.isfinite(r["std"]) and r["std"] > 0 else ""))
        agree = f"{int(r['agree'])}/{int(r['n'])}" if np.isfinite(r["agree"]) else "–"
        rows.append({"paper": r["paper"], "where": r["where"], "claim": r["claim"], "compared": r["comparison"],
                     "measured (mean ± std)": diff, "n": int(r["n"]), "on claimed side": agree, "verdict": r["verdict"]})
    return pd.DataFrame(rows).to_markdown(index=False, disable_numparse=True)


VERDICT_RULE = ("Verdict: *reproduced* when the mean paired difference (same seed and order) has the claimed sign and "
                "its two-sided 95% t-interval over the seeds x orders excludes zero; *not reproduced* when the interval "
                "lies on the other side; *within noise* when it contains zero; *one run* with a single pair; "
                "*missing* when a row the claim needs has no results. Parameter-count claims are compared exactly. "
                "*On claimed side*: how many of the n paired differences have the claimed sign, whatever the verdict.")
