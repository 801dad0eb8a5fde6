"""The exported folder's model card (README.md) and the kit revisions the run was trained with."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from frkit.export.exportable import Exportable


def model_card(ex: Exportable, info: dict) -> str:
    steps = ex.record.progress["steps"]
    names = list(ex.record.params["marketplaces"])
    last = steps[-1]
    row = (
        "| "
        + " | ".join(names)
        + " |\n|"
        + "---|" * len(names)
        + "\n| "
        + " | ".join("" if x is None else f"{x:.4f}" for x in last["auc_row"])
        + " |"
    )
    params = yaml.safe_dump(ex.record.params, sort_keys=True).strip()
    run_revisions = info["run_git_revisions"] or "not recorded"
    return f"""---
library_name: transformers
pipeline_tag: text-classification
tags: [cross-encoder, relevance, frkit, {ex.cfg.method}]
---
# {ex.cfg.run_name}: the {ex.marketplace} marketplace's relevance cross-encoder

Exported by frkit from run `{ex.record.path}` (method `{ex.cfg.method}`), marketplace `{ex.marketplace}`.

- **Method:** `{ex.cfg.method}`{" (adapter(s) merged into the base: no extra inference cost)" if info["merged"] else ""}
- **Marketplace order:** {" -> ".join(names)} (learned: {" -> ".join(s["marketplace"] for s in steps)})
- **Labels:** `num_labels = 2`: 0 = not relevant, 1 = relevant. Rank by the margin `logit[1] - logit[0]`
  (or `softmax(logits)[:, 1]`, frkit's score).
- **Max length:** {ex.cfg.max_length} tokens (pairs are truncated there, as in training).
- **kit revision (export):** `{info["frkit_git_revision"]}`; run's revision(s): {run_revisions}
- **Parity:** on the {info["parity_rows"]} test pairs of `{ex.marketplace}` the logits match frkit's to
  {info["max_abs_logit_diff"]:.2e} (max |difference|, fp32); test AUC {info["test_auc"]:.6f}.
- **Precision:** fp32 or bf16 (not fp16: the classifier holds the head's weights times 2^20, see below).

## Test ROC-AUC after the last marketplace ({last["marketplace"]})

{row}

## Use

```python
from transformers import AutoModelForSequenceClassification, AutoTokenizer
model = AutoModelForSequenceClassification.from_pretrained("OUT_DIR").eval()
tok = AutoTokenizer.from_pretrained("OUT_DIR")
enc = tok(["query"], ["product title"], truncation=True, padding=True, return_tensors="pt")
logits = model(**enc).logits          # [:, 1] - [:, 0] is the relevance margin

from sentence_transformers import CrossEncoder
scores = CrossEncoder("OUT_DIR").predict([("query", "product title")])   # the two logits per pair
```

or `frkit score OUT_DIR pairs.csv -o scores.csv`.

## The head

frkit's head is a `Linear(hidden, 2)` on the first token's last hidden state (no pooler). In this folder the pooler's
dense layer is `2^-20 * I` (bias 0) and the classifier holds the head's weight times `2^20` (bias unchanged): the
pooler's tanh is the identity on values that small (exactly, in fp32), so the logits are frkit's.

## Params of the run

```yaml
{params}
```
"""


def _run_revisions(run_dir: Path) -> list[str]:
    try:
        env = json.loads((run_dir / "environment.json").read_text())
    except (OSError, ValueError):
        return []
    revs = [s.get("git_revision") for s in env.get("sessions") or [] if isinstance(s, dict)]
    revs.append(env.get("git_revision"))
    return sorted({r for r in revs if r})
