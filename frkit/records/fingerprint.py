"""Fingerprints of what a run trains on, so a resume can refuse changed data or a changed model.

data:  per marketplace and split, the row count and a sha256 of the ids, texts and labels in table order
       (after splitting and subsampling: exactly the rows the run sees).
model: per model file (config, tokenizer, weights) its size and sha256; a Hub id is recorded by name.
A resumed run compares both with what its folder recorded and names every difference (``differences``).

A marketplace is anything with ``.name`` and ``.split(name) -> DataFrame`` (frkit.data's ``Marketplace``): the
records sit below the data layer, so the columns and splits hashed are named here (tests check they are the data
layer's ``COLUMNS`` / ``SPLITS``).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Protocol

from frkit.records.checksums import sha256_file

VERSION = 1
COLUMNS = ("id", "text_a", "text_b", "label")  # frkit.data.marketplace.COLUMNS, in that order
SPLITS = ("train", "validation", "test")  # frkit.data.marketplace.SPLITS
# files that make a model folder what it is; README, .gitattributes, onnx/ and the like do not change training
MODEL_SUFFIXES = (".json", ".txt", ".model", ".safetensors", ".bin", ".msgpack", ".h5")
_MODEL_HASHES: dict[tuple, str] = {}  # per process: a sweep hashes its model once, not once per run


class HasSplits(Protocol):
    name: str

    def split(self, name: str): ...


def table_digest(table) -> str:
    h = hashlib.sha256()
    for row in zip(*(table[c].astype(str) for c in COLUMNS)):
        h.update("\x1f".join(row).encode("utf-8"))
        h.update(b"\x1e")
    return h.hexdigest()


def data_fingerprint(marketplaces: Iterable[HasSplits]) -> dict:
    return {
        m.name: {s: {"rows": len(m.split(s)), "sha256": table_digest(m.split(s))} for s in SPLITS} for m in marketplaces
    }


def _file_hash(path: Path) -> str:
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _MODEL_HASHES:
        _MODEL_HASHES[key] = sha256_file(path)
    return _MODEL_HASHES[key]


def model_fingerprint(source: str | os.PathLike) -> dict:
    folder = Path(source)
    if not folder.is_dir():
        return {"hub_id": str(source)}
    files = sorted(
        p
        for p in folder.iterdir()
        if p.is_file() and not p.name.startswith(".") and p.suffix in MODEL_SUFFIXES and p.name.lower() != "readme.md"
    )
    return {"files": {p.name: {"size": p.stat().st_size, "sha256": _file_hash(p)} for p in files}}


def fingerprint(marketplaces: Iterable[HasSplits], model_source: str | os.PathLike) -> dict:
    return {"version": VERSION, "data": data_fingerprint(marketplaces), "model": model_fingerprint(model_source)}


def differences(saved: dict, now: dict) -> list[str]:
    """What changed from ``saved`` to ``now``, one phrase each (empty: the same data and model)."""
    out = []
    old_data, new_data = saved.get("data", {}), now.get("data", {})
    for name in sorted(set(old_data) | set(new_data)):
        for split in SPLITS:
            a, b = old_data.get(name, {}).get(split), new_data.get(name, {}).get(split)
            if a == b:
                continue
            if a is None or b is None:
                out.append(f"data of marketplace {name!r} split {split!r} {'appeared' if a is None else 'is gone'}")
            elif a["rows"] != b["rows"]:
                out.append(f"data of marketplace {name!r} split {split!r}: {a['rows']} rows -> {b['rows']} rows")
            else:
                out.append(
                    f"data of marketplace {name!r} split {split!r}: same {a['rows']} rows, other ids, texts or labels"
                )
    old_model, new_model = saved.get("model", {}), now.get("model", {})
    if old_model != new_model:
        if "files" in old_model and "files" in new_model:
            a, b = old_model["files"], new_model["files"]
            changed = sorted(f for f in set(a) | set(b) if a.get(f) != b.get(f))
            out.append(f"model files changed: {changed}")
        else:
            out.append(
                f"model changed: {old_model.get('hub_id', 'a local folder')} -> "
                f"{new_model.get('hub_id', 'a local folder')}"
            )
    return out
