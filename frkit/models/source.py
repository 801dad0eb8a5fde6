"""Where the encoder comes from: a Hub id, a local folder, or the offline e5 built from PyPI wheels,
optionally trimmed to the vocabulary the configured marketplaces use.

``resolve_model_source`` is the one function that turns the params' ``model_name_or_path`` into what
``from_pretrained`` accepts; ``prepare_model_source`` adds the checks of a local folder and the trimming.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from frkit.data.marketplace import Marketplace
from frkit.errors import FrkitInputError
from frkit.models.offline_e5 import OFFLINE_E5, ensure_offline_e5
from frkit.paths import cache_root, resolve

log = logging.getLogger(__name__)


def resolve_model_source(name_or_path: str | os.PathLike) -> str | Path:
    """The params' ``model_name_or_path`` as ``from_pretrained`` takes it.

    ``OFFLINE_E5`` becomes the folder :func:`ensure_offline_e5` builds (once) from the wheels; a relative folder that
    exists under the project root becomes that folder (``frkit.paths``); Hub ids ("org/name") and absolute paths are
    returned unchanged. Another ``offline:`` name is refused, naming the key.
    """
    name = str(name_or_path)
    if name == OFFLINE_E5:
        return ensure_offline_e5()
    if name.startswith("offline:"):
        raise FrkitInputError(
            f"key 'model_name_or_path': unknown offline model {name!r}; "
            f"expected {OFFLINE_E5!r}, a Hub id or a local model folder"
        )
    if Path(name).is_absolute():
        return name
    local = resolve(name)
    return str(local) if local.is_dir() else name


def marketplace_texts(marketplaces: list[Marketplace], with_corpora: bool = False):
    """Every (text_a, text_b) pair of every split: what the trimmed vocabulary must cover. ``with_corpora``: also the
    parallel corpora where a method looks translations up (Attention Distillation trains on D_t's pairs in older
    languages, which are in no marketplace's own split when shares are disjoint)."""
    for m in marketplaces:
        corpora = [m.parallel_corpus, *(m.translations or {}).values()] if with_corpora else []
        for table in (m.train, m.validation, m.test, *(c for c in corpora if c is not None)):
            yield from zip(table["text_a"], table["text_b"])


def looks_local(name: str) -> bool:
    """A folder, not a Hub id: it exists, or it is written as a path (absolute, ./, ../, ~, or more than org/name)."""
    return (
        Path(name).expanduser().exists()
        or Path(name).is_absolute()
        or name.startswith(("./", "../", "~", ".\\"))
        or name.count("/") > 1
    )


def prepare_model_source(cfg, marketplaces: list[Marketplace], with_corpora: bool = False) -> Path | str:
    """The folder (or Hub id) the run loads: :func:`resolve_model_source`, a local folder checked for its files, and
    with ``trim_vocab`` a copy trimmed to the marketplaces' vocabulary (cached); ``with_corpora`` for a method that
    looks translations up (``Method.looks_up_translations``)."""
    from frkit.models.encoder import check_model_folder

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
        return trimmed_model_dir(source, list(marketplace_texts(marketplaces, with_corpora)), cache_root() / "trimmed")
    except NotImplementedError as err:
        log.warning("vocabulary not trimmed: %s", err)
        return source
