"""Numeric precision: bf16 autocast where the hardware runs it fast, fp32 everywhere else.

``precision: auto`` picks bf16 autocast on a CUDA device with bf16 and on a CPU whose flags show AMX-BF16 or
AVX512-BF16 (read from the CPU, never assumed), fp32 elsewhere. Without those instructions a bf16 matmul is
emulated and runs many times slower than fp32 (each run records its CPU, ``cpu_model()``), so a forced
``precision: bf16`` there is refused before any work starts.

Autocast only ever wraps the encoder's forward and backward. The papers' math (the Fisher of Eq. 3, the
penalties of Eq. 2 and 4, the projection of Eq. 5, the KL of Eq. 9) and every metric run in fp32 inside
:func:`full_precision`, whatever autocast is active around them.
"""

from __future__ import annotations

import contextlib
import logging
import platform
from functools import cache, lru_cache
from pathlib import Path

import torch

from frkit import distributed
from frkit.core.fp32 import full_precision  # noqa: F401  (re-exported: the math's fp32 context)
from frkit.errors import FrkitInputError

log = logging.getLogger(__name__)

PRECISIONS = ("auto", "fp32", "bf16")
# x86 CPU flags (as /proc/cpuinfo names them) under which PyTorch's bf16 matmuls run natively
BF16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")


@lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags from /proc/cpuinfo (empty where there is none, e.g. macOS)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith(("flags", "Features")):
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


def cpu_model() -> str:
    """The CPU's model name, with its family and model numbers where /proc/cpuinfo has them: virtual machines often
    give CPU generations with different instruction sets (AVX2 only, AVX512-BF16) one model name."""
    fields = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("model name", "cpu family", "model") and key.strip() not in fields:
                fields[key.strip()] = value.strip()
            if not line.strip() and fields:
                break  # the first processor's block is enough
    except OSError:
        pass
    name = fields.get("model name") or platform.processor() or "this CPU"
    if "cpu family" in fields and "model" in fields:
        return f"{name} (family {fields['cpu family']}, model {fields['model']})"
    return name


def bf16_support(device: torch.device) -> tuple[bool, str]:
    """(whether bf16 autocast is fast on ``device``, why), detected from the hardware."""
    if device.type == "cuda":
        ok = torch.cuda.is_bf16_supported()
        return ok, f"{torch.cuda.get_device_name(device)} {'supports' if ok else 'lacks'} bf16"
    if device.type == "cpu":
        found = sorted(cpu_flags() & set(BF16_CPU_FLAGS))
        if found:
            return True, f"{cpu_model()} has {'/'.join(found)}"
        return (
            False,
            f"{cpu_model()} has neither AMX-BF16 nor AVX512-BF16 (its bf16 matmuls are emulated, many times slower)",
        )
    return False, f"no bf16 autocast on {device.type}"


def resolve_precision(requested: str, device: torch.device | str) -> str:
    """``"bf16"`` or ``"fp32"`` for the configured ``precision`` on ``device``; a forced bf16 the device
    cannot run fast raises FrkitInputError (key ``precision``) before any work starts."""
    if requested not in PRECISIONS:
        raise FrkitInputError(f"key 'precision': {requested!r}; expected one of {list(PRECISIONS)}")
    if requested == "fp32":
        return "fp32"
    device = torch.device(device)
    ok, why = bf16_support(device)
    if requested == "bf16" and not ok:
        raise FrkitInputError(f"key 'precision': bf16 was asked for, but {why}; use precision: auto (or fp32)")
    if requested == "auto":
        _notice(device.type, ok, why)
    return "bf16" if ok else "fp32"


def resolved_precision(requested: str) -> str:
    """:func:`resolve_precision` on this process's device (``frkit.distributed.device()``)."""
    return resolve_precision(requested, distributed.device())


@cache
def _notice(device_type: str, ok: bool, why: str) -> None:  # once per process and device
    log.info("precision auto: %s on %s (%s)", "bf16 autocast" if ok else "fp32", device_type, why)


def autocast(device: torch.device | str, precision: str):
    """The encoder's forward/backward context: bf16 autocast when ``precision`` (resolved) is bf16."""
    device = torch.device(device)
    if precision != "bf16":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16)
