"""ESCI loader on tiny parquet files in the exact official schema, and every bad input."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from frkit.data import load_marketplaces
from frkit.errors import FrkitInputError

EXAMPLES = "shopping_queries_dataset_examples.parquet"
PRODUCTS = "shopping_queries_dataset_products.parquet"
LABELS = "ESCI"  # query q's product k gets LABELS[k % 4]: E, S, C, I


def make_release(
    locales=("us", "es", "jp"), queries_per_split=10, products_per_query=4
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Examples and products in the official schema; product ids repeat across locales (as in the release)."""
    examples, products = [], []
    qid = 0
    for locale in locales:
        for split in ("train", "test"):
            for _ in range(queries_per_split):
                for k in range(products_per_query):
                    pid = f"B{qid:04d}{k}"
                    examples.append(
                        dict(
                            example_id=len(examples),
                            query=f"{locale} query {qid}",
                            query_id=qid,
                            product_id=pid,
                            product_locale=locale,
                            esci_label=LABELS[k % 4],
                            small_version=int(qid % 5 != 0),
                            large_version=1,
                            split=split,
                        )
                    )
                qid += 1
        for pid in sorted({e["product_id"] for e in examples if e["product_locale"] == locale}):
            products.append(
                dict(
                    product_id=pid,
                    product_title=f"{locale} title {pid}",
                    product_description=None,
                    product_bullet_point=None,
                    product_brand="brand",
                    product_color=None,
                    product_locale=locale,
                )
            )
    # the same product id in another locale with another title: the join must use the locale too
    products.append(
        dict(
            product_id="B00000",
            product_title="WRONG LOCALE",
            product_description=None,
            product_bullet_point=None,
            product_brand=None,
            product_color=None,
            product_locale="xx",
        )
    )
    ex = pd.DataFrame(examples).astype(
        {"example_id": "int64", "query_id": "int64", "small_version": "int64", "large_version": "int64"}
    )
    return ex, pd.DataFrame(products)


def write(root: Path, examples: pd.DataFrame, products: pd.DataFrame) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    examples.to_parquet(root / EXAMPLES, index=False)
    products.to_parquet(root / PRODUCTS, index=False)
    return root


@pytest.fixture
def release(tmp_path) -> Path:
    return write(tmp_path / "esci", *make_release())


def test_loads_locales_in_order_with_labels_ids_and_titles(release):
    jp, us = load_marketplaces("esci", str(release), ["jp", "us"], small_version=False)
    assert (jp.name, jp.language, us.name, us.language) == ("jp", "ja", "us", "en")
    assert jp.group == "query_id"
    for m in (jp, us):
        assert len(m.train) + len(m.validation) == 40 and len(m.test) == 40
        assert list(m.test.columns) == ["id", "text_a", "text_b", "label"]
        assert m.test["label"].tolist()[:4] == [1, 1, 0, 0]  # E S C I
        assert m.test["label"].sum() == 20
    row = us.test.iloc[0]
    qid, pid = row["id"].split(":")
    assert row["text_a"] == f"us query {qid}" and row["text_b"] == f"us title {pid}"


def test_validation_is_grouped_by_query(release):
    us = load_marketplaces("esci", str(release), ["us"], small_version=False, validation_fraction=0.4)[0]
    train_q = {i.split(":")[0] for i in us.train["id"]}
    val_q = {i.split(":")[0] for i in us.validation["id"]}
    assert val_q and train_q and not train_q & val_q
    assert len(us.validation) == 4 * len(val_q)  # whole queries move


def test_small_version_filter_is_default(release):
    us = load_marketplaces("esci", str(release), ["us"])[0]
    # queries 0, 5, 10, 15 are not in the small version
    assert len(us.train) + len(us.validation) == 32 and len(us.test) == 32
    assert not {i.split(":")[0] for i in us.test["id"]} & {"10", "15"}


def test_unknown_label_is_named(tmp_path):
    ex, pr = make_release(locales=("us",))
    ex.loc[3, "esci_label"] = "X"
    ex.loc[7, "esci_label"] = "X"
    root = write(tmp_path / "esci", ex, pr)
    with pytest.raises(FrkitInputError, match=r"column 'esci_label' has 2 label\(s\) that are not E/S/C/I.*\"'X'\": 2"):
        load_marketplaces("esci", str(root), ["us"], small_version=False)


def test_binary_labels_are_not_esci_labels(tmp_path):
    ex, pr = make_release(locales=("us",))
    ex["esci_label"] = "1"
    root = write(tmp_path / "esci", ex, pr)
    with pytest.raises(FrkitInputError, match=r"not E/S/C/I.*'1'"):
        load_marketplaces("esci", str(root), ["us"], small_version=False)


def test_missing_file_lists_folder(release):
    (release / PRODUCTS).unlink()
    with pytest.raises(
        FrkitInputError, match=rf"products file not found: .*{PRODUCTS}; files found in .*\['{EXAMPLES}'\]"
    ):
        load_marketplaces("esci", str(release), ["us"])


def test_missing_column_lists_found(tmp_path):
    ex, pr = make_release(locales=("us",))
    root = write(tmp_path / "esci", ex.drop(columns="split"), pr)
    with pytest.raises(
        FrkitInputError, match=r"examples file .*: missing column\(s\) \['split'\]; found columns \['example_id'"
    ):
        load_marketplaces("esci", str(root), ["us"])
    root = write(tmp_path / "esci2", ex, pr.drop(columns="product_title"))
    with pytest.raises(FrkitInputError, match=r"products file .*missing column\(s\) \['product_title'\]"):
        load_marketplaces("esci", str(root), ["us"])


def test_missing_product_is_named(tmp_path):
    ex, pr = make_release(locales=("us",))
    root = write(tmp_path / "esci", ex, pr[pr["product_id"] != "B00011"])
    with pytest.raises(FrkitInputError, match=r"1 example\(s\) reference products missing .*product_id='B00011'"):
        load_marketplaces("esci", str(root), ["us"], small_version=False)


def test_empty_title_names_column_count_and_id(tmp_path):
    ex, pr = make_release(locales=("us",))
    pr.loc[pr["product_id"] == "B00022", "product_title"] = None
    pr.loc[pr["product_id"] == "B00023", "product_title"] = "  "
    root = write(tmp_path / "esci", ex, pr)
    with pytest.raises(
        FrkitInputError,
        match=r"column 'product_title' has 2 empty or missing text value\(s\) "
        r"\(first at row id '2:B00022'\)",
    ):
        load_marketplaces("esci", str(root), ["us"], small_version=False)


def test_unknown_split_value(tmp_path):
    ex, pr = make_release(locales=("us",))
    ex.loc[0, "split"] = "dev"
    root = write(tmp_path / "esci", ex, pr)
    with pytest.raises(FrkitInputError, match=r"column 'split' has value\(s\) \['dev'\]"):
        load_marketplaces("esci", str(root), ["us"], small_version=False)


def test_locale_without_rows_lists_found_locales(tmp_path):
    root = write(tmp_path / "esci", *make_release(locales=("us", "es")))
    with pytest.raises(FrkitInputError, match=r"no rows for locale\(s\) \['jp'\]; locales found: \['es', 'us'\]"):
        load_marketplaces("esci", str(root), ["us", "jp"])


def test_unknown_locale_and_repeated_locale(release):
    with pytest.raises(FrkitInputError, match=r"unknown ESCI locale \['en'\]; expected some of \['us', 'es', 'jp'\]"):
        load_marketplaces("esci", str(release), ["en"])
    with pytest.raises(FrkitInputError, match=r"two marketplaces with one name: \['us'\]"):
        load_marketplaces("esci", str(release), ["us", "us"])


def test_single_class_test(tmp_path):
    ex, pr = make_release(locales=("us",))
    ex.loc[ex["split"] == "test", "esci_label"] = "I"
    root = write(tmp_path / "esci", ex, pr)
    with pytest.raises(FrkitInputError, match=r"'us': test set has a single class \[0\]"):
        load_marketplaces("esci", str(root), ["us"])


def test_subsample_is_stratified(release):
    us = load_marketplaces("esci", str(release), ["us"], small_version=False, max_test=10, max_train=8)[0]
    assert len(us.test) == 10 and us.test["label"].sum() == 5
    assert len(us.train) == 8 and us.train["label"].sum() == 4


def test_locale_emptied_by_small_version(tmp_path):
    ex, pr = make_release(locales=("us", "es"))
    ex.loc[ex["product_locale"] == "es", "small_version"] = 0
    root = write(tmp_path / "esci", ex, pr)
    with pytest.raises(FrkitInputError, match=r"no rows for locale 'es' \(small_version filter on\)"):
        load_marketplaces("esci", str(root), ["us", "es"])
    assert len(load_marketplaces("esci", str(root), ["us", "es"], small_version=False)) == 2
