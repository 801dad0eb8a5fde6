"""The ``table`` source: CSV / TSV / Parquet / JSONL, column mapping, label vocabularies, and every bad input."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from frkit.data import load_marketplaces, read_table
from frkit.errors import FrkitInputError

COLUMNS = {"id": "pair", "text_a": "q", "text_b": "title", "label": "rel"}


def frame(n: int, start: int = 0, labels=("E", "I"), query_of=lambda i: i // 4) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "pair": [f"p{i}" for i in range(start, start + n)],
            "q": [f"query {query_of(i)}" for i in range(start, start + n)],
            "title": [f"title {i}" for i in range(start, start + n)],
            "rel": [labels[i % len(labels)] for i in range(start, start + n)],
            "query_id": [query_of(i) for i in range(start, start + n)],
        }
    )


def save(table: pd.DataFrame, file: Path) -> str:
    file.parent.mkdir(parents=True, exist_ok=True)
    suffix = file.suffix
    if suffix == ".csv":
        table.to_csv(file, index=False)
    elif suffix == ".tsv":
        table.to_csv(file, sep="\t", index=False)
    elif suffix == ".parquet":
        table.to_parquet(file, index=False)
    else:
        table.to_json(file, orient="records", lines=True)
    return file.name


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".parquet", ".jsonl"])
def test_every_format_loads_the_same(tmp_path, suffix):
    train = save(frame(40), tmp_path / f"train{suffix}")
    test = save(frame(12, start=100), tmp_path / f"test{suffix}")
    tables = {"shop": {"language": "de", "train": train, "test": test}}
    m = load_marketplaces("table", str(tmp_path), ["shop"], tables=tables, columns=COLUMNS, validation_fraction=0.25)[0]
    assert (m.name, m.language) == ("shop", "de")
    assert len(m.train) + len(m.validation) == 40 and len(m.test) == 12
    assert m.test["label"].tolist()[:4] == [1, 0, 1, 0]
    assert m.test["id"].tolist()[:2] == ["p100", "p101"] and m.test["text_b"].iloc[0] == "title 100"
    assert list(m.train.columns) == ["id", "text_a", "text_b", "label"]


def test_binary_labels_explicit_validation_and_order(tmp_path):
    tables = {}
    for name in ("a", "b"):
        tables[name] = {
            "language": "en",
            "train": save(frame(20, labels=(0, 1)), tmp_path / name / "tr.csv"),
            "validation": save(frame(6, start=50, labels=(1, 0)), tmp_path / name / "va.csv"),
            "test": save(frame(8, start=100, labels=(0, 1)), tmp_path / name / "te.csv"),
        }
        tables[name] = {k: (f"{name}/{v}" if k != "language" else v) for k, v in tables[name].items()}
    b, a = load_marketplaces("table", str(tmp_path), ["b", "a"], tables=tables, columns=COLUMNS)
    assert (b.name, a.name) == ("b", "a")
    assert a.sizes() == {"train": 20, "validation": 6, "test": 8}
    assert a.validation["label"].tolist() == [1, 0, 1, 0, 1, 0]


def test_group_column_keeps_queries_on_one_side(tmp_path):
    train = save(frame(80), tmp_path / "train.parquet")
    test = save(frame(12, start=200), tmp_path / "test.parquet")
    m = load_marketplaces(
        "table",
        str(tmp_path),
        ["s"],
        tables={"s": {"language": "en", "train": train, "test": test}},
        columns={**COLUMNS, "group": "query_id"},
        validation_fraction=0.3,
    )[0]
    assert m.group == "query_id"
    by_pair = frame(80).set_index("pair")["query_id"]
    train_q, val_q = set(by_pair[m.train["id"]]), set(by_pair[m.validation["id"]])
    assert val_q and not train_q & val_q


def test_default_columns_are_our_names(tmp_path):
    t = frame(20).rename(columns={"pair": "id", "q": "text_a", "title": "text_b", "rel": "label"})
    save(t, tmp_path / "tr.jsonl")
    save(
        frame(8, start=100).rename(columns={"pair": "id", "q": "text_a", "title": "text_b", "rel": "label"}),
        tmp_path / "te.jsonl",
    )
    m = load_marketplaces(
        "table", str(tmp_path), ["x"], tables={"x": {"language": "en", "train": "tr.jsonl", "test": "te.jsonl"}}
    )[0]
    assert len(m.test) == 8


def test_csv_keeps_text_like_na_and_leading_zeros(tmp_path):
    t = frame(20)
    t.loc[0, "q"] = "NA"
    t.loc[1, "q"] = "007"
    save(t, tmp_path / "tr.csv")
    raw = read_table(tmp_path / "tr.csv")
    assert raw.loc[0, "q"] == "NA" and raw.loc[1, "q"] == "007"


def test_integer_ids_become_strings(tmp_path):
    t = frame(12, start=100).assign(pair=range(100, 112))
    save(t, tmp_path / "te.parquet")
    save(frame(20), tmp_path / "tr.parquet")
    m = load_marketplaces(
        "table",
        str(tmp_path),
        ["x"],
        columns=COLUMNS,
        tables={"x": {"language": "en", "train": "tr.parquet", "test": "te.parquet"}},
    )[0]
    assert m.test["id"].tolist()[:2] == ["100", "101"]


@pytest.fixture
def shop(tmp_path):
    """A valid setup; tests break one thing each."""
    save(frame(20), tmp_path / "tr.csv")
    save(frame(8, start=100), tmp_path / "te.csv")
    tables = {"shop": {"language": "en", "train": "tr.csv", "test": "te.csv"}}

    def load(**kw):
        names = kw.pop("names", ["shop"])
        args = dict(tables=tables, columns=COLUMNS)
        args.update(kw)
        return load_marketplaces("table", str(tmp_path), names, **args)

    return tmp_path, tables, load


def test_bad_label_values_and_counts(shop):
    root, _, load = shop
    t = frame(20)
    t.loc[[1, 2, 5], "rel"] = ["maybe", "maybe", "2"]
    save(t, root / "tr.csv")
    with pytest.raises(
        FrkitInputError,
        match=r"tr\.csv: column 'rel' has 3 label\(s\) that are not 0/1 or E/S/C/I: "
        r"offending values \(with counts\) \{\"'maybe'\": 2, \"'2'\": 1\}",
    ):
        load()


def test_missing_label_is_a_bad_label(shop):
    root, _, load = shop
    t = frame(8, start=100).astype({"rel": object})
    t.loc[0, "rel"] = None
    save(t, root / "te.parquet")
    with pytest.raises(FrkitInputError, match=r"te\.parquet: column 'rel' has 1 label\(s\).*'<missing>': 1"):
        load(tables={"shop": {"language": "en", "train": "tr.csv", "test": "te.parquet"}})


def test_missing_column(shop):
    root, _, load = shop
    save(frame(20).drop(columns="title"), root / "tr.csv")
    with pytest.raises(
        FrkitInputError,
        match=r"tr\.csv: missing column\(s\) \['title'\]; found columns "
        r"\['pair', 'q', 'rel', 'query_id'\]",
    ):
        load()


def test_missing_group_column(shop):
    _, _, load = shop
    with pytest.raises(FrkitInputError, match=r"missing column\(s\) \['session'\]"):
        load(columns={**COLUMNS, "group": "session"})


def test_missing_file(shop):
    _, _, load = shop
    with pytest.raises(FrkitInputError, match=r"file not found: .*va\.csv; files found in .*\['te\.csv', 'tr\.csv'\]"):
        load(tables={"shop": {"language": "en", "train": "tr.csv", "test": "te.csv", "validation": "va.csv"}})


def test_nan_and_empty_text(shop):
    root, _, load = shop
    t = frame(20)
    t.loc[3, "q"] = None
    t.loc[4, "q"] = ""
    save(t, root / "tr.parquet")
    with pytest.raises(
        FrkitInputError,
        match=r"tr\.parquet: column 'q' has 2 empty or missing text value\(s\) "
        r"\(first at row id 'p3'\)",
    ):
        load(tables={"shop": {"language": "en", "train": "tr.parquet", "test": "te.csv"}})


def test_unsupported_extension_and_unreadable_file(shop):
    root, _, load = shop
    (root / "tr.xlsx").write_text("x")
    with pytest.raises(FrkitInputError, match=r"tr\.xlsx: unsupported extension '\.xlsx'"):
        load(tables={"shop": {"language": "en", "train": "tr.xlsx", "test": "te.csv"}})
    (root / "bad.parquet").write_text("not parquet")
    with pytest.raises(FrkitInputError, match=r"bad\.parquet could not be read as parquet"):
        load(tables={"shop": {"language": "en", "train": "bad.parquet", "test": "te.csv"}})


def test_single_class_test_and_leak_and_duplicates(shop):
    root, _, load = shop
    save(frame(8, start=100, labels=("S",)), root / "te.csv")
    with pytest.raises(FrkitInputError, match=r"'shop': test set has a single class \[1\]"):
        load()
    save(frame(8, start=15), root / "te.csv")  # p15..p19 are also training pairs
    with pytest.raises(FrkitInputError, match=r"pair id\(s\) of (train|validation) are also in test"):
        load()
    save(pd.concat([frame(8, start=100), frame(2, start=100)]), root / "te.csv")
    with pytest.raises(FrkitInputError, match=r"split 'test': 2 duplicated pair id\(s\), e\.g\. 'p100'"):
        load()


def test_bad_tables_and_columns_options(shop):
    _, tables, load = shop
    with pytest.raises(FrkitInputError, match=r"unknown table marketplace \['other'\]; expected some of \['shop'\]"):
        load(names=["other"])
    with pytest.raises(FrkitInputError, match=r"two marketplaces with one name"):
        load(names=["shop", "shop"])
    with pytest.raises(
        FrkitInputError, match=r"tables\['shop'\]: unknown key\(s\) \['dev'\], missing key\(s\) \['language'\]"
    ):
        load(tables={"shop": {"train": "tr.csv", "test": "te.csv", "dev": "x.csv"}})
    with pytest.raises(
        FrkitInputError, match=r"columns mapping: unknown key\(s\) \['query'\], missing key\(s\) \['text_a'\]"
    ):
        load(columns={"id": "pair", "query": "q", "text_b": "title", "label": "rel"})
    with pytest.raises(FrkitInputError, match=r"source 'table' needs tables="):
        load(tables=None)


def test_group_column_needed_only_to_carve(shop):
    root, _, load = shop
    save(frame(8, start=100).drop(columns="query_id"), root / "te.csv")
    m = load(columns={**COLUMNS, "group": "query_id"})[0]
    assert len(m.test) == 8
