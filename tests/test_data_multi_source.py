"""data_source "mixed": marketplaces from STS-B and PAWS-X in one run (issue 30's marketplaces that differ in more
than language): same splits as a single-source run, ids that cannot collide across corpora, translations looked up
in the new marketplace's own corpus, the trimmed vocabulary covering them, and bad names refused up front."""

import pytest
from conftest import write_pawsx

from frkit.data import load_marketplaces
from frkit.errors import FrkitInputError
from frkit.models.source import marketplace_texts
from tests.test_data_stsb import write_release


@pytest.fixture
def sources(tmp_path):
    return {
        "stsb": str(write_release(tmp_path / "stsb", langs=("en", "es", "ja"), n=(60, 30, 20))),
        "pawsx": str(write_pawsx(tmp_path / "pawsx" / "x-final", n_train=80, n_test=24)),
    }


def test_each_marketplace_is_its_source_loaded_alone_with_prefixed_ids(sources):
    mixed = load_marketplaces("mixed", None, ["stsb_en", "pawsx_es", "stsb_ja"], source_paths=sources, seed=3)
    assert [m.name for m in mixed] == ["stsb_en", "pawsx_es", "stsb_ja"]
    assert [m.language for m in mixed] == ["en", "es", "ja"]
    stsb = {m.language: m for m in load_marketplaces("stsb", sources["stsb"], ["en", "ja"], seed=3)}
    (pawsx,) = load_marketplaces("pawsx", sources["pawsx"], ["es"], seed=3)
    alone = {"stsb_en": ("stsb", stsb["en"]), "pawsx_es": ("pawsx", pawsx), "stsb_ja": ("stsb", stsb["ja"])}
    for m in mixed:
        source, single = alone[m.name]
        for split in ("train", "validation", "test"):
            got, want = m.split(split), single.split(split)
            assert list(got["id"]) == [f"{source}:{i}" for i in want["id"]], (m.name, split)
            assert list(got["text_a"]) == list(want["text_a"]) and list(got["label"]) == list(want["label"])
    # the prefix keeps another corpus's numbering from ever matching (PAWS-X numbers its pairs 1..n)
    assert not set(mixed[0].train["id"]) & set(mixed[1].train["id"])
    # stsb_en and stsb_ja still split STS-B's pairs into disjoint shares
    assert not set(mixed[0].train["id"]) & set(mixed[2].train["id"])


def test_translations_come_from_the_new_marketplaces_own_corpus(sources):
    mixed = load_marketplaces("mixed", None, ["stsb_en", "pawsx_es", "stsb_ja"], source_paths=sources)
    pawsx_es = mixed[1]
    assert sorted(pawsx_es.translations) == ["en", "es", "ja"]
    english = pawsx_es.translations["en"].set_index("id")
    # D_t's pair in English is the PAWS-X pair of that id (conftest words are per language), never STS-B's
    row = pawsx_es.train.iloc[0]
    assert row["id"] in english.index and row["id"].startswith("pawsx:")
    assert english.loc[row["id"], "label"] == row["label"]
    assert not english.index.isin(mixed[0].parallel_corpus["id"]).any()
    # the trimmed vocabulary must cover the texts AD translates into, not only the marketplaces' own splits
    texts = {a for a, _ in marketplace_texts(mixed, with_corpora=True)}
    assert set(english["text_a"]) <= texts
    assert not set(english["text_a"]) <= {a for a, _ in marketplace_texts(mixed)}  # other methods keep a small vocab


def test_attention_distillation_translates_from_the_new_corpus(sources):
    from frkit.data.translate import translate_fraction
    from frkit.methods.attention_distillation import AttentionDistillation

    mixed = load_marketplaces("mixed", None, ["stsb_en", "pawsx_es"], source_paths=sources)
    method = AttentionDistillation.__new__(AttentionDistillation)
    method.cfg = type("Cfg", (), {"translator": "parallel"})()
    translator = method.translator(mixed)
    out = translate_fraction(mixed[1].train, 0.5, 0, ["en"], translator, source_lang="es")
    english = mixed[1].translations["en"].set_index("id")
    assert len(out["en"]) == len(mixed[1].train) // 2
    assert list(out["en"]["text_a"]) == list(english.loc[out["en"]["id"], "text_a"])


@pytest.mark.parametrize(
    "names, paths, match",
    [
        (["stsb_en", "esci_us"], None, r"marketplace 'esci_us' must be named <source>_<language>"),
        (["en", "es"], None, r"marketplace 'en' must be named <source>_<language>"),
        (["stsb_en", "pawsx_es"], {"stsb": "x"}, r"'source_paths' has no folder for source\(s\) \['pawsx'\]"),
        (["stsb_xx"], "ok", r"STS-B: no files for language\(s\) \['xx'\]"),
    ],
)
def test_bad_names_and_paths_are_refused(sources, names, paths, match):
    with pytest.raises(FrkitInputError, match=match):
        load_marketplaces("mixed", None, names, source_paths=sources if paths == "ok" else paths)


def test_source_paths_belong_to_mixed_only(sources):
    with pytest.raises(FrkitInputError, match="source_paths applies to source 'mixed' only, not 'stsb'"):
        load_marketplaces("stsb", sources["stsb"], ["en"], source_paths=sources)
