"""Load any Hugging Face encoder (Hub id, local folder, or the offline e5) and its tokenizer."""

from __future__ import annotations

import logging
from pathlib import Path

from safetensors import SafetensorError
from transformers import AutoConfig, AutoModel, AutoTokenizer

from frkit.errors import FrkitInputError

log = logging.getLogger(__name__)


WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)
TOKENIZER_FILES = (
    "tokenizer.json",
    "vocab.txt",
    "vocab.json",
    "sentencepiece.bpe.model",
    "spiece.model",
    "tokenizer.model",
)


def check_model_folder(source: str | Path, given: str | None = None) -> None:
    """A local model folder must hold config.json, weights and tokenizer files: said before any is loaded."""
    folder = Path(source)
    key = f"model_name_or_path {given or str(source)!r}"
    if not folder.exists():
        raise FrkitInputError(
            f"{key}: model folder {folder} does not exist; expected a Hub id (org/name), a local "
            "model folder or 'offline:multilingual-e5-small'"
        )
    if not folder.is_dir():
        raise FrkitInputError(f"{key}: {folder} is a file; expected a model folder (config.json, weights, tokenizer)")
    found = sorted(p.name for p in folder.iterdir())
    missing = [
        what
        for what, names in (
            ("config.json", ("config.json",)),
            (f"weights (one of {list(WEIGHT_FILES)})", WEIGHT_FILES),
            (f"tokenizer files (one of {list(TOKENIZER_FILES)})", TOKENIZER_FILES),
        )
        if not any((folder / n).is_file() for n in names)
    ]
    if missing:
        raise FrkitInputError(
            f"{key}: model folder {folder} lacks {'; '.join(missing)}; it holds {found if found else 'nothing'}"
        )


def load_tokenizer(source: str | Path):
    try:
        return AutoTokenizer.from_pretrained(str(source))
    except (OSError, ValueError) as err:
        raise FrkitInputError(
            f"model_name_or_path {str(source)!r}: no tokenizer could be loaded (expected a Hub id, "
            f"or a local folder with tokenizer files): {err}"
        ) from None


def load_encoder(source: str | Path):
    """``AutoModel`` without the pooler (frkit pools itself; an unused pooler has no gradient)."""
    try:
        config = AutoConfig.from_pretrained(str(source))
    except (OSError, ValueError) as err:
        raise FrkitInputError(
            f"model_name_or_path {str(source)!r}: no model config found (expected a Hub id or a local "
            f"folder with config.json): {err}"
        ) from None
    try:
        try:
            return AutoModel.from_pretrained(str(source), config=config, add_pooling_layer=False)
        except TypeError:  # architectures without a pooler option (e.g. DistilBERT)
            return AutoModel.from_pretrained(str(source), config=config)
    except (OSError, ValueError, RuntimeError, SafetensorError) as err:  # truncated / foreign weight files
        raise FrkitInputError(
            f"model_name_or_path {str(source)!r}: the weights could not be loaded "
            f"({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''})"
        ) from None
