"""What a run was made with: package versions, git revision, a hash of frkit's sources, seed, Python, hardware.

``environment.json`` holds one such record per process that ran the run (its start and every resume).
"""

from __future__ import annotations

import hashlib
import platform
import subprocess
import time
from importlib import metadata
from pathlib import Path

PACKAGES = ("frkit", "torch", "transformers", "peft", "accelerate", "datasets", "scikit-learn", "pandas", "numpy")
_FRKIT = Path(__file__).resolve().parents[1]  # the frkit package: its sources are what code_hash() covers


def git_revision() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, cwd=_FRKIT)
        rev = out.stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain"], capture_output=True, text=True, timeout=5, cwd=_FRKIT
        ).stdout.strip()
        return (rev + ("-dirty" if dirty else "")) if rev else None
    except (OSError, subprocess.SubprocessError):
        return None


def code_hash() -> str:
    """sha256 of the frkit sources as this process imported them (computed once, at import): what a result was
    made with, even from a dirty tree or in a long-lived worker that started before later commits."""
    return _CODE_HASH


def _hash_sources() -> str:
    digest = hashlib.sha256()
    for path in sorted(_FRKIT.rglob("*.py")):
        digest.update(str(path.relative_to(_FRKIT)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


_CODE_HASH = _hash_sources()
_CODE_REVISION = git_revision()  # the revision this process's code came from (not the tree's at a later run start)


def environment(seed: int) -> dict:
    import torch

    from frkit.precision import bf16_support, cpu_model

    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    bf16_fast, bf16_why = bf16_support(device)
    versions = {}
    for pkg in PACKAGES:
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = None
    return {
        "versions": versions,
        "python": platform.python_version(),
        "git_revision": _CODE_REVISION,
        "frkit_code_sha256": code_hash(),
        "seed": seed,
        "device": torch.cuda.get_device_name(0) if cuda else "cpu",
        # the hardware: the same params run bf16 autocast on one machine and fp32 on another (precision: auto),
        # and bf16 kernels differ between CPUs, so a result says where it was computed
        "cpu": cpu_model(),
        "torch_threads": torch.get_num_threads(),
        "bf16_autocast_fast": bf16_fast,
        "bf16_autocast_why": bf16_why,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
