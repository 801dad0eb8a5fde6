"""Input checks shared by every loader; each raises ``FrkitInputError`` naming the file, column or value.

All of them run while the marketplaces are loaded, i.e. before any model is touched, so bad data
fails in seconds instead of after an hour of training.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from pathlib import Path

import pandas as pd

from frkit.data.marketplace import COLUMNS, SPLITS, Marketplace
from frkit.errors import FrkitInputError

SOURCES = ("pawsx", "stsb", "esci", "table", "hub", "mixed")

# Relevance labels: E(xact) and S(ubstitute) are relevant, C(omplement) and I(rrelevant) are not
# (the convention of both papers). Full names cover mirrors such as tasksource/esci.
ESCI_LABELS = {"E": 1, "S": 1, "C": 0, "I": 0, "exact": 1, "substitute": 1, "complement": 0, "irrelevant": 0}
BINARY_LABELS = {"0": 0, "1": 1}
LABEL_SETS = {
    "binary": (BINARY_LABELS, "0/1"),
    "esci": (ESCI_LABELS, "E/S/C/I (or Exact/Substitute/Complement/Irrelevant)"),
    "any": ({**BINARY_LABELS, **ESCI_LABELS}, "0/1 or E/S/C/I"),
}


def _preview(values: Iterable, limit: int = 10) -> str:
    values = list(values)
    return repr(values[:limit]) + (f" ... ({len(values)} in all)" if len(values) > limit else "")


def check_source(source: str) -> str:
    if source not in SOURCES:
        raise FrkitInputError(f"unknown data source {source!r}; expected one of {list(SOURCES)}")
    return source


def check_names(names: Sequence[str], known: Sequence[str] | None, what: str) -> list[str]:
    """The marketplace list: non-empty, strings, no repeats, each one ``known`` (when given)."""
    if isinstance(names, str) or not isinstance(names, Sequence) or len(names) == 0:
        raise FrkitInputError(f"marketplaces must be a non-empty list of {what}s, got {names!r}")
    bad_type = [n for n in names if not isinstance(n, str) or not n]
    if bad_type:
        raise FrkitInputError(f"marketplace names must be non-empty strings, got {bad_type!r}")
    repeated = sorted({n for n in names if list(names).count(n) > 1})
    if repeated:
        raise FrkitInputError(f"two marketplaces with one name: {repeated} (each {what} may appear once)")
    if known is not None:
        unknown = [n for n in names if n not in known]
        if unknown:
            raise FrkitInputError(f"unknown {what} {_preview(unknown)}; expected some of {list(known)}")
    return list(names)


def require_dir(folder: Path, what: str) -> Path:
    folder = Path(folder)
    if not folder.is_dir():
        parent = folder.parent
        found = sorted(p.name for p in parent.iterdir()) if parent.is_dir() else []
        where = f"found in {parent}: {found}" if parent.is_dir() else f"{parent} does not exist either"
        raise FrkitInputError(f"{what} folder not found: {folder} ({where})")
    return folder


def require_file(file: Path, what: str) -> Path:
    """The file must exist; otherwise say which one and what its folder does hold."""
    file = Path(file)
    if not file.is_file():
        folder = file.parent
        if folder.is_dir():
            found = sorted(p.name for p in folder.iterdir())
            raise FrkitInputError(f"{what} file not found: {file}; files found in {folder}: {found}")
        raise FrkitInputError(f"{what} file not found: {file} (folder {folder} does not exist)")
    return file


def require_columns(found: Iterable[str], required: Iterable[str], where: str) -> None:
    found = list(found)
    missing = [c for c in required if c not in found]
    if missing:
        raise FrkitInputError(f"{where}: missing column(s) {missing}; found columns {found}")


def _label_key(value) -> str | None:
    """A label as the string key of LABEL_SETS: 1, 1.0, '1', True -> '1'; 'Exact' -> 'exact'; NaN -> None."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, (int,)) or (isinstance(value, float) and value.is_integer()):
        return str(int(value))
    if hasattr(value, "item"):  # numpy scalars
        return _label_key(value.item())
    text = str(value).strip()
    if text.upper() in ("E", "S", "C", "I"):
        return text.upper()
    if text.isdigit():
        return text
    try:  # "1.0" / "0.0" from a CSV: the same labels as the floats 1.0 / 0.0 a parquet file holds
        number = float(text)
    except ValueError:
        return text.lower()
    return str(int(number)) if number.is_integer() else text.lower()


def map_labels(values: pd.Series, where: str, column: str, allowed: str = "any") -> pd.Series:
    """Map a raw label column to int 0/1, or raise showing every offending value with its count."""
    mapping, expected = LABEL_SETS[allowed]
    keys = values.astype(object).map(_label_key)
    bad = ~keys.isin(list(mapping))
    if bad.any():
        shown = values[bad].astype(object).map(lambda v: "<missing>" if _label_key(v) is None else repr(v))
        counts = shown.value_counts()
        raise FrkitInputError(
            f"{where}: column {column!r} has {int(bad.sum())} label(s) that are not {expected}: "
            f"offending values (with counts) {dict(counts.items())}"
        )
    return keys.map(mapping).astype("int64")


def as_ids(values: pd.Series, where: str, column: str) -> pd.Series:
    """Pair ids as str; integral floats (a column with gaps read as float) lose their '.0'."""
    missing = values.isna().to_numpy()
    if missing.any():
        raise FrkitInputError(
            f"{where}: column {column!r} has {int(missing.sum())} missing id(s) (first at data row "
            f"{_first_row(missing)}, counting from 1 after the header); every row needs an id"
        )
    if pd.api.types.is_float_dtype(values) and (values % 1 == 0).all():
        values = values.astype("int64")
    values = values.astype(str)
    empty = (values.str.strip() == "").to_numpy()
    if empty.any():
        raise FrkitInputError(
            f"{where}: column {column!r} has {int(empty.sum())} empty id(s) (first at data row "
            f"{_first_row(empty)}, counting from 1 after the header); every row needs an id"
        )
    return values


def _first_row(mask) -> int:
    return int(mask.nonzero()[0][0]) + 1


def check_text(
    table: pd.DataFrame,
    columns: Sequence[str],
    where: str,
    ids: pd.Series | None = None,
    names: dict[str, str] | None = None,
) -> pd.DataFrame:
    """Text columns must be non-empty strings; numbers are kept as their str (a query may be '123').

    ``names`` maps a column to the user's own column name for the message.
    """
    table = table.copy()
    ids = table["id"] if ids is None else ids
    for col in columns:
        values = table[col]
        missing = values.isna()
        text = values.where(missing, values.astype(str))
        empty = missing | (text.fillna("").str.strip() == "")
        if empty.any():
            first = ids[empty].iloc[0]
            shown = names.get(col, col) if names else col
            raise FrkitInputError(
                f"{where}: column {shown!r} has {int(empty.sum())} empty or missing text value(s) "
                f"(first at row id {first!r}); expected non-empty text"
            )
        table[col] = text.astype(str)
    return table


def check_marketplace(m: Marketplace) -> None:
    """Structure of one loaded marketplace: the exact schema, non-empty splits, no leaks, two test classes."""
    for split in SPLITS:
        table = m.split(split)
        where = f"marketplace {m.name!r} split {split!r}"
        if list(table.columns) != list(COLUMNS):
            raise FrkitInputError(f"{where}: columns {list(table.columns)}; expected exactly {list(COLUMNS)}")
        if len(table) == 0:
            raise FrkitInputError(f"{where} is empty; every marketplace needs train, validation and test rows")
        labels = set(table["label"].unique().tolist())
        if not pd.api.types.is_integer_dtype(table["label"]) or not labels <= {0, 1}:
            raise FrkitInputError(
                f"{where}: labels must be int 0/1, found {table['label'].dtype} values {sorted(labels)[:10]}"
            )
        check_text(table, ("text_a", "text_b"), where)
        dup = table["id"][table["id"].duplicated()]
        if len(dup):
            raise FrkitInputError(
                f"{where}: {len(dup)} duplicated pair id(s), e.g. {dup.iloc[0]!r}; ids must identify a pair"
            )
    test_ids = m.test["id"]
    for split in ("train", "validation"):
        ids = m.split(split)["id"]
        leaked = ids[ids.isin(test_ids)].tolist()
        if leaked:
            raise FrkitInputError(
                f"marketplace {m.name!r}: {len(leaked)} pair id(s) of {split} are also in test, e.g. {leaked[0]!r}; "
                "train/validation and test must not share pairs"
            )
    for split, why in (
        ("test", "ROC-AUC needs both labels 0 and 1 in test"),
        ("validation", "early stopping reads validation ROC-AUC, which needs both labels"),
        ("train", "a classifier cannot learn from one label"),
    ):
        classes = sorted(set(m.split(split)["label"]))
        if len(classes) < 2:
            raise FrkitInputError(
                f"marketplace {m.name!r}: {split} set has a single class {classes} ({len(m.split(split))} rows); {why}"
            )


def check_marketplaces(marketplaces: Sequence[Marketplace]) -> list[Marketplace]:
    if not marketplaces:
        raise FrkitInputError("no marketplaces were loaded")
    check_names([m.name for m in marketplaces], None, "marketplace")
    for m in marketplaces:
        check_marketplace(m)
    return list(marketplaces)
