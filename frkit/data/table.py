"""Pair tables: read any table file, normalise it to (id, text_a, text_b, label), and the ``table`` source.

``to_pairs`` is the one normalisation step every source goes through (PAWS-X, ESCI, the Hub, a team's
own files), so labels, ids and text are checked the same way everywhere.
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from frkit.data.marketplace import COLUMNS, Marketplace
from frkit.data.split import carve_validation
from frkit.data.validate import as_ids, check_names, check_text, map_labels, require_columns, require_file
from frkit.errors import FrkitInputError

log = logging.getLogger(__name__)

TABLE_SUFFIXES = (".csv", ".tsv", ".parquet", ".pq", ".jsonl", ".ndjson")
COLUMN_KEYS = ("id", "text_a", "text_b", "label")  # required keys of ``columns``
OPTIONAL_COLUMN_KEYS = ("group",)
SPEC_KEYS = ("language", "train", "test")  # required keys of each ``tables`` entry
OPTIONAL_SPEC_KEYS = ("validation",)


def read_table(file: Path, what: str = "table") -> pd.DataFrame:
    """Read CSV / TSV / Parquet / JSONL by extension.

    CSV and TSV cells are read as str with no NA guessing, so a query 'NA' or '007' survives as text;
    labels and ids are converted later by ``to_pairs``.
    """
    file = require_file(Path(file), what)
    suffix = file.suffix.lower()
    try:
        if suffix in (".csv", ".tsv"):
            sep = "," if suffix == ".csv" else "\t"
            raw = pd.read_csv(file, sep=sep, dtype=str, keep_default_na=False)
        if suffix in (".parquet", ".pq"):
            return pd.read_parquet(file)
        if suffix in (".jsonl", ".ndjson"):
            return pd.read_json(file, lines=True, dtype=False)
    except (ValueError, OSError) as err:  # pandas' ParserError and pyarrow's ArrowInvalid are ValueErrors
        raise FrkitInputError(f"{what} file {file} could not be read as {suffix[1:]}: {err}") from err
    if suffix in (".csv", ".tsv"):
        check_one_row_per_line(raw, file, sep, what)
        return raw
    raise FrkitInputError(
        f"{what} file {file}: unsupported extension {suffix!r}; expected one of {list(TABLE_SUFFIXES)}"
    )


def check_one_row_per_line(raw: pd.DataFrame, file: Path, sep: str, what: str = "table") -> None:
    """A cell holding a line break means a quote opened a field and ran on over the following lines (a stray
    quote merges rows silently): name the row and the lines it swallowed. Pair texts are single lines."""
    breaks = np.zeros(len(raw), dtype=bool)
    for col in raw.columns:
        breaks |= raw[col].str.contains("[\r\n]", regex=True).to_numpy(dtype=bool)
    if not breaks.any():
        return
    row = int(breaks.nonzero()[0][0])
    with file.open(encoding="utf-8", errors="replace", newline="") as fh:
        reader = csv.reader(fh, delimiter=sep)
        next(reader, None)  # header
        first, last = reader.line_num + 1, reader.line_num
        for i, _ in enumerate(reader):
            first, last = last + 1, reader.line_num
            if i == row:
                break
    raise FrkitInputError(
        f'{what} file {file}: data row {row + 1} runs over lines {first}-{last}: a field opened with a quote (") '
        f"takes in the line break(s) after it, merging {last - first} following line(s) into this row (a stray "
        "quote?); expected one row per line: remove the quote, or close it in the same line"
    )


def to_pairs(
    raw: pd.DataFrame, mapping: Mapping[str, str], where: str, labels: str = "any", keep: tuple[str, ...] = ()
) -> pd.DataFrame:
    """Rename ``raw``'s columns per ``mapping`` (our name -> theirs) to the pair schema, and check it.

    ``labels`` picks the accepted label vocabulary ("binary", "esci" or "any"); ``keep`` names extra
    mapped columns to carry along (e.g. the validation group) that the caller drops later.
    """
    wanted = list(COLUMNS) + list(keep)
    require_columns(raw.columns, [mapping[c] for c in wanted], where)
    table = pd.DataFrame({c: raw[mapping[c]].to_numpy() for c in wanted})
    table["id"] = as_ids(table["id"], where, mapping["id"])
    table["label"] = map_labels(table["label"], where, mapping["label"], labels)
    names = {c: mapping[c] for c in ("text_a", "text_b")}
    return check_text(table, ("text_a", "text_b"), where, names=names)


def _check_columns(columns: Mapping[str, str] | None) -> dict[str, str]:
    if not columns:
        return {c: c for c in COLUMN_KEYS}  # the files already use our names
    if not isinstance(columns, Mapping):
        raise FrkitInputError(f"columns must be a mapping like {{'id': ..., 'text_a': ...}}, got {columns!r}")
    unknown = [k for k in columns if k not in COLUMN_KEYS + OPTIONAL_COLUMN_KEYS]
    missing = [k for k in COLUMN_KEYS if k not in columns]
    if unknown or missing:
        raise FrkitInputError(
            f"columns mapping: unknown key(s) {unknown}, missing key(s) {missing}; "
            f"expected keys {list(COLUMN_KEYS)} and optionally {list(OPTIONAL_COLUMN_KEYS)}"
        )
    return dict(columns)


def _check_spec(name: str, spec) -> dict[str, str]:
    if not isinstance(spec, Mapping):
        raise FrkitInputError(f"tables[{name!r}] must be a mapping with keys {list(SPEC_KEYS)}, got {spec!r}")
    unknown = [k for k in spec if k not in SPEC_KEYS + OPTIONAL_SPEC_KEYS]
    missing = [k for k in SPEC_KEYS if not spec.get(k)]
    if unknown or missing:
        raise FrkitInputError(
            f"tables[{name!r}]: unknown key(s) {unknown}, missing key(s) {missing}; "
            f"expected keys {list(SPEC_KEYS)} and optionally {list(OPTIONAL_SPEC_KEYS)}"
        )
    return dict(spec)


def check_table_options(names: list[str], tables, columns) -> tuple[dict[str, dict], dict[str, str]]:
    """Validate ``tables`` / ``columns`` before any file is read."""
    if not tables or not isinstance(tables, Mapping):
        raise FrkitInputError(
            f"source 'table' needs tables={{name: {{language, train, test[, validation]}}}}, got {tables!r}"
        )
    check_names(names, list(tables), "table marketplace")
    return {n: _check_spec(n, tables[n]) for n in names}, _check_columns(columns)


def _read_pairs(root: Path, file: str, mapping: dict[str, str], keep: tuple[str, ...]) -> pd.DataFrame:
    path = root / file
    return to_pairs(read_table(path), mapping, f"table {path}", labels="any", keep=keep)


def load_tables(
    path: str | None, names: list[str], tables, columns, *, validation_fraction: float, seed: int
) -> list[Marketplace]:
    """One marketplace per name from its train / test (/ validation) files, paths relative to ``path``."""
    specs, mapping = check_table_options(names, tables, columns)
    root = Path(path) if path else Path.cwd()
    group = "group" if "group" in mapping else None
    keep = (group,) if group else ()
    out = []
    for name in names:
        spec = specs[name]
        carve = not spec.get("validation")
        train = _read_pairs(root, spec["train"], mapping, keep if carve else ())  # the group is needed to carve only
        test = _read_pairs(root, spec["test"], mapping, ())
        if not carve:
            validation = _read_pairs(root, spec["validation"], mapping, ())
        else:  # carve by the group column where there is one (no query on both sides), else by pair id
            groups = train[group] if group else None
            train, validation = carve_validation(train, validation_fraction, seed, groups)
            log.info(
                "table %s: carved %d validation rows from %s by %s",
                name,
                len(validation),
                spec["train"],
                mapping["group"] if group else "pair id",
            )
        out.append(
            Marketplace(
                name=name,
                language=str(spec["language"]),
                train=train[list(COLUMNS)],
                validation=validation[list(COLUMNS)],
                test=test[list(COLUMNS)],
                group=mapping.get("group"),
            )
        )
    return out
