"""sha256 manifests of folders (checkpoints): written with the folder, checked before it is loaded.

A checkpoint is a folder of files written by the method (and by peft); ``checksums.json`` lists each file's
size and sha256. ``verify`` names the first file that is missing, of another size or of other content, so a
truncated, zero-filled or partly deleted checkpoint is never loaded as if it were the trained model.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from frkit import atomic

MANIFEST = "checksums.json"
_CHUNK = 1 << 20


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.name != MANIFEST)


def write_manifest(folder: str | Path) -> dict:
    """Hash every file under ``folder`` into ``folder/checksums.json`` (atomically); returns the manifest."""
    folder = Path(folder)
    manifest = {
        "algorithm": "sha256",
        "files": {
            p.relative_to(folder).as_posix(): {"size": p.stat().st_size, "sha256": sha256_file(p)}
            for p in _files(folder)
        },
    }
    atomic.write_json(folder / MANIFEST, manifest)
    return manifest


def has_manifest(folder: str | Path) -> bool:
    return (Path(folder) / MANIFEST).is_file()


def verify(folder: str | Path) -> str | None:
    """None when every file of the manifest is there with its size and sha256; else what is wrong (one line).

    A folder without a manifest (written by an older frkit) cannot be checked: None, and the caller decides."""
    folder = Path(folder)
    if not folder.is_dir():
        return f"folder {folder} is missing"
    if not has_manifest(folder):
        return None
    try:
        files = json.loads((folder / MANIFEST).read_text())["files"]
    except (OSError, ValueError, KeyError, TypeError) as err:
        return f"{folder / MANIFEST} is unreadable ({err})"
    for rel, want in files.items():
        path = folder / rel
        if not path.is_file():
            return f"{path} is missing"
        size = path.stat().st_size
        if size != want["size"]:
            return f"{path} has {size} bytes, {want['size']} were written"
        if sha256_file(path) != want["sha256"]:
            return f"{path} does not match its sha256 (its content changed after it was written)"
    return None
