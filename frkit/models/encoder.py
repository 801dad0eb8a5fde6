"""Load any Hugging Face encoder (Hub id, local folder, or the offline e5) and its tokenizer."""
from __future__ import annotations

import logging
from pathlib import Path

from transformers import AutoConfig, AutoModel, AutoTokenizer

from frkit.errors import FrkitInputError

log = logging.getLogger(__name__)


def load_tokenizer(source: str | Path):
    try:
        return AutoTokenizer.from_pretrained(str(source))
    except OSError as err:
        raise FrkitInputError(
            f"model_name_or_path {str(source)!r}: no tokenizer could be loaded (expected a Hub id, "
            f"or a local folder with tokenizer files): {err}"
        ) from None


def load_encoder(source: str | Path):
    """``AutoModel`` without the pooler (frkit pools itself; an unused pooler has no gradient)."""
    try:
        config = AutoConfig.from_pretrained(str(source))
    except OSError as err:
        raise FrkitInputError(
            f"model_name_or_path {str(source)!r}: no model config found (expected a Hub id or a local "
            f"folder with config.json): {err}"
        ) from None
    try:
        return AutoModel.from_pretrained(str(source), config=config, add_pooling_layer=False)
    except TypeError:  # architectures without a pooler option (e.g. DistilBERT)
        return AutoModel.from_pretrained(str(source), config=config)
