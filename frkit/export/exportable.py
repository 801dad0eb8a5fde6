"""A run's marketplace loaded as an in-memory HF sequence classifier (``prepare``), and the refusals said first."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path

from torch import nn

from frkit.errors import FrkitInputError
from frkit.export.hf_classifier import _merged_encoder, to_sequence_classifier

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
        raise FrkitInputError(
            f"{where}: pooling {params.get('pooling')!r} cannot be exported: Hugging Face's "
            "sequence classifiers (and sentence-transformers' CrossEncoder) pool the first token "
            "only; export runs trained with pooling: cls"
        )
    names = list(params.get("marketplaces") or [])
    if marketplace not in names:
        raise FrkitInputError(f"{where}: --marketplace {marketplace!r} is not one of the run's marketplaces {names}")


def _load_method(run_dir: Path):
    from frkit.reload import load_method

    return load_method(run_dir)


def prepare(run_dir: str | Path, marketplace: str) -> Exportable:
    """Load the run's method and build ``marketplace``'s model as an HF sequence classifier (in memory)."""
    from frkit.models.cross_encoder import CrossEncoder
    from frkit.records import load_run

    run_dir = Path(run_dir)
    record = load_run(run_dir)
    check_exportable(record.params, marketplace, str(run_dir))
    cfg, method, _ = _load_method(run_dir)
    if marketplace not in method.learned:
        raise FrkitInputError(
            f"{run_dir}: marketplace {marketplace!r} is not learned yet in its latest checkpoint "
            f"(learned: {method.learned}); finish the run (frkit run) first"
        )
    model, head = method.model_for(marketplace)
    if type(model) is not CrossEncoder:
        raise FrkitInputError(
            f"method {cfg.method!r} cannot be exported as a plain encoder: it scores with a "
            f"{type(model).__name__}, not frkit's CrossEncoder (an encoder and a head)"
        )
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
