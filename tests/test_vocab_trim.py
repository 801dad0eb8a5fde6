"""Vocabulary trimming on a tiny SentencePiece-Unigram tokenizer and a tiny random BERT: the trimmed
folder tokenises the texts to the same pieces (ids remapped), gives the same hidden states and is
smaller. The real multilingual-e5-small is only trimmed when FRKIT_REAL_MODEL=1."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoModel, AutoTokenizer, BertConfig, BertModel

from frkit.models import vocab_trim
from frkit.models.vocab_trim import kept_token_ids, trim_vocabulary, trimmed_model_dir

SPECIAL = [("<s>", 0.0), ("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)]
PIECES = SPECIAL + [
    ("▁", -2.0),
    ("▁the", -2.5),
    ("▁a", -3.1),
    ("▁on", -2.8),
    ("▁cat", -3.0),
    ("▁ca", -4.0),
    ("t", -3.3),
    ("s", -3.4),
    ("▁dog", -3.2),
    ("▁do", -4.5),
    ("g", -4.4),
    ("o", -4.1),
    ("▁sat", -3.6),
    ("at", -3.9),
    ("▁mat", -4.2),
    ("▁m", -4.6),
    ("a", -3.7),
    ("c", -4.8),
    ("d", -4.9),
    ("e", -5.0),
    ("h", -5.1),
    ("▁bird", -5.0),
    ("▁fish", -5.5),
    ("▁cats", -6.5),
    ("日本", -3.0),
    ("日", -4.0),
    ("本", -4.3),
    ("語", -4.0),
    ("▁日本", -3.5),
    ("zz", -12.0),
    ("<mask>", 0.0),
]
MASK_ID = len(PIECES) - 1
EXTRA_ROWS = 3  # like multilingual-e5-small: more embedding rows than tokenizer pieces
TEXTS = [
    "the cat sat",
    ("the dog", "a cat on the mat"),
    "日本語 the cats",
    ("xyz dog", "mat  sat"),  # x, y, z have no piece: <unk>
    "cat",
    ("the", "日本"),
]


def build_unigram_folder(folder: Path, tokenizer_class: str) -> Path:
    """A Unigram tokenizer with an XLM-R post-processor and a tiny random BertModel as one HF folder."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    folder.mkdir(parents=True, exist_ok=True)
    tok = Tokenizer(models.Unigram(PIECES, unk_id=3, byte_fallback=False))
    tok.normalizer = normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    tok.add_special_tokens(["<s>", "<pad>", "</s>", "<unk>", "<mask>"])
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>", special_tokens=[("<s>", 0), ("</s>", 2)]
    )
    tok.save(str(folder / "tokenizer.json"))
    specials = {
        "bos_token": "<s>",
        "eos_token": "</s>",
        "sep_token": "</s>",
        "cls_token": "<s>",
        "unk_token": "<unk>",
        "pad_token": "<pad>",
        "mask_token": "<mask>",
    }
    (folder / "tokenizer_config.json").write_text(
        json.dumps({"tokenizer_class": tokenizer_class, "model_max_length": 64, **specials})
    )
    AutoTokenizer.from_pretrained(folder).save_pretrained(folder)  # the layout transformers itself writes

    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(PIECES) + EXTRA_ROWS,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
        pad_token_id=1,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    BertModel(config, add_pooling_layer=False).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module", params=["XLMRobertaTokenizer", "PreTrainedTokenizerFast"])
def unigram_dir(request, tmp_path_factory) -> Path:
    return build_unigram_folder(tmp_path_factory.mktemp("unigram"), request.param)


def encode(folder: Path, texts) -> list[list[int]]:
    tok = AutoTokenizer.from_pretrained(folder)
    return [tok(t)["input_ids"] if isinstance(t, str) else tok(*t)["input_ids"] for t in texts]


def hidden_states(folder: Path, texts) -> list[torch.Tensor]:
    tok = AutoTokenizer.from_pretrained(folder)
    model = AutoModel.from_pretrained(folder, add_pooling_layer=False).eval()
    singles = [t for t in texts if isinstance(t, str)]
    pairs = [t for t in texts if not isinstance(t, str)]
    out = []
    with torch.no_grad():
        for batch in (
            tok(singles, padding=True, return_tensors="pt"),
            tok([a for a, _ in pairs], [b for _, b in pairs], padding=True, return_tensors="pt"),
        ):
            out.append(model(**batch).last_hidden_state * batch["attention_mask"].unsqueeze(-1))
    return out


def assert_same_tokenisation(source: Path, trimmed: Path, texts) -> np.ndarray:
    kept = np.array(json.loads((trimmed / "frkit_trim.json").read_text())["kept_ids"])
    old, new = encode(source, texts), encode(trimmed, texts)
    for text, a, b in zip(texts, old, new):
        assert kept[b].tolist() == a, text
    return kept


# --------------------------------------------------------------------------- tiny model


def test_trimmed_folder_tokenises_identically_and_gives_identical_outputs(unigram_dir, tmp_path):
    out = trim_vocabulary(unigram_dir, TEXTS, tmp_path / "trimmed")
    kept = assert_same_tokenisation(unigram_dir, out, TEXTS)

    for full, small in zip(hidden_states(unigram_dir, TEXTS), hidden_states(out, TEXTS)):
        torch.testing.assert_close(small, full, atol=1e-6, rtol=0)

    config = json.loads((out / "config.json").read_text())
    assert config["vocab_size"] == len(kept) < len(PIECES)
    model = AutoModel.from_pretrained(out, add_pooling_layer=False)
    assert model.embeddings.word_embeddings.weight.shape[0] == len(kept)
    full = AutoModel.from_pretrained(unigram_dir, add_pooling_layer=False)
    torch.testing.assert_close(
        model.embeddings.word_embeddings.weight,
        full.embeddings.word_embeddings.weight[torch.tensor(kept)],
        atol=0,
        rtol=0,
    )


def test_kept_ids_hold_specials_unk_and_the_lowest_score(unigram_dir):
    kept = kept_token_ids(unigram_dir, TEXTS)
    names = {PIECES[i][0] for i in kept}
    assert {"<s>", "<pad>", "</s>", "<unk>", "<mask>"} <= names
    assert "zz" in names  # lowest score: fixes the unknown-character penalty
    assert not names & {"▁bird", "▁fish"}  # never produced by the texts
    assert {"▁cat", "▁sat", "▁dog", "▁日本", "語"} <= names


def test_special_tokens_are_remapped(unigram_dir, tmp_path):
    out = trim_vocabulary(unigram_dir, ["the cat <mask>"], tmp_path / "trimmed")
    tok = AutoTokenizer.from_pretrained(out)
    kept = json.loads((out / "frkit_trim.json").read_text())["kept_ids"]
    assert (tok.bos_token_id, tok.pad_token_id, tok.eos_token_id, tok.unk_token_id) == (0, 1, 2, 3)
    assert tok.mask_token_id == len(kept) - 1 and kept[-1] == MASK_ID
    source = AutoTokenizer.from_pretrained(unigram_dir)
    tokens = tok.convert_ids_to_tokens(tok("the cat <mask>")["input_ids"])
    assert tokens == source.convert_ids_to_tokens(source("the cat <mask>")["input_ids"])
    assert tokens[:3] == ["<s>", "▁the", "▁cat"] and tokens[-2:] == ["<mask>", "</s>"]
    assert tok("the", "cat", padding="max_length", max_length=8)["input_ids"][-1] == tok.pad_token_id
    saved = json.loads((out / "tokenizer.json").read_text())
    assert saved["post_processor"]["special_tokens"]["</s>"]["ids"] == [2]
    assert {t["content"]: t["id"] for t in saved["added_tokens"]}["<mask>"] == len(kept) - 1
    assert json.loads((out / "config.json").read_text())["pad_token_id"] == 1


def test_trimmed_model_dir_is_cached_by_content_and_kept_ids(unigram_dir, tmp_path, monkeypatch):
    first = trimmed_model_dir(unigram_dir, TEXTS, tmp_path / "cache")
    assert (first / ".complete").is_file()
    assert_same_tokenisation(unigram_dir, first, TEXTS)

    monkeypatch.setattr(vocab_trim, "write_trimmed", lambda *a, **k: pytest.fail("must reuse the cached folder"))
    assert trimmed_model_dir(unigram_dir, TEXTS, tmp_path / "cache") == first  # same texts
    assert trimmed_model_dir(unigram_dir, TEXTS[::-1], tmp_path / "cache") == first  # same kept ids
    monkeypatch.undo()
    other = trimmed_model_dir(unigram_dir, TEXTS + ["bird"], tmp_path / "cache")
    assert other != first and (other / ".complete").is_file()
    assert not [p for p in (tmp_path / "cache").iterdir() if p.name.startswith(".trim-")]


def test_wordpiece_tokenizers_are_not_trimmed(tmp_path):
    from transformers import BertTokenizerFast

    (tmp_path / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "cat", "##s"]) + "\n")
    BertTokenizerFast(vocab_file=str(tmp_path / "vocab.txt")).save_pretrained(tmp_path)
    with pytest.raises(NotImplementedError, match="Unigram"):
        trim_vocabulary(tmp_path, ["cats"], tmp_path / "out")


# --------------------------------------------------------------------------- the real model

PAWSX = Path(os.environ.get("FRKIT_PAWSX", "/work/shared/data/pawsx/x-final"))


def pawsx_pairs(lang: str, n: int) -> list[tuple[str, str]]:
    with open(PAWSX / lang / "dev_2k.tsv", encoding="utf-8", newline="") as f:
        rows = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        next(rows)
        return [(row[1], row[2]) for _, row in zip(range(n), rows)]


@pytest.mark.skipif(
    os.environ.get("FRKIT_REAL_MODEL") != "1" or not PAWSX.is_dir(),
    reason="set FRKIT_REAL_MODEL=1 (and have PAWS-X) to trim the real multilingual-e5-small",
)
def test_real_e5_trimmed_on_pawsx_is_identical(tmp_path):
    from frkit.models.offline_e5 import ensure_offline_e5

    if not os.environ.get("FRKIT_WHEELS") and Path("/tmp/wh").is_dir():
        os.environ["FRKIT_WHEELS"] = "/tmp/wh"
    source = ensure_offline_e5()
    texts = [p for lang in ("en", "es", "ja") for p in pawsx_pairs(lang, 16)]
    texts += [a for a, _ in texts[:8]]
    out = trimmed_model_dir(source, texts, tmp_path / "trimmed")
    kept = assert_same_tokenisation(source, out, texts)
    assert len(kept) < 5000
    for full, small in zip(hidden_states(source, texts), hidden_states(out, texts)):
        torch.testing.assert_close(small, full, atol=1e-5, rtol=0)
