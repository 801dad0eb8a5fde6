"""Hub source: the normalisation on in-memory ``datasets`` objects, and ``load_hub`` with a stand-in fetcher."""

from __future__ import annotations

import pytest
from datasets import ClassLabel, Dataset, DatasetDict, Features, Value

from frkit.data import esci_from_hub, load_marketplaces, pawsx_from_hub
from frkit.data.hub import resolve_hub
from frkit.errors import FrkitInputError

PAWS_FEATURES = Features(
    {
        "id": Value("int32"),
        "sentence1": Value("string"),
        "sentence2": Value("string"),
        "label": ClassLabel(names=["0", "1"]),
    }
)


def paws_split(lang: str, ids, overrides: dict | None = None) -> Dataset:
    rows = {
        "id": list(ids),
        "sentence1": [f"{lang} a {i}" for i in ids],
        "sentence2": [f"{lang} b {i}" for i in ids],
        "label": [i % 2 for i in ids],
    }
    for col, (pos, value) in (overrides or {}).items():
        rows[col][pos] = value
    return Dataset.from_dict(rows, features=PAWS_FEATURES)


def paws_dict(lang: str, **overrides) -> DatasetDict:
    return DatasetDict(
        train=paws_split(lang, range(1, 41), overrides.get("train")),
        validation=paws_split(lang, range(50, 60)),
        test=paws_split(lang, range(100, 110), overrides.get("test")),
    )


def test_pawsx_from_hub_drops_placeholders_and_unlabelled_rows():
    by_lang = {"en": paws_dict("en"), "ja": paws_dict("ja", train={"sentence1": (0, "NS")})}
    by_lang["ja"]["train"] = by_lang["ja"]["train"].cast_column("label", Value("int64"))
    by_lang["ja"]["train"] = by_lang["ja"]["train"].map(lambda r: {"label": -1 if r["id"] == 2 else r["label"]})
    en, ja = pawsx_from_hub(by_lang, validation_fraction=0.25, pairs="shared")
    assert len(en.train) + len(en.validation) == 40
    assert len(ja.train) + len(ja.validation) == 38  # id 1 NS, id 2 label -1
    assert en.test["id"].tolist()[:2] == ["100", "101"] and set(en.test["label"]) == {0, 1}
    assert set(ja.validation["id"]) == set(en.validation["id"]) - {"1", "2"}  # same ids, parallel split
    assert list(ja.train.columns) == ["id", "text_a", "text_b", "label"]


def test_pawsx_from_hub_train_split_and_leaks():
    by_lang = {"en": paws_dict("en"), "es": paws_dict("es", test={"id": (0, 5)})}  # es test holds en's pair 5
    en, es = pawsx_from_hub(by_lang, train_split="validation", validation_fraction=0.3, pairs="shared")
    assert set(en.train["id"]) | set(en.validation["id"]) == {str(i) for i in range(50, 60)}
    en, es = pawsx_from_hub(by_lang, pairs="shared")
    assert "5" not in set(en.train["id"]) | set(en.validation["id"])
    with pytest.raises(FrkitInputError, match=r"no split 'dev'; splits found: \['test', 'train', 'validation'\]"):
        pawsx_from_hub(by_lang, train_split="dev", pairs="shared")


def test_pawsx_from_hub_missing_column():
    d = paws_dict("en")
    d["test"] = d["test"].rename_column("sentence2", "s2")
    with pytest.raises(
        FrkitInputError,
        match=r"missing column\(s\) \['sentence2'\]; found columns \['id', 'sentence1', 's2', 'label'\]",
    ):
        pawsx_from_hub({"en": d}, pairs="shared")


def esci_split(split: str, start: int) -> Dataset:
    rows = []
    for q in range(start, start + 10):
        for k, label in enumerate(("Exact", "Substitute", "Complement", "Irrelevant")):
            for locale in ("us", "jp"):
                rows.append(
                    dict(
                        query=f"{locale} q{q}",
                        query_id=q,
                        product_id=f"P{q}{k}",
                        product_locale=locale,
                        esci_label=label,
                        small_version=int(q % 2 == 0),
                        large_version=1,
                        product_title=f"{locale} t{q}{k}",
                        product_description=None,
                        product_text="long",
                    )
                )
    return Dataset.from_list(rows)


def test_esci_from_hub_full_label_names_and_locales():
    dsdict = DatasetDict(train=esci_split("train", 0), test=esci_split("test", 100))
    (jp,) = esci_from_hub(dsdict, ["jp"], small_version=False, validation_fraction=0.3)
    assert (jp.name, jp.language) == ("jp", "ja")
    assert len(jp.train) + len(jp.validation) == 40 and len(jp.test) == 40
    assert jp.test["label"].tolist()[:4] == [1, 1, 0, 0] and jp.test["id"].iloc[0] == "100:P1000"
    assert jp.test["text_b"].iloc[0] == "jp t1000"
    (us,) = esci_from_hub(dsdict, ["us"], small_version=True)
    assert len(us.test) == 20


def test_esci_from_hub_bad_label_and_missing_split():
    train = esci_split("train", 0).map(lambda r: {"esci_label": "Unknown" if r["query_id"] == 3 else r["esci_label"]})
    with pytest.raises(FrkitInputError, match=r"column 'esci_label' has 4 label\(s\) that are not E/S/C/I.*'Unknown'"):
        esci_from_hub(DatasetDict(train=train, test=esci_split("test", 100)), ["us"], small_version=False)
    with pytest.raises(FrkitInputError, match=r"split 'test'\): no such split; splits found: \['train'\]"):
        esci_from_hub(DatasetDict(train=train), ["us"])


def test_load_marketplaces_hub_with_stand_in_fetcher(monkeypatch):
    calls = []

    def fake_load_dataset(path, *config):
        calls.append((path, *config))
        return paws_dict(config[0])

    import datasets

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    ms = load_marketplaces("hub", "google-research-datasets/paws-x", ["ja", "en"], max_test=4)
    assert [m.name for m in ms] == ["ja", "en"] and all(len(m.test) == 4 for m in ms)
    assert calls == [("google-research-datasets/paws-x", "ja"), ("google-research-datasets/paws-x", "en")]
    assert ms[0].test["id"].tolist() == ms[1].test["id"].tolist()  # parallel subsample

    def unreachable(path, *config):
        raise ConnectionError("no network")

    monkeypatch.setattr(datasets, "load_dataset", unreachable)
    with pytest.raises(FrkitInputError, match=r"Hub dataset 'tasksource/esci' .*could not be loaded: no network"):
        load_marketplaces("hub", "tasksource/esci", ["us"])


def test_hub_kind_and_names():
    assert resolve_hub(None, "esci") == ("esci", "tasksource/esci")
    assert resolve_hub("me/my-paws-x-copy", None) == ("pawsx", "me/my-paws-x-copy")
    with pytest.raises(FrkitInputError, match=r"cannot tell whether dataset 'me/data'.*hub_kind"):
        load_marketplaces("hub", "me/data", ["en"])
    with pytest.raises(FrkitInputError, match=r"unknown Hub esci name \['en'\]; expected some of \['us', 'es', 'jp'\]"):
        load_marketplaces("hub", None, ["en"], hub_kind="esci")
