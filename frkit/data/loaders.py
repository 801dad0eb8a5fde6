"""The single entry point: ``load_marketplaces`` for every source, validated, in the requested order."""

from __future__ import annotations

import logging
from pathlib import Path

from frkit.data.esci import LOCALES, load_esci
from frkit.data.hub import KNOWN_NAMES, load_hub, resolve_hub
from frkit.data.marketplace import Marketplace
from frkit.data.multi_source import load_mixed
from frkit.data.parallel import parallel_marketplaces
from frkit.data.pawsx import LANGUAGES, load_pawsx
from frkit.data.split import subsample_marketplaces
from frkit.data.stsb import load_stsb_raw
from frkit.data.table import load_tables
from frkit.data.validate import check_marketplaces, check_names, check_source
from frkit.errors import FrkitInputError

log = logging.getLogger(__name__)


def _check_options(
    source: str, path, train_file, validation_fraction, tables, columns, limits: dict, source_paths=None
) -> None:
    """Option values and combinations, checked before any file is opened."""
    if not isinstance(validation_fraction, (int, float)) or not 0 < validation_fraction < 1:
        raise FrkitInputError(f"validation_fraction must be a number in (0, 1), got {validation_fraction!r}")
    for key, value in limits.items():
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value <= 0):
            raise FrkitInputError(f"{key} must be a positive integer or None, got {value!r}")
    if not isinstance(train_file, str) or not train_file:
        raise FrkitInputError(f"train_file must be 'auto' or a file name, got {train_file!r}")
    if train_file != "auto" and source in ("esci", "table", "stsb"):
        raise FrkitInputError(f"train_file={train_file!r} applies to sources 'pawsx' and 'hub', not {source!r}")
    if (tables or columns) and source != "table":
        raise FrkitInputError(f"tables/columns apply to source 'table' only, not {source!r}")
    if source_paths and source != "mixed":
        raise FrkitInputError(f"source_paths applies to source 'mixed' only, not {source!r}; use data_path")
    if source in ("pawsx", "stsb", "esci") and not path:
        raise FrkitInputError(f"source {source!r} needs path (the folder holding the release's files)")


def load_marketplaces(
    source: str,
    path: str | Path | None,
    marketplaces: list[str],
    *,
    train_file: str = "auto",
    validation_fraction: float = 0.2,
    small_version: bool = True,
    tables: dict | None = None,
    columns: dict | None = None,
    max_train: int | None = None,
    max_validation: int | None = None,
    max_test: int | None = None,
    seed: int = 0,
    hub_kind: str | None = None,
    parallel_pairs: str = "disjoint",
    stsb_threshold: float = 3.0,
    source_paths: dict[str, str | Path] | None = None,
) -> list[Marketplace]:
    """Load, split, subsample and validate the marketplaces, returned in the order of ``marketplaces``.

    source: "pawsx" (release folder x-final, names = language codes), "stsb" (stsb_multi_mt's data folder,
        names = language codes; label = score >= ``stsb_threshold``), "esci" (folder with the two
        official parquet files, names = locales us/es/jp), "table" (``tables`` + ``columns``, paths
        relative to ``path``), "hub" (``path`` = dataset id; ``hub_kind`` "pawsx"/"esci" when the id
        does not say).
    train_file: pawsx: "auto" (translated_train.tsv / train.tsv, else dev_2k.tsv) or a file name;
        hub: "auto" (the "train" split) or a split name.
    small_version: esci: keep only the release's small_version == 1 rows (the reduced Task 1 set).
    max_train / max_validation / max_test: stratified, seeded subsample per marketplace after splitting;
        for parallel data (PAWS-X, STS-B) the same pair ids are taken in every language wherever possible.
    parallel_pairs: parallel corpora only: "disjoint" (each marketplace its own share of the training pair
        ids) or "shared" (``frkit/data/parallel.py``).
    source_paths: "mixed" only: {source: folder} for marketplaces named <source>_<language>
        (``frkit/data/multi_source.py``).
    Raises ``FrkitInputError`` naming the file / column / value on any bad input.
    """
    check_source(source)
    limits = {"max_train": max_train, "max_validation": max_validation, "max_test": max_test}
    _check_options(source, path, train_file, validation_fraction, tables, columns, limits, source_paths)
    if source == "mixed":
        options = dict(
            train_file=train_file,
            validation_fraction=validation_fraction,
            max_train=max_train,
            max_validation=max_validation,
            max_test=max_test,
            seed=seed,
            parallel_pairs=parallel_pairs,
            stsb_threshold=stsb_threshold,
        )
        loaded = load_mixed(
            source_paths, check_names(marketplaces, None, "mixed marketplace"), load_marketplaces, **options
        )
        check_marketplaces(loaded)
        return loaded
    common = dict(validation_fraction=validation_fraction, seed=seed)
    parallel = False
    if source == "pawsx":
        names = check_names(marketplaces, LANGUAGES, "PAWS-X language")
        loaded, parallel = load_pawsx(path, names, train_file=train_file, pairs=parallel_pairs, **common), True
    elif source == "stsb":
        names = check_names(marketplaces, None, "STS-B language")
        raw = load_stsb_raw(path, names, stsb_threshold)
        loaded, parallel = parallel_marketplaces(raw, pairs=parallel_pairs, source="STS-B", **common), True
    elif source == "esci":
        names = check_names(marketplaces, tuple(LOCALES), "ESCI locale")
        loaded = load_esci(path, names, small_version=small_version, **common)
    elif source == "table":
        names = check_names(marketplaces, None, "table marketplace")
        loaded = load_tables(path, names, tables, columns, **common)
    else:
        kind, dataset_id = resolve_hub(str(path) if path else None, hub_kind)
        names = check_names(marketplaces, KNOWN_NAMES[kind], f"Hub {kind} name")
        loaded = load_hub(
            dataset_id,
            names,
            kind=kind,
            train_split=train_file,
            small_version=small_version,
            pairs=parallel_pairs,
            **common,
        )
        parallel = kind == "pawsx"
    loaded = subsample_marketplaces(loaded, **limits, seed=seed, parallel=parallel)
    check_marketplaces(loaded)
    for m in loaded:
        log.info("marketplace %s (%s): %s", m.name, m.language, m.sizes())
    return loaded
