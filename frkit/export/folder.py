"""``export``: a run's marketplace written as a Hugging Face folder, atomically, after the parity check."""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import numpy as np

from frkit import atomic
from frkit.errors import FrkitInputError
from frkit.export.card import _run_revisions, model_card
from frkit.export.exportable import Exportable, prepare
from frkit.export.hf_classifier import EPS, ID2LABEL, PARITY_TOLERANCE, frkit_logits, hf_logits
from frkit.export.onnx import ONNX_FILE, _require_onnx, export_onnx

log = logging.getLogger(__package__)  # "frkit.export", as before the module became a package

INFO_FILE = "frkit_export.json"


def _check_out_dir(out_dir: Path, overwrite: bool) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise FrkitInputError(f"output {out_dir} is a file; expected a folder to create")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not overwrite:
        raise FrkitInputError(
            f"output folder {out_dir} exists and is not empty; choose a new folder, or pass "
            "--overwrite to replace it (the old one stays until the new one is complete)"
        )


def export(
    run_dir: str | Path, marketplace: str, out_dir: str | Path, onnx: bool = False, overwrite: bool = False
) -> dict:
    """Write ``marketplace``'s model of the run as an HF folder at ``out_dir`` (atomically: a temp folder beside it,
    renamed when complete and checked). Returns the export info (also in ``out_dir/frkit_export.json``)."""
    from sklearn.metrics import roc_auc_score
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from frkit.records import git_revision

    run_dir, out_dir = Path(run_dir), Path(out_dir)
    _check_out_dir(out_dir, overwrite)
    if onnx:
        _require_onnx()
    ex = prepare(run_dir, marketplace)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{out_dir.name}.", dir=out_dir.parent) as tmp:
        build = Path(tmp) / "out"
        ex.model.save_pretrained(build, safe_serialization=True)
        ex.tokenizer.save_pretrained(build)
        # the parity check: the folder as transformers loads it against frkit's own model, on the test set
        loaded = AutoModelForSequenceClassification.from_pretrained(build).float().eval()
        tok = AutoTokenizer.from_pretrained(build)
        ours = frkit_logits(ex.frkit_model, ex.tokenizer, ex.test, ex.head, ex.cfg.max_length)
        theirs = hf_logits(loaded, tok, ex.test)
        diff = float(np.abs(ours - theirs).max()) if len(ours) else 0.0
        if not diff <= PARITY_TOLERANCE:
            raise FrkitInputError(
                f"{run_dir}: the exported {marketplace} model's logits differ from frkit's by up to "
                f"{diff:.3g} (> {PARITY_TOLERANCE:g}); nothing was written to {out_dir}"
            )
        margin = theirs[:, 1] - theirs[:, 0]
        labels = ex.test["label"].to_numpy()
        info = {
            "run_dir": str(run_dir),
            "method": ex.cfg.method,
            "marketplace": marketplace,
            "head": ex.head,
            "marketplaces": list(ex.record.params["marketplaces"]),
            "auc_row": ex.record.progress["steps"][-1]["auc_row"],
            "merged": _was_peft(ex),
            "pooler_scale": EPS,
            "id2label": {str(k): v for k, v in ID2LABEL.items()},
            "max_length": ex.cfg.max_length,
            "parity_rows": int(len(ex.test)),
            "max_abs_logit_diff": diff,
            "test_auc": float(roc_auc_score(labels, margin)) if len(set(labels)) == 2 else None,
            "frkit_git_revision": git_revision(),
            "run_git_revisions": _run_revisions(run_dir),
            "onnx": None,
        }
        if onnx:
            info["onnx"] = export_onnx(loaded, tok, build / ONNX_FILE, ex.test)
        atomic.write_text(build / "README.md", model_card(ex, info))
        atomic.write_json(build / INFO_FILE, info)
        atomic.replace_dir(build, out_dir)
    log.info("exported %s / %s to %s (max |logit diff| %.2e)", run_dir, marketplace, out_dir, diff)
    return info


def _was_peft(ex: Exportable) -> bool:
    return ex.cfg.method in (
        "lora",
        "dora",
        "fr_lora",
        "fr_dora",
        "lora_stacking",
        "o_lora",
    ) or ex.cfg.method.startswith("lora_merge")
