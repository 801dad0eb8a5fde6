"""The shared checks, directly: labels, text, names, files, marketplace structure."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from frkit.data.marketplace import Marketplace
from frkit.data.validate import (
    as_ids,
    check_marketplace,
    check_marketplaces,
    check_names,
    check_source,
    check_text,
    map_labels,
    require_file,
)
from frkit.errors import FrkitInputError


def pairs(ids, labels) -> pd.DataFrame:
    ids = [str(i) for i in ids]
    return pd.DataFrame({"id": ids, "text_a": ["a"] * len(ids), "text_b": ["b"] * len(ids), "label": list(labels)})


def market(name="m", train=None, validation=None, test=None) -> Marketplace:
    return Marketplace(
        name=name,
        language="en",
        train=pairs(range(4), [0, 1, 0, 1]) if train is None else train,
        validation=pairs(range(10, 12), [0, 1]) if validation is None else validation,
        test=pairs(range(20, 24), [0, 1, 1, 0]) if test is None else test,
    )


@pytest.mark.parametrize(
    "values,expected",
    [
        ([0, 1, 1], [0, 1, 1]),
        (["0", "1"], [0, 1]),
        ([0.0, 1.0], [0, 1]),
        ([True, False], [1, 0]),
        (np.array([1, 0], dtype=np.int8), [1, 0]),
        (["E", "S", "C", "I"], [1, 1, 0, 0]),
        ([" e", "s ", "c", "i"], [1, 1, 0, 0]),
        (["exact", "Substitute", "COMPLEMENT", "Irrelevant"], [1, 1, 0, 0]),
    ],
)
def test_map_labels_accepts(values, expected):
    assert map_labels(pd.Series(values), "f", "label").tolist() == expected


def test_map_labels_rejects_with_values_and_counts():
    with pytest.raises(
        FrkitInputError,
        match=r"f\.csv: column 'y' has 4 label\(s\) that are not 0/1 or E/S/C/I: "
        r"offending values \(with counts\) \{'2': 2, \"'x'\": 1, '<missing>': 1\}",
    ):
        map_labels(pd.Series([2, 2, "x", None, 1], dtype=object), "f.csv", "y")
    with pytest.raises(FrkitInputError, match="not 0/1"):
        map_labels(pd.Series(["E"]), "f", "y", allowed="binary")
    with pytest.raises(FrkitInputError, match="not E/S/C/I"):
        map_labels(pd.Series([1]), "f", "y", allowed="esci")
    with pytest.raises(FrkitInputError, match="not 0/1"):
        map_labels(pd.Series([0.5]), "f", "y", allowed="binary")


def test_ids_and_text():
    assert as_ids(pd.Series([1.0, 2.0]), "f", "id").tolist() == ["1", "2"]
    with pytest.raises(FrkitInputError, match=r"f: column 'pid' has 1 missing id"):
        as_ids(pd.Series(["a", None]), "f", "pid")
    t = pd.DataFrame({"id": ["x", "y", "z"], "text_a": ["q", 123, "q"], "text_b": ["t", "t", np.nan]})
    with pytest.raises(
        FrkitInputError, match=r"f: column 'title' has 1 empty or missing text value\(s\) \(first at row id 'z'\)"
    ):
        check_text(t, ("text_a", "text_b"), "f", names={"text_b": "title"})
    assert check_text(t.head(2), ("text_a",), "f")["text_a"].tolist() == ["q", "123"]


def test_names_and_source():
    assert check_names(["a", "b"], ["a", "b", "c"], "x") == ["a", "b"]
    with pytest.raises(FrkitInputError, match="non-empty list"):
        check_names([], None, "x")
    with pytest.raises(FrkitInputError, match="non-empty list"):
        check_names("en", None, "x")
    with pytest.raises(FrkitInputError, match=r"two marketplaces with one name: \['a'\]"):
        check_names(["a", "b", "a"], None, "x")
    with pytest.raises(
        FrkitInputError,
        match=r"unknown data source 'csv'; expected one of \[.pawsx., .stsb., .esci., .table., .hub., .mixed.\]",
    ):
        check_source("csv")


def test_require_file(tmp_path):
    (tmp_path / "a.tsv").write_text("x")
    assert require_file(tmp_path / "a.tsv", "x") == tmp_path / "a.tsv"
    with pytest.raises(FrkitInputError, match=r"train file not found: .*b\.tsv; files found in .*: \['a\.tsv'\]"):
        require_file(tmp_path / "b.tsv", "train")
    with pytest.raises(FrkitInputError, match=r"folder .*nope does not exist"):
        require_file(tmp_path / "nope" / "b.tsv", "train")


def test_check_marketplace_structure():
    check_marketplace(market())
    with pytest.raises(FrkitInputError, match=r"'m' split 'validation' is empty"):
        check_marketplace(market(validation=pairs([], [])))
    with pytest.raises(FrkitInputError, match=r"test set has a single class \[0\] \(4 rows\)"):
        check_marketplace(market(test=pairs(range(20, 24), [0] * 4)))
    with pytest.raises(FrkitInputError, match=r"1 pair id\(s\) of validation are also in test, e\.g\. '20'"):
        check_marketplace(market(validation=pairs([20, 11], [0, 1])))
    with pytest.raises(FrkitInputError, match=r"split 'train': 1 duplicated pair id"):
        check_marketplace(market(train=pairs([1, 1, 2], [0, 1, 0])))
    with pytest.raises(
        FrkitInputError, match=r"columns \['id', 'text_a', 'text_b', 'label', 'extra'\]; expected exactly"
    ):
        check_marketplace(market(train=pairs([1], [0]).assign(extra=1)))
    with pytest.raises(FrkitInputError, match=r"labels must be int 0/1, found int64 values \[2\]"):
        check_marketplace(market(train=pairs([1], [2])))
    with pytest.raises(FrkitInputError, match=r"two marketplaces with one name: \['m'\]"):
        check_marketplaces([market(), market()])
