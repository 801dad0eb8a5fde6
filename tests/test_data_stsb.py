"""The STS-B multilingual source: release layout, labels by threshold, the dev split as validation, bad input."""

from pathlib import Path

import pytest

from frkit.data import load_marketplaces
from frkit.errors import FrkitInputError

REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "stsb_multi_mt"


def sentences(lang: str, split: str, n: int, scores=None):
    scores = scores or [round(5 * ((i * 7) % 11) / 10, 2) for i in range(n)]  # spread over [0, 5]
    return [(f"{lang} {split} a {i}", f"{lang} {split} b {i}", s) for i, s in zip(range(n), scores)]


def write_release(root: Path, langs=("en", "es"), n=(40, 20, 20)) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for lang in langs:
        for split, count in zip(("train", "dev", "test"), n):
            rows = sentences(lang, split, count)
            (root / f"stsb-{lang}-{split}.csv").write_text(
                "".join(f'{a},"{b}",{s}\n' for a, b, s in rows), encoding="utf-8"
            )
    return root


def load(root, langs=("en", "es"), **kw):
    return load_marketplaces("stsb", str(root), list(langs), **kw)


def test_labels_ids_and_release_splits(tmp_path):
    root = write_release(tmp_path / "stsb")
    en, es = load(root, parallel_pairs="shared")
    assert len(en.test) == 20 and set(en.test["id"]) == {f"test-{i}" for i in range(20)}
    assert set(en.validation["id"]) == {f"dev-{i}" for i in range(20)}  # the release's dev file, whole
    assert set(en.train["id"]) == {f"train-{i}" for i in range(40)}
    expected = {f"train-{i}": int(s >= 3.0) for i, (_, _, s) in enumerate(sentences("en", "train", 40))}
    assert dict(zip(en.train["id"], en.train["label"])) == expected
    assert list(es.train["text_a"][:1]) == ["es train a 0"]
    strict = load(root, stsb_threshold=4.0, parallel_pairs="shared")[0]
    assert strict.train["label"].sum() < en.train["label"].sum()


def test_disjoint_shares_keep_test_sets_whole(tmp_path):
    root = write_release(tmp_path / "stsb", langs=("en", "es", "ja"), n=(60, 30, 20))
    ms = load(root, ("en", "es", "ja"))
    train_ids = [set(m.train["id"]) | set(m.validation["id"]) for m in ms]
    assert all(not (a & b) for i, a in enumerate(train_ids) for b in train_ids[i + 1 :])
    assert set().union(*train_ids) == {f"train-{i}" for i in range(60)} | {f"dev-{i}" for i in range(30)}
    assert all(set(m.test["id"]) == {f"test-{i}" for i in range(20)} for m in ms)
    assert all(len(m.parallel_corpus) == 90 for m in ms)  # every non-test pair, for translation look-ups


@pytest.mark.parametrize(
    "edit, match",
    [
        (lambda f: f.write_text("a,b,3.0\nc,d,5.5\n"), r"stsb-en-train\.csv row 2: score '5\.5' is outside \[0, 5\]"),
        (lambda f: f.write_text("a,b,3.0\nc,d,high\n"), r"stsb-en-train\.csv row 2: score 'high' is not a number"),
        (lambda f: f.write_text("a,b,3.0\n ,d,1.0\n"), r"stsb-en-train\.csv row 2: sentence1 is empty"),
        (lambda f: f.write_text("a,b,3.0\nc,d\n"), r"stsb-en-train\.csv row 2: 2 field\(s\)"),
        (lambda f: f.write_text("sentence1,sentence2,score\na,b,3\n"), r"row 1: score 'score' is not a number"),
        (lambda f: f.write_bytes(b"a,b,3.0\n\xff\xfe,d,1.0\n"), r"stsb-en-train\.csv could not be read as UTF-8"),
        (
            lambda f: f.with_name("stsb-en-dev.csv").unlink(),
            r"STS-B validation file not found: .*stsb-en-dev\.csv; files found in",
        ),
    ],
)
def test_bad_files_name_file_row_and_value(tmp_path, edit, match):
    root = write_release(tmp_path / "stsb")
    edit(root / "stsb-en-train.csv")
    with pytest.raises(FrkitInputError, match=match):
        load(root)


def test_missing_language_and_unequal_parallel_files(tmp_path):
    root = write_release(tmp_path / "stsb")
    with pytest.raises(
        FrkitInputError, match=r"no files for language\(s\) \['fr'\].*languages found there: \['en', 'es'\]"
    ):
        load(root, ("en", "fr"))
    (root / "stsb-es-dev.csv").write_text("x,y,1.0\n")
    with pytest.raises(FrkitInputError, match=r"STS-B validation: the parallel files have different row counts"):
        load(root)
    with pytest.raises(FrkitInputError, match=r"folder not found"):
        load(tmp_path / "nowhere")


@pytest.mark.skipif(not REAL.is_dir(), reason="real STS-B multilingual data not on this machine")
def test_real_stsb_en_es_ja():
    shared = load(REAL, ("en", "es", "ja"), parallel_pairs="shared")
    assert [m.sizes() for m in shared] == [{"train": 5749, "validation": 1500, "test": 1379}] * 3
    assert 0.5 < shared[0].train["label"].mean() < 0.55  # about 52% positive in train (data README)
    disjoint = load(REAL, ("en", "es", "ja"))
    assert sum(len(m.train) for m in disjoint) == 5749 and sum(len(m.validation) for m in disjoint) == 1500
    assert all(len(m.test) == 1379 for m in disjoint)
