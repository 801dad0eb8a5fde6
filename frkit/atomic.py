"""One way to write a file: a temp file beside it, flushed and fsynced, renamed over the target, the folder fsynced.

A reader (or a resumed run after a kill or a power cut) then sees either the old file or the new one, never a
half-written one. Every file frkit writes goes through here: run folders, checkpoints, sweep results, reports.
JSON is strict: NaN / Infinity become ``null`` (``allow_nan=False``), so any JSON parser reads what frkit wrote.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

COMPLETE_MARKER = ".complete"  # the last file written into a cached folder: a folder without it is unfinished


def fsync_dir(folder: str | Path) -> None:
    """Make a rename / new entry in ``folder`` durable (a no-op where folders cannot be opened, e.g. Windows)."""
    try:
        fd = os.open(str(folder), os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def fsync_file(path: str | Path) -> None:
    with open(path, "rb+") as fh:
        os.fsync(fh.fileno())


def _tmp_for(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def write_with(path: str | Path, writer: Callable[[Path], None]) -> Path:
    """Atomically create ``path`` by ``writer(tmp_path)`` (any library that writes to a path: safetensors, pandas)."""
    path = Path(path)
    tmp = _tmp_for(path)
    try:
        writer(tmp)
        fsync_file(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)
    return path


def write_bytes(path: str | Path, data: bytes) -> Path:
    return write_with(path, lambda tmp: tmp.write_bytes(data))


def write_text(path: str | Path, text: str, encoding: str = "utf-8") -> Path:
    return write_with(path, lambda tmp: tmp.write_text(text, encoding=encoding))


def strict_json(value: Any) -> Any:
    """``value`` with NaN / +-Infinity as None and numpy scalars / arrays as plain Python (what strict JSON holds)."""
    if isinstance(value, dict):
        return {k: strict_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict_json(v) for v in value]
    if isinstance(value, (np.ndarray, np.generic)) or type(value).__name__ == "Tensor":  # numpy / torch values
        return strict_json(value.tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def dumps_json(value: Any, indent: int | None = 2, **kwargs) -> str:
    return json.dumps(strict_json(value), indent=indent, allow_nan=False, **kwargs)


def write_json(path: str | Path, value: Any, indent: int | None = 2, **kwargs) -> Path:
    return write_text(path, dumps_json(value, indent=indent, **kwargs) + "\n")


def save_tensors(path: str | Path, tensors: dict, metadata: dict | None = None) -> Path:
    """safetensors file of ``tensors`` (moved to CPU, made contiguous), written atomically."""
    from safetensors.torch import save_file

    state = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    return write_with(path, lambda tmp: save_file(state, str(tmp), metadata=metadata))


def write_csv(path: str | Path, frame, **to_csv_kwargs) -> Path:
    return write_with(path, lambda tmp: frame.to_csv(tmp, **to_csv_kwargs))


def fsync_tree(folder: str | Path) -> None:
    """fsync every file and folder under ``folder`` (files a library wrote in place, e.g. peft's save_pretrained)."""
    folder = Path(folder)
    for root, _dirs, files in os.walk(folder):
        for name in files:
            fsync_file(Path(root) / name)
        fsync_dir(root)


def replace_dir(tmp: str | Path, final: str | Path) -> Path:
    """Move the finished folder ``tmp`` to ``final`` (replacing it), durably: contents fsynced, then renamed."""
    tmp, final = Path(tmp), Path(final)
    fsync_tree(tmp)
    if final.exists():
        old = final.with_name(f".{final.name}.{os.getpid()}.old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, final)
    fsync_dir(final.parent)
    return final


def publish_dir(built: str | Path, folder: str | Path, marker: str = COMPLETE_MARKER) -> None:
    """Rename the finished cache folder ``built`` (holding ``marker``, written last) to ``folder``: a stale unfinished
    ``folder`` (no marker: a crashed build) is replaced, a finished one is kept (another process finished first)."""
    built, folder = Path(built), Path(folder)
    if folder.exists():
        if (folder / marker).is_file():
            return
        shutil.rmtree(folder)
    try:
        os.replace(built, folder)
    except OSError:
        if not (folder / marker).is_file():
            raise
