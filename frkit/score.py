"""Score a file of pairs: ``frkit score (RUN_DIR --marketplace NAME | EXPORTED_DIR) PAIRS_FILE -o SCORES.csv``.

The pairs file is a CSV / TSV / Parquet / JSONL table read as the ``table`` data source reads its files
(``frkit/data/table.py``), with the same ``columns:`` mapping (our name -> the file's column: id, text_a, text_b,
optionally label). The whole file is checked before any scoring: an unreadable file, a missing column, an empty
text or a bad label is refused naming the file, the data row (counting from 1 after the header) and the column.

Rows are tokenised once, sorted by length and cut into batches (a batch costs as much as its longest pair), scored
under bf16 autocast where the device runs it fast (``frkit/precision.py``; the head in fp32, as frkit scores), and put
back in file order. The output holds the input's id, ``score`` (the relevance logit margin logit[1] - logit[0]) and
the label where the input has one; it is written atomically (an existing output is replaced only when complete).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn

from frkit import atomic
from frkit.errors import FrkitInputError
from frkit.precision import autocast, resolve_precision

log = logging.getLogger(__name__)

REQUIRED = ("id", "text_a", "text_b")
OUTPUT_SUFFIXES = (".csv", ".tsv", ".parquet", ".jsonl")
DEFAULT_MAX_LENGTH = 512


def parse_columns(items: list[str] | Mapping[str, str] | None) -> dict[str, str]:
    """``["id=qid", "text_a=query", ...]`` (or a mapping) as {our name: the file's column}; unnamed keys keep our
    name."""
    if items is None:
        return {}
    if isinstance(items, Mapping):
        pairs = dict(items)
    else:
        pairs = {}
        for item in items:
            key, sep, value = item.partition("=")
            if not sep or not key or not value:
                raise FrkitInputError(f"--columns {item!r}: expected KEY=COLUMN, e.g. text_a=query")
            pairs[key.strip()] = value.strip()
    unknown = [k for k in pairs if k not in REQUIRED + ("label",)]
    if unknown:
        raise FrkitInputError(f"--columns: unknown key(s) {unknown}; expected some of {list(REQUIRED) + ['label']}")
    return pairs


def read_pairs(file: str | Path, columns: Mapping[str, str] | None = None) -> pd.DataFrame:
    """(id, text_a, text_b[, label]) from ``file``, every row checked; a problem names file, data row and column."""
    from frkit.data.table import read_table
    from frkit.data.validate import map_labels, require_columns

    file = Path(file)
    mapping = {k: k for k in REQUIRED + ("label",)}
    mapping.update(columns or {})
    raw = read_table(file, "pairs")
    where = f"pairs file {file}"
    require_columns(raw.columns, [mapping[c] for c in REQUIRED], where)
    has_label = mapping["label"] in raw.columns
    if columns and "label" in columns and not has_label:
        require_columns(raw.columns, [mapping["label"]], where)
    if len(raw) == 0:
        raise FrkitInputError(f"{where}: no data rows; expected at least one pair")
    out = pd.DataFrame(index=range(len(raw)))
    for key in REQUIRED:
        values = raw[mapping[key]].reset_index(drop=True)
        missing = values.isna().to_numpy()
        text = values.where(~missing, "").astype(str)
        bad = missing | (text.str.strip() == "").to_numpy()
        if bad.any():
            row = int(bad.nonzero()[0][0]) + 1
            what = "id" if key == "id" else "text"
            raise FrkitInputError(
                f"{where}: data row {row} (counting from 1 after the header), column "
                f"{mapping[key]!r}: empty or missing {what} ({int(bad.sum())} such row(s) in all); "
                f"expected non-empty {what}"
            )
        out[key] = text.to_numpy()
    if pd.api.types.is_float_dtype(raw[mapping["id"]]) and (raw[mapping["id"]] % 1 == 0).all():
        out["id"] = raw[mapping["id"]].astype("int64").astype(str).to_numpy()
    if has_label:
        labels = raw[mapping["label"]].reset_index(drop=True)
        try:
            out["label"] = map_labels(labels, where, mapping["label"]).to_numpy()
        except FrkitInputError as err:
            from frkit.data.validate import LABEL_SETS, _label_key

            ok = labels.astype(object).map(_label_key).isin(list(LABEL_SETS["any"][0])).to_numpy()
            row = int((~ok).nonzero()[0][0]) + 1
            raise FrkitInputError(f"{err} (first at data row {row}, counting from 1 after the header)") from None
    return out


# --------------------------------------------------------------------------- the model


class _Fp32(nn.Module):
    """Runs ``inner`` in fp32 outside autocast: the head, as frkit scores (scores keep their resolution)."""

    def __init__(self, inner: nn.Module, device_type: str):
        super().__init__()
        self.inner, self.device_type = inner, device_type

    def forward(self, x):
        with torch.autocast(self.device_type, enabled=False):
            return self.inner(x.float())


def load_scorer(source: str | Path, marketplace: str | None = None):
    """(HF sequence classifier, tokenizer, max_length, columns of the run or {}) from an exported folder or a run."""
    source = Path(source)
    if marketplace is not None:
        from frkit.export import prepare

        ex = prepare(source, marketplace)
        return ex.model, ex.tokenizer, ex.cfg.max_length, dict(ex.cfg.columns or {})
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from frkit.models.encoder import check_model_folder

    check_model_folder(source, str(source))
    try:
        model = AutoModelForSequenceClassification.from_pretrained(str(source))
        tokenizer = AutoTokenizer.from_pretrained(str(source))
    except (OSError, ValueError) as err:
        raise FrkitInputError(f"{source}: not a sequence-classification model folder: {err}") from None
    if model.config.num_labels != 2:
        raise FrkitInputError(
            f"{source}: the model has {model.config.num_labels} label(s); frkit scores 2-label "
            "(not relevant / relevant) classifiers, as frkit export writes them"
        )
    limit = getattr(model.config, "max_position_embeddings", DEFAULT_MAX_LENGTH)
    max_length = min(tokenizer.model_max_length or DEFAULT_MAX_LENGTH, limit, DEFAULT_MAX_LENGTH * 64)
    return model.float().eval(), tokenizer, max_length, {}


def _head_in_fp32(model: nn.Module, device_type: str) -> None:
    from frkit.export import ARCHITECTURES

    entry = ARCHITECTURES.get(getattr(model.config, "model_type", None))
    if entry is None:
        return
    for key in (entry[2], entry[3]):  # the pooler's dense layer and the classifier
        parent, _, child = key.rpartition(".")
        holder = model.get_submodule(parent) if parent else model
        setattr(holder, child, _Fp32(getattr(holder, child), device_type))


@torch.no_grad()
def margins(
    model,
    tokenizer,
    table: pd.DataFrame,
    max_length: int,
    batch_size: int = 64,
    precision: str = "fp32",
    device: torch.device | None = None,
    show_progress: bool = True,
) -> np.ndarray:
    """logit[1] - logit[0] for every row of ``table``, in table order (length-sorted batches)."""
    from tqdm.auto import tqdm

    device = device or torch.device("cpu")
    enc = tokenizer(table["text_a"].tolist(), table["text_b"].tolist(), truncation=True, max_length=max_length)
    keys = [k for k in ("input_ids", "attention_mask", "token_type_ids") if k in enc]
    lengths = np.array([len(x) for x in enc["input_ids"]])
    order = np.argsort(-lengths, kind="stable")
    out = np.zeros(len(table), dtype=np.float32)
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    for rows in tqdm(batches, desc="scoring", unit="batch", disable=not show_progress):
        batch = tokenizer.pad({k: [enc[k][i] for i in rows] for k in keys}, return_tensors="pt")
        batch = {k: v.to(device) for k, v in batch.items()}
        with autocast(device, precision):
            logits = model(**batch).logits
        logits = logits.float().cpu()
        out[rows] = (logits[:, 1] - logits[:, 0]).numpy()
    return out


def score_file(
    source: str | Path,
    pairs_file: str | Path,
    out: str | Path,
    marketplace: str | None = None,
    columns: Mapping[str, str] | None = None,
    batch_size: int = 64,
    precision: str = "auto",
    max_length: int | None = None,
    show_progress: bool = True,
) -> pd.DataFrame:
    """Score ``pairs_file`` with an exported folder (or a run's ``marketplace``) and write ``out`` atomically."""
    out = Path(out)
    if out.suffix.lower() not in OUTPUT_SUFFIXES:
        raise FrkitInputError(
            f"-o {out}: unsupported extension {out.suffix!r}; expected one of {list(OUTPUT_SUFFIXES)}"
        )
    if batch_size < 1:
        raise FrkitInputError(f"--batch-size {batch_size}: expected a positive number")
    source = Path(source)
    if marketplace is None and (source / "params.yaml").is_file() and not (source / "config.json").is_file():
        raise FrkitInputError(f"{source} is a run folder: say which marketplace's model scores, --marketplace NAME")
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    precision = resolve_precision(precision, device)
    if marketplace is None:  # the file is checked before the (possibly slow) model is loaded
        table = read_pairs(pairs_file, parse_columns(columns))
    model, tokenizer, model_max, run_columns = load_scorer(source, marketplace)
    if marketplace is not None:
        table = read_pairs(pairs_file, parse_columns(columns) if columns else run_columns)
    model = model.to(device)
    if precision == "bf16":
        _head_in_fp32(model, device.type)
    scores = margins(model, tokenizer, table, max_length or model_max, batch_size, precision, device, show_progress)
    result = pd.DataFrame({"id": table["id"], "score": scores})
    if "label" in table:
        result["label"] = table["label"].to_numpy()
    _write(result, out)
    log.info("scored %d pairs of %s (%s) -> %s", len(result), pairs_file, precision, out)
    return result


def _write(frame: pd.DataFrame, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    suffix = out.suffix.lower()
    if suffix == ".csv":
        atomic.write_csv(out, frame, index=False)
    elif suffix == ".tsv":
        atomic.write_csv(out, frame, index=False, sep="\t")
    elif suffix == ".parquet":
        atomic.write_with(out, lambda p: frame.to_parquet(p, index=False))
    else:
        atomic.write_with(out, lambda p: frame.to_json(p, orient="records", lines=True, force_ascii=False))


__all__ = ["score_file", "read_pairs", "parse_columns", "margins", "load_scorer"]
