"""PAWS-X loader: release layout, NS rows, quoting, cross-language id disjointness, and every bad input."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from frkit.data import load_marketplaces
from frkit.errors import FrkitInputError

REAL = Path("/work/shared/data/pawsx/x-final")
HEADER = "id\tsentence1\tsentence2\tlabel"


def write_tsv(file: Path, rows: list[tuple]) -> None:
    file.parent.mkdir(parents=True, exist_ok=True)
    file.write_text("\n".join([HEADER] + ["\t".join(str(v) for v in row) for row in rows]) + "\n")


def pairs(lang: str, ids, label_of=lambda i: i % 2) -> list[tuple]:
    return [(i, f"{lang} first {i}", f"{lang} second {i}", label_of(i)) for i in ids]


@pytest.fixture
def release(tmp_path) -> Path:
    """en/es with dev_2k (ids 1..20) and test_2k (ids 100..109).

    es dev has an NS row (id 3), and id 5 of en's train is also in es's test.
    """
    root = tmp_path / "x-final"
    for lang in ("en", "es"):
        train = pairs(lang, range(1, 21))
        test = pairs(lang, range(100, 110))
        if lang == "es":
            train[2] = (3, "NS", "es second 3", 0)
            test[0] = (5, "es first 5", "es second 5", 1)  # id 5 is an en training pair
        write_tsv(root / lang / "dev_2k.tsv", train)
        write_tsv(root / lang / "test_2k.tsv", test)
    return root


def test_loads_in_order_drops_ns_and_cross_language_test_ids(release, caplog):
    caplog.set_level(logging.INFO)
    es, en = load_marketplaces("pawsx", str(release), ["es", "en"], validation_fraction=0.25, parallel_pairs="shared")
    assert [es.name, en.name] == ["es", "en"] and (es.language, en.language) == ("es", "en")
    # es: 20 - 1 NS - id 5 (in es test); en: 20 - id 5 (in es test)
    assert len(es.train) + len(es.validation) == 18
    assert len(en.train) + len(en.validation) == 19
    assert len(en.test) == len(es.test) == 10
    for m in (en, es):
        seen = set(m.train["id"]) | set(m.validation["id"])
        assert "5" not in seen and "3" not in set(es.train["id"]) | set(es.validation["id"])
        assert not seen & (set(en.test["id"]) | set(es.test["id"]))
        assert list(m.train.columns) == ["id", "text_a", "text_b", "label"]
        assert m.train["label"].dtype == "int64" and set(m.test["label"]) == {0, 1}
    # the same ids go to validation in every language (ids present in both)
    assert set(es.validation["id"]) == set(en.validation["id"]) - {"3"}
    assert len(en.validation) > 0
    assert "dropped 1 of 20 rows with a 'NS' placeholder" in caplog.text
    assert "en: dropped 1 train rows whose pair id is in a selected language's test set" in caplog.text


def test_split_is_seeded(release):
    a = load_marketplaces("pawsx", str(release), ["en"], seed=1, parallel_pairs="shared")[0]
    b = load_marketplaces("pawsx", str(release), ["en"], seed=1, parallel_pairs="shared")[0]
    c = load_marketplaces("pawsx", str(release), ["en"], seed=2, parallel_pairs="shared")[0]
    assert a.validation["id"].tolist() == b.validation["id"].tolist()
    assert a.validation["id"].tolist() != c.validation["id"].tolist()


def test_quotes_are_kept_literally(tmp_path):
    root = tmp_path / "x-final"
    rows = pairs("en", range(1, 31))
    rows[0] = (1, "Whereas '' G `` Newton 's quantum", '"quoted start and a tab-free end', 1)
    write_tsv(root / "en" / "dev_2k.tsv", rows)
    write_tsv(root / "en" / "test_2k.tsv", pairs("en", range(100, 106)))
    m = load_marketplaces("pawsx", str(root), ["en"], validation_fraction=0.3, parallel_pairs="shared")[0]
    row = next(t for t in (m.train, m.validation) if "1" in set(t["id"]))
    row = row.set_index("id").loc["1"]
    assert row["text_a"] == "Whereas '' G `` Newton 's quantum"
    assert row["text_b"] == '"quoted start and a tab-free end'


@pytest.mark.parametrize("name", ["translated_train.tsv", "train.tsv"])
def test_auto_prefers_train_files_over_dev(tmp_path, name):
    root = tmp_path / "x-final"
    write_tsv(root / "en" / "dev_2k.tsv", pairs("en", range(1, 13)))
    write_tsv(root / "en" / name, pairs("en", range(200, 240)))
    write_tsv(root / "en" / "test_2k.tsv", pairs("en", range(100, 106)))
    m = load_marketplaces("pawsx", str(root), ["en"], parallel_pairs="shared")[0]
    assert len(m.train) + len(m.validation) == 40
    explicit = load_marketplaces(
        "pawsx", str(root), ["en"], train_file="dev_2k.tsv", validation_fraction=0.5, parallel_pairs="shared"
    )[0]
    assert set(explicit.train["id"]) | set(explicit.validation["id"]) <= {str(i) for i in range(1, 13)}


def test_missing_file_names_it_and_lists_the_folder(release):
    (release / "es" / "test_2k.tsv").unlink()
    with pytest.raises(FrkitInputError, match=r"test_2k\.tsv.*files found in .*es: \['dev_2k\.tsv'\]"):
        load_marketplaces("pawsx", str(release), ["en", "es"], parallel_pairs="shared")
    with pytest.raises(FrkitInputError, match=r"nope\.tsv.*files found"):
        load_marketplaces("pawsx", str(release), ["en"], train_file="nope.tsv", parallel_pairs="shared")


def test_missing_language_folder_and_release_folder(release, tmp_path):
    with pytest.raises(FrkitInputError, match=r"'ja' folder not found.*found in .*\['en', 'es'\]"):
        load_marketplaces("pawsx", str(release), ["en", "ja"], parallel_pairs="shared")
    with pytest.raises(FrkitInputError, match="folder not found"):
        load_marketplaces("pawsx", str(tmp_path / "nowhere"), ["en"], parallel_pairs="shared")


def test_unknown_language(release):
    with pytest.raises(FrkitInputError, match=r"unknown PAWS-X language \['xx'\]; expected some of \['en'"):
        load_marketplaces("pawsx", str(release), ["en", "xx"], parallel_pairs="shared")


def test_two_marketplaces_with_one_name(release):
    with pytest.raises(FrkitInputError, match=r"two marketplaces with one name: \['en'\]"):
        load_marketplaces("pawsx", str(release), ["en", "es", "en"], parallel_pairs="shared")


def test_missing_column_lists_found_columns(release):
    file = release / "en" / "dev_2k.tsv"
    file.write_text(file.read_text().replace("sentence2", "sent2", 1))
    with pytest.raises(
        FrkitInputError,
        match=r"dev_2k\.tsv: missing column\(s\) \['sentence2'\]; found columns "
        r"\['id', 'sentence1', 'sent2', 'label'\]",
    ):
        load_marketplaces("pawsx", str(release), ["en"], parallel_pairs="shared")


def test_bad_labels_show_values_and_counts(release):
    write_tsv(release / "en" / "dev_2k.tsv", pairs("en", range(1, 21), label_of=lambda i: "2" if i < 4 else i % 2))
    with pytest.raises(
        FrkitInputError, match=r"dev_2k\.tsv.*column 'label' has 3 label\(s\) that are not 0/1.*\"'2'\": 3"
    ):
        load_marketplaces("pawsx", str(release), ["en"], parallel_pairs="shared")


def test_esci_letters_are_not_pawsx_labels(release):
    write_tsv(release / "en" / "dev_2k.tsv", pairs("en", range(1, 21), label_of=lambda i: "E"))
    with pytest.raises(FrkitInputError, match=r"not 0/1.*'E'"):
        load_marketplaces("pawsx", str(release), ["en"], parallel_pairs="shared")


def test_empty_text_names_column_count_and_first_id(release):
    rows = pairs("en", range(1, 21))
    rows[6] = (7, "en first 7", "", 1)
    rows[8] = (9, "en first 9", " ", 1)
    write_tsv(release / "en" / "dev_2k.tsv", rows)
    with pytest.raises(
        FrkitInputError,
        match=r"dev_2k\.tsv: column 'sentence2' has 2 empty or missing text value\(s\) "
        r"\(first at row id '7'\)",
    ):
        load_marketplaces("pawsx", str(release), ["en"], parallel_pairs="shared")


def test_single_class_test_set(release):
    write_tsv(release / "en" / "test_2k.tsv", pairs("en", range(100, 110), label_of=lambda i: 1))
    with pytest.raises(FrkitInputError, match=r"marketplace 'en': test set has a single class \[1\].*ROC-AUC"):
        load_marketplaces("pawsx", str(release), ["en"], parallel_pairs="shared")


def test_empty_split(release):
    write_tsv(release / "en" / "test_2k.tsv", [])
    with pytest.raises(FrkitInputError, match=r"marketplace 'en' split 'test' is empty"):
        load_marketplaces("pawsx", str(release), ["en"], parallel_pairs="shared")


def test_train_file_equal_to_test_leaves_train_empty(release):
    with pytest.raises(FrkitInputError, match=r"marketplace 'en' split 'train' is empty"):
        load_marketplaces("pawsx", str(release), ["en"], train_file="test_2k.tsv", parallel_pairs="shared")


@pytest.mark.skipif(not REAL.is_dir(), reason="real PAWS-X data not on this machine")
def test_real_pawsx_en_es_ja():
    ms = load_marketplaces("pawsx", str(REAL), ["en", "es", "ja"], parallel_pairs="shared")
    sizes = {m.name: m.sizes() for m in ms}
    # dev_2k / test_2k have 2000 rows each; NS rows dropped: es dev 38, es test 1, ja dev 20, ja test 54
    assert {k: v["train"] + v["validation"] for k, v in sizes.items()} == {"en": 2000, "es": 1962, "ja": 1980}
    assert {k: v["test"] for k, v in sizes.items()} == {"en": 2000, "es": 1999, "ja": 1946}
    assert all(0.15 < v["validation"] / (v["train"] + v["validation"]) < 0.25 for v in sizes.values())
    test_ids = set().union(*(set(m.test["id"]) for m in ms))
    for m in ms:
        assert not (set(m.train["id"]) | set(m.validation["id"])) & test_ids
        assert set(m.test["label"]) == {0, 1}
        assert not (m.test["text_a"].eq("NS") | m.test["text_b"].eq("NS")).any()
    en_val = set(ms[0].validation["id"])
    assert all(set(m.validation["id"]) <= en_val for m in ms)  # same validation ids in every language
    small = load_marketplaces(
        "pawsx", str(REAL), ["en", "es", "ja"], max_train=200, max_validation=50, max_test=100, parallel_pairs="shared"
    )
    assert all(m.sizes() == {"train": 200, "validation": 50, "test": 100} for m in small)
    for split in ("train", "validation", "test"):
        assert len({frozenset(m.split(split)["id"]) for m in small}) == 1  # the same ids in every language
