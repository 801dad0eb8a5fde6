"""``frkit export --onnx``: the exported model as ONNX, and its logits through onnxruntime."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import torch
from torch import nn

from frkit.errors import FrkitInputError
from frkit.export.hf_classifier import hf_logits

ONNX_FILE = "onnx/model.onnx"  # where sentence-transformers' and optimum's ONNX backends look


def _require_onnx() -> None:
    try:
        import onnx  # noqa: F401
    except ImportError:
        raise FrkitInputError('--onnx needs the onnx package: pip install -e ".[onnx]"') from None


class _Logits(nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, input_ids, attention_mask, token_type_ids):
        return self.model(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids).logits


def export_onnx(model, tokenizer, path: Path, test=None) -> dict:
    """``path``: the model as ONNX (torch.onnx's TorchScript exporter, opset 17, dynamic batch and length; eager
    attention so that padding masks trace as data); parity with onnxruntime on ``test`` where it is installed."""
    import warnings

    path.parent.mkdir(parents=True, exist_ok=True)
    eager = copy.deepcopy(model).float().eval()
    eager.config._attn_implementation = "eager"
    if hasattr(eager, "set_attn_implementation"):
        try:
            eager.set_attn_implementation("eager")
        except Exception:  # noqa: BLE001 - older transformers: the config attribute is enough
            pass
    enc = tokenizer(["a b c", "a"], ["b c d e", "b"], padding=True, return_tensors="pt")
    names = ["input_ids", "attention_mask", "token_type_ids"]
    if "token_type_ids" not in enc:
        enc["token_type_ids"] = torch.zeros_like(enc["input_ids"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            _Logits(eager).eval(),
            tuple(enc[n] for n in names),
            str(path),
            input_names=names,
            output_names=["logits"],
            opset_version=17,
            dynamo=False,
            dynamic_axes={**{n: {0: "batch", 1: "sequence"} for n in names}, "logits": {0: "batch"}},
        )
    out = {"file": ONNX_FILE, "opset": 17, "onnxruntime_max_abs_logit_diff": None}
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return out
    if test is not None and len(test):
        ref = hf_logits(model, tokenizer, test)
        got = onnx_logits(path, tokenizer, test)
        out["onnxruntime_max_abs_logit_diff"] = float(np.abs(ref - got).max())
    return out


def onnx_logits(path: Path, tokenizer, table, batch_size: int = 64) -> np.ndarray:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    out = []
    for start in range(0, len(table), batch_size):
        rows = table.iloc[start : start + batch_size]
        enc = tokenizer(
            rows["text_a"].tolist(), rows["text_b"].tolist(), truncation=True, padding=True, return_tensors="np"
        )
        feed = {n: enc[n].astype(np.int64) for n in ("input_ids", "attention_mask")}
        feed["token_type_ids"] = (
            enc["token_type_ids"].astype(np.int64) if "token_type_ids" in enc else np.zeros_like(feed["input_ids"])
        )
        out.append(session.run(["logits"], feed)[0])
    return np.concatenate(out) if out else np.zeros((0, 2), dtype=np.float32)
