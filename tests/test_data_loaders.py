"""The entry point: option checks that fail before any file is read, and subsampling through it."""

from __future__ import annotations

from pathlib import Path

import pytest

from frkit.data import load_marketplaces
from frkit.errors import FrkitInputError


def write_pawsx(root: Path, langs=("en", "es"), n_train=60, n_test=30) -> Path:
    for lang in langs:
        (root / lang).mkdir(parents=True)
        for name, ids in (("dev_2k.tsv", range(1, n_train + 1)), ("test_2k.tsv", range(1000, 1000 + n_test))):
            lines = ["id\tsentence1\tsentence2\tlabel"] + [
                f"{i}\t{lang} a {i}\t{lang} b {i}\t{int(i % 3 == 0)}" for i in ids
            ]
            (root / lang / name).write_text("\n".join(lines) + "\n")
    return root


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(source="csv"), r"unknown data source 'csv'"),
        (dict(validation_fraction=0), r"validation_fraction must be a number in \(0, 1\), got 0"),
        (dict(validation_fraction=1.5), r"validation_fraction must be"),
        (dict(max_train=0), r"max_train must be a positive integer or None, got 0"),
        (dict(max_test=2.5), r"max_test must be a positive integer"),
        (dict(train_file=""), r"train_file must be 'auto' or a file name"),
        (
            dict(source="esci", marketplaces=["us"], train_file="x.tsv"),
            r"train_file='x\.tsv' applies to sources 'pawsx' and 'hub'",
        ),
        (dict(tables={"en": {}}), r"tables/columns apply to source 'table' only, not 'pawsx'"),
        (dict(path=None), r"source 'pawsx' needs path"),
        (dict(marketplaces=[]), r"non-empty list"),
        (dict(marketplaces=["en", "fi"]), r"unknown PAWS-X language \['fi'\]"),
    ],
)
def test_bad_options_fail_before_reading(tmp_path, kwargs, match):
    # the path does not exist: each error must come from the option check, not from reading files
    args = dict(source="pawsx", path=str(tmp_path / "missing"), marketplaces=["en"])
    args.update(kwargs)
    with pytest.raises(FrkitInputError, match=match):
        load_marketplaces(args.pop("source"), args.pop("path"), args.pop("marketplaces"), **args)


def test_order_and_parallel_subsampling(tmp_path):
    root = write_pawsx(tmp_path / "x-final")
    es, en = load_marketplaces(
        "pawsx", str(root), ["es", "en"], max_train=12, max_validation=3, max_test=9, seed=4, parallel_pairs="shared"
    )
    assert (es.name, en.name) == ("es", "en")
    assert es.sizes() == en.sizes() == {"train": 12, "validation": 3, "test": 9}
    assert es.test["label"].sum() == 3 and es.train["label"].sum() == 4  # a third are positives
    for split in ("train", "validation", "test"):
        assert es.split(split)["id"].tolist() == en.split(split)["id"].tolist()
    again = load_marketplaces(
        "pawsx", str(root), ["es", "en"], max_train=12, max_validation=3, max_test=9, seed=4, parallel_pairs="shared"
    )
    assert again[0].train["id"].tolist() == es.train["id"].tolist()


def test_subsampled_test_keeps_both_classes(tmp_path):
    root = write_pawsx(tmp_path / "x-final", langs=("en",))
    m = load_marketplaces("pawsx", str(root), ["en"], max_test=2, parallel_pairs="shared")[0]
    assert sorted(m.test["label"]) == [0, 1]
