"""Where the encoder comes from: a Hub id, a local folder, or the offline e5 built from PyPI wheels,
optionally trimmed to the vocabulary the configured marketplaces use."""
from __future__ import annotations

import logging
import os
from pathlib import Path

from frkit.data.marketplace import Marketplace

log = logging.getLogger(__name__)


def cache_root() -> Path:
    return Path(os.environ.get("FRKIT_CACHE", Path.home() / ".cache" / "frkit"))


def marketplace_texts(marketplaces: list[Marketplace]):
    """Every (text_a, text_b) pair of every split: what the trimmed vocabulary must cover."""
    for m in marketplaces:
        for table in (m.train, m.validation, m.test):
            yield from zip(table["text_a"], table["text_b"])


def looks_local(name: str) -> bool:
    """A folder, not a Hub id: it exists, or it is written as a path (absolute, ./, ../, ~, or more than org/name)."""
    return (Path(name).expanduser().exists() or Path(name).is_absolute()
            or name.startswith(("./", "../", "~", ".\\")) or name.count("/") > 1)


def prepare_model_source(cfg, marketplaces: list[Marketplace]) -> Path | str:
    from frkit.models.encoder import check_model_folder
    from frkit.models.offline_e5 import resolve_model_source

    source = resolve_model_source(cfg.model_name_or_path)
    if looks_local(str(source)):
        check_model_folder(source, cfg.model_name_or_path)
    if not cfg.trim_vocab:
        return source
    if not Path(source).is_dir():
        log.warning("trim_vocab needs a local model folder; %s is a Hub id, so the full vocabulary is used", source)
        return source
    from frkit.models.vocab_trim import trimmed_model_dir

    try:
        return trimmed_model_dir(source, list(marketplace_texts(marketplaces)), cache_root() / "trimmed")
    except NotImplementedError as err:
        log.warning("vocabulary not trimmed: %s", err)
        return source
