"""Translation back ends, the disk cache and the seeded fraction of §4.3 (T_1..T_{t-1})."""

from __future__ import annotations

import pandas as pd
import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers, processors
from transformers import MarianConfig, MarianMTModel, PreTrainedTokenizerFast

from frkit.data.translate import (
    CachedTranslator,
    MarianTranslator,
    ParallelCorpusTranslator,
    Translator,
    translate_fraction,
)
from frkit.errors import FrkitInputError


class Upper(Translator):
    """A fake engine: upper-cases and tags the target language; counts calls and texts."""

    backend_id = "fake:upper"

    def __init__(self):
        self.calls, self.texts = 0, 0

    def translate(self, texts, source_lang, target_lang):
        self.calls += 1
        self.texts += len(texts)
        return [f"{target_lang}:{t.upper()}" for t in texts]


def table(lang: str, ids, label_offset: int = 0) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "id": [str(i) for i in ids],
            "text_a": [f"{lang} a{i}" for i in ids],
            "text_b": [f"{lang} b{i}" for i in ids],
            "label": [(i + label_offset) % 2 for i in ids],
        }
    )


def test_cache_translates_each_text_once_across_runs(tmp_path):
    inner = Upper()
    cached = CachedTranslator(inner, tmp_path)
    assert cached.translate(["x", "y", "x"], "de", "en") == ["en:X", "en:Y", "en:X"]
    assert (inner.calls, inner.texts) == (1, 2)  # duplicates sent once
    assert cached.translate(["y", "x"], "de", "en") == ["en:Y", "en:X"]
    assert inner.calls == 1
    rerun = CachedTranslator(inner, tmp_path)  # a new process: reads the JSONL
    assert rerun.translate(["x", "z"], "de", "en") == ["en:X", "en:Z"]
    assert (inner.calls, inner.texts) == (2, 3)  # only "z" was new
    assert rerun.translate(["x"], "de", "fr") == ["fr:X"]  # another pair is another key
    assert inner.calls == 3
    assert len(list(tmp_path.glob("*.jsonl"))) == 2


def test_cached_rows_reuse_cache(tmp_path):
    inner = Upper()
    rows = table("de", range(4))
    first = CachedTranslator(inner, tmp_path).translate_rows(rows, "en", source_lang="de")
    assert first["text_a"].tolist() == ["en:DE A0", "en:DE A1", "en:DE A2", "en:DE A3"]
    assert first["id"].tolist() == rows["id"].tolist() and first["label"].tolist() == rows["label"].tolist()
    CachedTranslator(inner, tmp_path).translate_rows(rows, "en", source_lang="de")
    assert inner.calls == 1


def test_parallel_corpus_rows_by_id_with_missing():
    corpus = ParallelCorpusTranslator({"en": table("en", range(0, 8)), "ja": table("ja", range(0, 10))})
    new = table("ja", [9, 2, 5, 8])
    out = corpus.translate_rows(new, "en")
    assert out["id"].tolist() == ["2", "5"]
    assert out["text_a"].tolist() == ["en a2", "en a5"] and out["text_b"].tolist() == ["en b2", "en b5"]
    assert out["label"].tolist() == new.set_index("id").loc[["2", "5"], "label"].tolist()
    assert corpus.last_missing == ["9", "8"] and out.attrs["missing_ids"] == ["9", "8"]
    # text-level lookup goes through the shared id
    assert corpus.translate(["ja b3", "ja a1"], "ja", "en") == ["en b3", "en a1"]
    with pytest.raises(KeyError):
        corpus.translate(["ja a9"], "ja", "en")  # id 9 has no English row
    with pytest.raises(FrkitInputError, match="no 'de' table"):
        corpus.translate_rows(new, "de")


def test_translate_fraction_seeded_each_and_partition():
    new = table("ja", range(20))
    engine = Upper()
    assert translate_fraction(new, 0.0, 0, ["en", "es"], engine, source_lang="ja") == {}
    assert engine.calls == 0
    a = translate_fraction(new, 0.3, 7, ["en", "es"], engine, source_lang="ja")
    b = translate_fraction(new, 0.3, 7, ["en", "es"], engine, source_lang="ja")
    assert set(a) == {"en", "es"} and all(len(df) == 6 for df in a.values())
    assert a["en"]["id"].tolist() == a["es"]["id"].tolist() == b["en"]["id"].tolist()  # same rows into each
    assert a["es"]["text_a"].iloc[0].startswith("es:JA A")
    c = translate_fraction(new, 0.3, 8, ["en", "es"], engine, source_lang="ja")
    assert c["en"]["id"].tolist() != a["en"]["id"].tolist()
    parts = translate_fraction(new, 0.5, 7, ["en", "es"], engine, source_lang="ja", split="partition")
    assert len(parts["en"]) + len(parts["es"]) == 10 and not set(parts["en"]["id"]) & set(parts["es"]["id"])
    with pytest.raises(FrkitInputError, match="fraction"):
        translate_fraction(new, 1.5, 0, ["en"], engine, source_lang="ja")


def test_translate_fraction_with_parallel_corpus():
    corpus = ParallelCorpusTranslator({"en": table("en", range(20)), "es": table("es", range(20))})
    out = translate_fraction(table("ja", range(20)), 0.25, 1, ["en", "es"], corpus)
    assert len(out["en"]) == 5 and out["en"]["text_a"].str.startswith("en a").all()
    assert out["es"]["id"].tolist() == out["en"]["id"].tolist()


@pytest.fixture(scope="module")
def tiny_marian(tmp_path_factory):
    """A random 1-layer Marian with a word-level fast tokenizer (offline; Opus-MT's needs sentencepiece)."""
    folder = tmp_path_factory.mktemp("opus-mt-xx-yy")
    vocab = ["<pad>", "</s>", "<unk>"] + [f"w{i}" for i in range(30)]
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(vocab)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="<unk>", pad_token="<pad>", eos_token="</s>"
    ).save_pretrained(folder)
    torch.manual_seed(0)
    cfg = MarianConfig(
        vocab_size=len(vocab),
        d_model=16,
        encoder_layers=1,
        decoder_layers=1,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=32,
        decoder_ffn_dim=32,
        max_position_embeddings=64,
        pad_token_id=0,
        eos_token_id=1,
        decoder_start_token_id=0,
        forced_eos_token_id=1,
    )
    MarianMTModel(cfg).save_pretrained(folder)
    return folder


def test_marian_batches_and_keeps_order(tiny_marian, tmp_path):
    marian = MarianTranslator({("ja", "en"): tiny_marian}, batch_size=2, max_length=6, device="cpu")
    assert marian.model_id("ja", "en") == str(tiny_marian)
    assert marian.model_id("en", "es") == "Helsinki-NLP/opus-mt-en-es"
    _, model = marian.load(str(tiny_marian))
    calls = []
    generate = model.generate
    model.generate = lambda **kw: calls.append(kw["input_ids"].shape[0]) or generate(**kw)
    texts = ["w1 w2 w3", "w4", "w5 w6", "w1 w2 w3", "w7 w8 w9 w10", "w11"]
    out = marian.translate(texts, "ja", "en")
    assert len(out) == 6 and all(isinstance(t, str) for t in out) and out[0] == out[3]
    assert calls == [2, 2, 1]  # 5 distinct texts in batches of 2
    cached = CachedTranslator(marian, tmp_path)
    assert cached.translate(texts, "ja", "en") == out
    assert cached.translate(texts, "ja", "en") == out and len(calls) == 6  # second time: all cache hits


def test_marian_missing_model_is_a_clear_error(tmp_path):
    with pytest.raises(FrkitInputError, match="could not be loaded"):
        MarianTranslator({("ja", "en"): tmp_path / "nothing"}).translate(["x"], "ja", "en")
