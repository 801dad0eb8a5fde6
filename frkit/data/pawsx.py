"""PAWS-X in the release's layout: ``<path>/<lang>/{translated_train|train,dev_2k,test_2k}.tsv``.

The languages are parallel (one id = one English pair and its translations), so the split is made
on ids for all languages at once: the same ids go to validation everywhere, and no id that is in
any selected language's test set is trained on in another language.
"""
from __future__ import annotations

import csv
import logging
from pathlib import Path

import pandas as pd

from frkit.data.marketplace import COLUMNS, Marketplace
from frkit.data.split import carve_validation
from frkit.data.table import to_pairs
from frkit.data.validate import require_dir, require_file
from frkit.errors import FrkitInputError

log = logging.getLogger(__name__)

LANGUAGES = ("en", "es", "ja", "de", "fr", "ko", "zh")
TRAIN_FILES = ("translated_train.tsv", "train.tsv")  # English in the release has train.tsv
DEV_FILE = "dev_2k.tsv"
TEST_FILE = "test_2k.tsv"
PLACEHOLDER = "NS"  # the release's text for "no translation"
RAW_COLUMNS = {"id": "id", "text_a": "sentence1", "text_b": "sentence2", "label": "label"}


def drop_placeholders(raw: pd.DataFrame, where: str, also_empty: bool = False) -> pd.DataFrame:
    """Drop rows whose sentence1 or sentence2 is the NS placeholder (optionally also empty), logging how many."""
    bad = pd.Series(False, index=raw.index)
    for col in ("sentence1", "sentence2"):
        if col in raw:
            text = raw[col].astype(object).map(lambda v: v.strip() if isinstance(v, str) else v)
            bad |= text == PLACEHOLDER
            if also_empty:
                bad |= text.isna() | (text == "")
    log.info("%s: dropped %d of %d rows with a %r placeholder", where, int(bad.sum()), len(raw), PLACEHOLDER)
    return raw[~bad]


def read_pawsx_file(file: Path, what: str) -> pd.DataFrame:
    """One TSV as pairs. Quoting is off because sentences contain unbalanced quotes (``'' G ``)."""
    file = require_file(file, what)
    try:
        raw = pd.read_csv(file, sep="\t", quoting=csv.QUOTE_NONE, dtype=str, keep_default_na=False)
    except (ValueError, OSError) as err:
        raise FrkitInputError(f"PAWS-X file {file} could not be read as TSV: {err}") from err
    return to_pairs(drop_placeholders(raw, str(file)), RAW_COLUMNS, f"PAWS-X file {file}", labels="binary")


def resolve_train_file(folder: Path, train_file: str) -> Path:
    """"auto": translated_train.tsv / train.tsv where present, else dev_2k.tsv; otherwise the named file."""
    if train_file != "auto":
        return folder / train_file
    for name in TRAIN_FILES:
        if (folder / name).is_file():
            return folder / name
    return folder / DEV_FILE


def parallel_marketplaces(raw: dict[str, tuple[pd.DataFrame, pd.DataFrame]], *, validation_fraction: float,
                          seed: int, source: str) -> list[Marketplace]:
    """{lang: (train, test)} -> marketplaces, split on ids consistently across languages.

    Ids in ANY language's test set are dropped from every language's train before validation is
    carved, so a pair seen in test for one language is never learned in another.
    """
    test_ids = set().union(*(set(test["id"]) for _, test in raw.values()))
    out = []
    for lang, (train, test) in raw.items():
        leaked = train["id"].isin(test_ids)
        log.info("%s %s: dropped %d train rows whose pair id is in a selected language's test set",
                 source, lang, int(leaked.sum()))
        train, validation = carve_validation(train[~leaked], validation_fraction, seed)
        out.append(Marketplace(name=lang, language=lang, train=train[list(COLUMNS)],
                               validation=validation[list(COLUMNS)], test=test[list(COLUMNS)].reset_index(drop=True)))
    return out


def load_pawsx(path: str | Path, langs: list[str], *, train_file: str = "auto", validation_fraction: float = 0.2,
               seed: int = 0) -> list[Marketplace]:
    """PAWS-X marketplaces in the order of ``langs`` (codes among LANGUAGES, checked by the caller)."""
    root = require_dir(Path(path), "PAWS-X release (x-final)")
    raw = {}
    for lang in langs:
        folder = require_dir(root / lang, f"PAWS-X language {lang!r}")
        train = read_pawsx_file(resolve_train_file(folder, train_file), f"PAWS-X {lang} train")
        test = read_pawsx_file(folder / TEST_FILE, f"PAWS-X {lang} test")
        raw[lang] = (train, test)
    return parallel_marketplaces(raw, validation_fraction=validation_fraction, seed=seed, source="PAWS-X")
