"""A trained marketplace leaves the kit: ``frkit export RUN_DIR --marketplace NAME OUT_DIR``.

OUT_DIR is an ordinary Hugging Face folder (config.json, model.safetensors, the tokenizer, a model card README.md)
that ``AutoModelForSequenceClassification`` / ``AutoTokenizer`` and ``sentence_transformers.CrossEncoder`` load
without frkit. A LoRA / DoRA method's active adapter(s) are merged into the base (fp32), so the exported model costs
exactly what the base encoder costs.

How frkit's head becomes HF's classifier
----------------------------------------
frkit scores ``heads[m](h_cls)``: a ``Linear(hidden, 2)`` on the last hidden state of the first token, no pooler.
HF's ``BertForSequenceClassification`` computes ``classifier(tanh(pooler.dense(h_cls)))`` (RoBERTa / XLM-R:
``out_proj(tanh(dense(h_cls)))``); the tanh cannot be switched off by config. The export sets the pooler's dense
layer to ``EPS * I`` (bias 0) and the classifier to ``W / EPS`` (bias ``b``) with ``EPS = 2**-20``: torch's fp32
``tanh(EPS * h) == EPS * h`` exactly for every hidden value |h| <= 256 (checked by the tests; 1 ulp off up to ~440,
relative error below 1e-6 up to 1000), and scaling by a power of two is exact, so ``W/EPS @ tanh(EPS * h) == W @ h``
product for product (what may differ is the summation order of a matmul kernel). The export checks this on the marketplace's test set before the folder appears
(``max_abs_logit_diff`` in frkit_export.json and the card). The model runs in fp32 or bf16; fp16 is not supported
(``W/EPS`` exceeds fp16's range).

``num_labels = 2``: logit 0 = "not relevant", logit 1 = "relevant", as frkit's head (its softmax[1] is frkit's
score). The relevance score that ranks is the margin ``logit[1] - logit[0]`` (what ``frkit score`` writes).

Only ``pooling: cls`` maps onto these classifiers (none of them mean-pools); other runs, and methods whose model is
not one plain encoder, are refused with one line naming the reason before anything is written.
"""
from __future__ import annotations

import copy
import json
import logging
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import yaml
from torch import nn

from frkit import atomic
from frkit.errors import FrkitInputError

log = logging.getLogger(__name__)

EPS = 2.0 ** -20  # pooler scale: tanh(EPS * h) == EPS * h exactly in fp32 for |h| <= 256 (module docstring)
PARITY_TOLERANCE = 1e-5  # largest |logit difference| an export may show against frkit's own model
ID2LABEL = {0: "not relevant", 1: "relevant"}
INFO_FILE = "frkit_export.json"
ONNX_FILE = "onnx/model.onnx"  # where sentence-transformers' and optimum's ONNX backends look

# model_type -> (sequence-classification class, base-model attribute, pooler dense key, classifier key)
ARCHITECTURES = {
    "bert": ("BertForSequenceClassification", "bert", "bert.pooler.dense", "classifier"),
    "roberta": ("RobertaForSequenceClassification", "roberta", "classifier.dense", "classifier.out_proj"),
    "xlm-roberta": ("XLMRobertaForSequenceClassification", "roberta", "classifier.dense", "classifier.out_proj"),
}

# methods whose scoring model is not one plain encoder + one head: why not
REFUSED = {
    "adapter": "its bottleneck adapters are extra modules inside every layer, which a plain encoder has no place for",
    "adapter_fusion": "it scores through adapters and a fusion layer inside every layer, not a plain encoder",
    "attention_distillation": "it scores through adapters and a fusion layer inside every layer, not a plain encoder",
    "hat": "its per-marketplace masks gate adapter units inside every layer, not a plain encoder",
    "b_cl": "its capsule adapters and task masks sit inside every layer, not a plain encoder",
    "ctr": "its capsule adapters, task masks and transfer routing sit inside every layer, not a plain encoder",
    "dytox": "it scores through a task-attention block and task tokens on top of the encoder, not a plain encoder",
    "prefix": "its learned prefix keys/values are prepended in every layer; they cannot be merged into the weights",
    "progressive_prefix": "its learned prefix keys/values are prepended in every layer; they cannot be merged into "
                          "the weights",
}


@dataclass
class Exportable:
    """One marketplace's model as a plain HF sequence classifier, and where it came from."""

    model: nn.Module  # a transformers *ForSequenceClassification, fp32, eval
    tokenizer: object
    frkit_model: nn.Module  # frkit's own CrossEncoder for this marketplace (merged), for the parity check
    head: str
    marketplace: str
    cfg: object
    record: object
    test: object  # the marketplace's test table
    info: dict = field(default_factory=dict)


def check_exportable(params: dict, marketplace: str, where: str) -> None:
    """The refusals that need only the run's params: said before any model is loaded."""
    method = params.get("method")
    if method in REFUSED:
        raise FrkitInputError(f"{where}: method {method!r} cannot be exported as a plain encoder: {REFUSED[method]}")
    if params.get("pooling", "cls") != "cls":
        raise FrkitInputError(f"{where}: pooling {params.get('pooling')!r} cannot be exported: Hugging Face's "
                              "sequence classifiers (and sentence-transformers' CrossEncoder) pool the first token "
                              "only; export runs trained with pooling: cls")
    names = list(params.get("marketplaces") or [])
    if marketplace not in names:
        raise FrkitInputError(f"{where}: --marketplace {marketplace!r} is not one of the run's marketplaces {names}")


def _load_method(run_dir: Path):
    from frkit.reload import load_method

    return load_method(run_dir)


def _active_lora_adapters(encoder, method: str) -> list[str]:
    from peft import LoraConfig

    active = encoder.active_adapters if hasattr(encoder, "active_adapters") else [encoder.active_adapter]
    active = [active] if isinstance(active, str) else list(active)
    for name in active:
        config = encoder.peft_config[name]
        if not isinstance(config, LoraConfig):
            raise FrkitInputError(f"method {method!r} cannot be exported as a plain encoder: its adapter {name!r} is "
                                  f"{type(config).__name__}, not a LoRA / DoRA that merges into the weights")
    return active


def _merged_encoder(encoder: nn.Module, method: str) -> nn.Module:
    """A plain transformers encoder: peft's active LoRA / DoRA adapter(s) merged in fp32 (several active LoRAs, as
    LoRA stacking scores, sum in every layer: merging them all is the same function)."""
    from peft import PeftModel
    from transformers import PreTrainedModel

    if isinstance(encoder, PeftModel):
        active = _active_lora_adapters(encoder, method)
        encoder = copy.deepcopy(encoder).to(torch.float32)
        encoder.base_model.set_adapter(active)
        encoder = encoder.merge_and_unload(adapter_names=active)
    else:
        encoder = copy.deepcopy(encoder).to(torch.float32)
    if not isinstance(encoder, PreTrainedModel):
        raise FrkitInputError(f"method {method!r} cannot be exported as a plain encoder: its encoder is a "
                              f"{type(encoder).__name__}, not a Hugging Face model")
    foreign = sorted({type(m).__module__ + "." + type(m).__name__ for m in encoder.modules()
                      if not type(m).__module__.startswith(("transformers.", "torch.nn."))})
    hooked = [n for n, m in encoder.named_modules() if m._forward_hooks or m._forward_pre_hooks]
    if foreign or hooked:
        raise FrkitInputError(f"method {method!r} cannot be exported as a plain encoder: its encoder holds "
                              f"{'modules ' + ', '.join(foreign[:3]) if foreign else 'forward hooks on ' + ', '.join(hooked[:3])}"
                              " that a plain Hugging Face model lacks")
    return encoder.eval()


def to_sequence_classifier(encoder: nn.Module, head: nn.Linear, method: str = "?") -> nn.Module:
    """``encoder`` (plain, fp32) + frkit's 2-logit ``head`` as an HF ``*ForSequenceClassification`` computing the same
    logits (module docstring)."""
    import transformers

    config = copy.deepcopy(encoder.config)
    model_type = getattr(config, "model_type", None)
    if model_type not in ARCHITECTURES:
        raise FrkitInputError(f"method {method!r}: encoder type {model_type!r} has no exact mapping onto a Hugging Face "
                              f"sequence classifier here (supported: {sorted(ARCHITECTURES)})")
    cls_name, base_attr, dense_key, classifier_key = ARCHITECTURES[model_type]
    config.architectures = [cls_name]
    config.num_labels = 2
    config.id2label = dict(ID2LABEL)
    config.label2id = {v: k for k, v in ID2LABEL.items()}
    config.problem_type = "single_label_classification"
    config.classifier_dropout = None
    model = getattr(transformers, cls_name)(config)
    missing, unexpected = getattr(model, base_attr).load_state_dict(encoder.state_dict(), strict=False)
    missing = [k for k in missing if not k.startswith("pooler.")]
    if missing or unexpected:
        raise FrkitInputError(f"method {method!r}: the encoder's weights do not fit {cls_name} (missing {missing[:3]}, "
                              f"unexpected {unexpected[:3]})")
    hidden = config.hidden_size
    dense, classifier = model.get_submodule(dense_key), model.get_submodule(classifier_key)
    with torch.no_grad():
        dense.weight.copy_(torch.eye(hidden) * EPS)
        dense.bias.zero_()
        classifier.weight.copy_(head.weight.detach().float().cpu() / EPS)
        classifier.bias.copy_(head.bias.detach().float().cpu())
    return model.float().eval()


def prepare(run_dir: str | Path, marketplace: str) -> Exportable:
    """Load the run's method and build ``marketplace``'s model as an HF sequence classifier (in memory)."""
    from frkit.records import load_run
    from frkit.models.cross_encoder import CrossEncoder

    run_dir = Path(run_dir)
    record = load_run(run_dir)
    check_exportable(record.params, marketplace, str(run_dir))
    cfg, method, _ = _load_method(run_dir)
    if marketplace not in method.learned:
        raise FrkitInputError(f"{run_dir}: marketplace {marketplace!r} is not learned yet in its latest checkpoint "
                              f"(learned: {method.learned}); finish the run (frkit run) first")
    model, head = method.model_for(marketplace)
    if type(model) is not CrossEncoder:
        raise FrkitInputError(f"method {cfg.method!r} cannot be exported as a plain encoder: it scores with a "
                              f"{type(model).__name__}, not frkit's CrossEncoder (an encoder and a head)")
    encoder = _merged_encoder(model.encoder, cfg.method)
    frkit_model = CrossEncoder(encoder, model.hidden_size, model.pooling)
    frkit_model.heads[head] = copy.deepcopy(model.heads[head]).float().cpu()
    frkit_model = frkit_model.cpu().float().eval()
    hf_model = to_sequence_classifier(encoder, model.heads[head], cfg.method)
    tokenizer = copy.deepcopy(method.ctx.tokenizer)
    tokenizer.model_max_length = cfg.max_length  # truncation=True cuts where frkit cut
    test = next(m for m in _marketplaces(cfg) if m.name == marketplace).test
    return Exportable(hf_model, tokenizer, frkit_model, head, marketplace, cfg, record, test)


def _marketplaces(cfg):
    from frkit.runner import load_configured_marketplaces

    return load_configured_marketplaces(cfg)


@torch.no_grad()
def frkit_logits(frkit_model, tokenizer, table, head: str, max_length: int, batch_size: int = 64) -> np.ndarray:
    """frkit's own logits (fp32) on a pair table, in table order."""
    out = []
    for start in range(0, len(table), batch_size):
        rows = table.iloc[start:start + batch_size]
        enc = tokenizer(rows["text_a"].tolist(), rows["text_b"].tolist(), truncation=True, max_length=max_length,
                        padding=True, return_tensors="pt")
        out.append(frkit_model(**enc, head=head).float().numpy())
    return np.concatenate(out) if out else np.zeros((0, 2), dtype=np.float32)


@torch.no_grad()
def hf_logits(model, tokenizer, table, batch_size: int = 64) -> np.ndarray:
    """An exported model's logits (as loaded by transformers) on a pair table, in table order."""
    out = []
    for start in range(0, len(table), batch_size):
        rows = table.iloc[start:start + batch_size]
        enc = tokenizer(rows["text_a"].tolist(), rows["text_b"].tolist(), truncation=True, padding=True,
                        return_tensors="pt")
        out.append(model(**enc).logits.float().numpy())
    return np.concatenate(out) if out else np.zeros((0, 2), dtype=np.float32)


def model_card(ex: Exportable, info: dict) -> str:
    steps = ex.record.progress["steps"]
    names = list(ex.record.params["marketplaces"])
    last = steps[-1]
    row = "| " + " | ".join(names) + " |\n|" + "---|" * len(names) + "\n| " + " | ".join(
        "" if x is None else f"{x:.4f}" for x in last["auc_row"]) + " |"
    params = yaml.safe_dump(ex.record.params, sort_keys=True).strip()
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
- **kit revision (export):** `{info["frkit_git_revision"]}`; run's revision(s): {info["run_git_revisions"] or "not recorded"}
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


def _check_out_dir(out_dir: Path, overwrite: bool) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise FrkitInputError(f"output {out_dir} is a file; expected a folder to create")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not overwrite:
        raise FrkitInputError(f"output folder {out_dir} exists and is not empty; choose a new folder, or pass "
                              "--overwrite to replace it (the old one stays until the new one is complete)")


def export(run_dir: str | Path, marketplace: str, out_dir: str | Path, onnx: bool = False,
           overwrite: bool = False) -> dict:
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
            raise FrkitInputError(f"{run_dir}: the exported {marketplace} model's logits differ from frkit's by up to "
                                  f"{diff:.3g} (> {PARITY_TOLERANCE:g}); nothing was written to {out_dir}")
        margin = theirs[:, 1] - theirs[:, 0]
        labels = ex.test["label"].to_numpy()
        info = {
            "run_dir": str(run_dir), "method": ex.cfg.method, "marketplace": marketplace, "head": ex.head,
            "marketplaces": list(ex.record.params["marketplaces"]),
            "auc_row": ex.record.progress["steps"][-1]["auc_row"],
            "merged": _was_peft(ex), "pooler_scale": EPS, "id2label": {str(k): v for k, v in ID2LABEL.items()},
            "max_length": ex.cfg.max_length, "parity_rows": int(len(ex.test)), "max_abs_logit_diff": diff,
            "test_auc": float(roc_auc_score(labels, margin)) if len(set(labels)) == 2 else None,
            "frkit_git_revision": git_revision(), "run_git_revisions": _run_revisions(run_dir),
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
    return ex.cfg.method in ("lora", "dora", "fr_lora", "fr_dora", "lora_stacking", "o_lora") or \
        ex.cfg.method.startswith("lora_merge")


# --------------------------------------------------------------------------- ONNX

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
        torch.onnx.export(_Logits(eager).eval(), tuple(enc[n] for n in names), str(path), input_names=names,
                          output_names=["logits"], opset_version=17, dynamo=False,
                          dynamic_axes={**{n: {0: "batch", 1: "sequence"} for n in names}, "logits": {0: "batch"}})
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
        rows = table.iloc[start:start + batch_size]
        enc = tokenizer(rows["text_a"].tolist(), rows["text_b"].tolist(), truncation=True, padding=True,
                        return_tensors="np")
        feed = {n: enc[n].astype(np.int64) for n in ("input_ids", "attention_mask")}
        feed["token_type_ids"] = enc["token_type_ids"].astype(np.int64) if "token_type_ids" in enc else \
            np.zeros_like(feed["input_ids"])
        out.append(session.run(["logits"], feed)[0])
    return np.concatenate(out) if out else np.zeros((0, 2), dtype=np.float32)


__all__ = ["export", "prepare", "to_sequence_classifier", "check_exportable", "hf_logits", "frkit_logits",
           "onnx_logits", "REFUSED", "EPS", "ID2LABEL"]
