"""What every engine of Eq. 3 shares: batches cut into chunks of samples, and ``forward(model, batch)`` called with
some of the model's parameters swapped for other tensors (``torch.func.functional_call``)."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from torch import Tensor, nn
from torch.func import functional_call

Batch = Mapping[str, object]
Forward = Callable[[nn.Module, Batch], Tensor]


def functional(model, forward, params: dict[str, Tensor], batch) -> Tensor:
    wrapper = _Wrapped(model, forward)
    return functional_call(wrapper, {f"model.{n}": t for n, t in params.items()}, (batch,), strict=False)


class _Wrapped(nn.Module):
    """Lets ``functional_call`` swap parameters for an opaque ``forward(model, batch)`` callable."""

    def __init__(self, model: nn.Module, forward: Forward):
        super().__init__()
        self.model = model
        self.fn = forward

    def forward(self, batch):
        return self.fn(self.model, batch)


def batch_size(batch: Batch, label_key: str) -> int:
    if isinstance(batch.get(label_key), Tensor):
        return int(batch[label_key].shape[0])
    for v in batch.values():
        if isinstance(v, Tensor) and v.dim() > 0:
            return int(v.shape[0])
    raise ValueError("batch holds no tensor with a batch dimension")


def is_batched(v, bsz: int) -> bool:
    return isinstance(v, Tensor) and v.dim() > 0 and v.shape[0] == bsz


def chunks(batch: Batch, size: int, label_key: str):
    bsz = batch_size(batch, label_key)
    for i in range(0, bsz, size):
        yield {k: (v[i : i + size] if is_batched(v, bsz) else v) for k, v in batch.items()}
