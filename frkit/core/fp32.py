"""fp32 for the papers' math: a context that switches autocast off, and the rule that goes with it.

Autocast (bf16) may wrap a training step. Inside it, matmuls of Eq. 3 (Fisher), Eq. 4 (the LoRA update
B A), Eq. 5 (projection) and Eq. 9 (fusion scores) would silently run in bf16, whose 8-bit mantissa
blurs exactly the small quantities these equations weigh. Every function of ``frkit.core`` that does
such math enters :func:`full_precision` and casts its inputs to float32.
"""

from __future__ import annotations

import contextlib

import torch


@contextlib.contextmanager
def full_precision():
    """Switch autocast off (CPU and CUDA) for the enclosed math, inside any autocast region."""
    with contextlib.ExitStack() as stack:
        stack.enter_context(torch.autocast("cpu", enabled=False))
        if torch.cuda.is_available():
            stack.enter_context(torch.autocast("cuda", enabled=False))
        yield
