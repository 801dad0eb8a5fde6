"""The ``"hooks"`` engine of Eq. 3: per-sample gradients of Linear / Embedding / LayerNorm parameters in closed form
from one batched forward (the package docstring says how), squared and summed over the samples."""

from __future__ import annotations

from collections import Counter

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from frkit.core.fisher.batches import batch_size, functional, is_batched
from frkit.core.fisher.seeds import logit_seeds

_HOOKABLE = (nn.Linear, nn.Embedding, nn.LayerNorm)


def hooks_cover(model: nn.Module, name: str) -> bool:
    """Whether the hooks see every use of parameter ``name``: a weight or bias of a Linear, a plain Embedding (no
    max_norm, no gradient scaling) or an affine LayerNorm (a check on the first chunk confirms it)."""
    owner_name, _, attr = name.rpartition(".")
    owner = model.get_submodule(owner_name)
    if not isinstance(owner, _HOOKABLE) or attr not in ("weight", "bias"):
        return False
    if isinstance(owner, nn.Embedding) and (owner.max_norm is not None or owner.scale_grad_by_freq):
        return False
    return not isinstance(owner, nn.LayerNorm) or owner.elementwise_affine


def _hooked_forward(model, chunk, forward, names, bsz):
    """Forward with hooks recording (module, input, output) of every module owning a named param."""
    by_module: dict[nn.Module, dict[str, str]] = {}  # module -> {"weight"|"bias": param name}
    for n in names:
        owner_name, _, attr = n.rpartition(".")
        by_module.setdefault(model.get_submodule(owner_name), {})[attr] = n
    records: list[tuple[nn.Module, Tensor, Tensor, int]] = []
    unbatched: list[Tensor] = []

    def record(module, inputs, output):
        x = inputs[0]
        if output.shape[0] == 1 and bsz > 1:
            # broadcast inputs (BERT's position_ids are [1, T]): give each sample its own copy so the
            # gradient w.r.t. it is per sample; the broadcast sum downstream computes the same values
            output = output.expand(bsz, *output.shape[1:])
            x = x.expand(bsz, *x.shape[1:])
        if output.shape[0] != bsz:  # e.g. peft DoRA's lora_B(lora_A(eye)) for its (detached) norm
            unbatched.append(output)
            return output
        records.append((module, x.detach(), output, output._version))
        return output

    handles = [m.register_forward_hook(record) for m in by_module]
    try:
        logits, leaves = call_with_grad_leaves(model, forward, chunk, names)
    finally:
        for h in handles:
            h.remove()
    if any(out._version != v for _, _, out, v in records):
        raise RuntimeError("a hooked module's output was modified in place; use engine='func' or 'loop'")
    return logits, leaves, by_module, records, [u for u in unbatched if u.requires_grad]


def hooks_chunk(model, chunk, forward, names, kind, label_key, fisher) -> None:
    bsz = batch_size(chunk, label_key)
    logits, _, by_module, records, unbatched = _hooked_forward(model, chunk, forward, names, bsz)
    calls = Counter(module for module, *_ in records)
    seeds = logit_seeds(logits, chunk.get(label_key), kind)
    outputs = [out for _, _, out, _ in records] + unbatched
    scratch: dict[tuple, Tensor] = {}  # [B, out, in] buffers shared by same-shaped layers
    for k in range(seeds.shape[0]):
        grads = torch.autograd.grad(
            logits, outputs, grad_outputs=seeds[k], retain_graph=k + 1 < seeds.shape[0], allow_unused=True
        )
        grads, stray = grads[: len(records)], grads[len(records) :]
        if any(g is not None for g in stray):
            raise RuntimeError(
                "a hooked module was called on a non-batched input that reaches the logits; "
                "use engine='func' or 'loop' for its parameters"
            )
        pending: dict[str, list] = {}  # modules called more than once: sum per-sample grads, then square
        for (module, x, _, _), g in zip(records, grads):
            if g is None:
                continue
            for attr, n in by_module[module].items():
                if calls[module] == 1:
                    _add_squared(fisher[n], module, attr, x, g, scratch)
                else:
                    pending.setdefault(n, []).append((module, attr, x, g))
        for n, parts in pending.items():
            _add_squared_sum(fisher[n], parts)


def hooks_mismatch(model, chunk, forward, names, kind, label_key) -> list[str]:
    """Names whose per-sample gradients from the hooks do not sum to autograd's batch gradient, i.e.
    the parameter is also used outside its module's forward (tied weights, peft DoRA's base bias),
    where no hook sees it. One extra forward/backward on two samples: the check is structural."""
    bsz = batch_size(chunk, label_key)
    if bsz > 2:
        chunk, bsz = {k: (v[:2] if is_batched(v, bsz) else v) for k, v in chunk.items()}, 2
    logits, leaves, by_module, records, _ = _hooked_forward(model, chunk, forward, names, bsz)
    seed = logit_seeds(logits, chunk.get(label_key), kind)[0]
    outputs = [out for _, _, out, _ in records]
    grads = torch.autograd.grad(logits, outputs + list(leaves.values()), grad_outputs=seed, allow_unused=True)
    sums = {n: torch.zeros(leaves[n].shape, dtype=torch.float32, device=leaves[n].device) for n in names}
    for (module, x, _, _), g in zip(records, grads[: len(records)]):
        for attr, n in by_module[module].items():
            if g is not None:
                ps = _per_sample(module, attr, x, g)
                if isinstance(ps, tuple):  # embedding rows
                    sums[n].index_add_(0, ps[0] % module.num_embeddings, ps[1])
                else:
                    sums[n] += ps.sum(0).view_as(sums[n])
    ref = {
        n: (g.float() if g is not None else torch.zeros_like(sums[n])) for n, g in zip(leaves, grads[len(records) :])
    }
    floor = 1e-6 * max(float(r.norm()) for r in ref.values())
    tf32 = torch.backends.cuda.matmul.allow_tf32 or torch.get_float32_matmul_precision() != "highest"
    exact = logits.dtype == torch.float64 or (logits.dtype == torch.float32 and not tf32)
    rtol = 1e-3 if exact else 5e-2  # TF32 / half matmuls round both sides differently
    return [n for n in names if float((sums[n] - ref[n]).norm()) > rtol * float(ref[n].norm()) + floor]


def call_with_grad_leaves(model, forward, chunk, names) -> tuple[Tensor, dict[str, Tensor]]:
    """Run forward with the named params swapped for detached leaves that require grad (the model's
    own flags stay untouched), so the owning modules' outputs are part of the graph."""
    named = dict(model.named_parameters())
    leaves = {n: named[n].detach().requires_grad_(True) for n in names}
    return functional(model, forward, leaves, chunk), leaves


def _per_sample(module: nn.Module, attr: str, x: Tensor, g: Tensor, scratch: dict | None = None):
    """Per-sample gradient of ``module.<attr>``: dense [B, *shape], or for an Embedding weight a sparse
    (sample-row keys [B*T], values [B*T, H]) pair."""
    bsz = g.shape[0]
    g = g.reshape(bsz, -1, g.shape[-1]).float()
    if isinstance(module, nn.Embedding):
        ids = x.reshape(bsz, -1)
        keys = ids + module.num_embeddings * torch.arange(bsz, device=ids.device).unsqueeze(1)
        if module.padding_idx is not None:  # torch gives the padding row no gradient; zero, not drop (no sync)
            g = g * (ids != module.padding_idx).unsqueeze(-1)
        return keys.reshape(-1), g.reshape(-1, g.shape[-1])
    if attr == "bias":
        return g.sum(1)
    x = x.reshape(bsz, -1, x.shape[-1]).float()
    if isinstance(module, nn.LayerNorm):
        xhat = F.layer_norm(x, module.normalized_shape, None, None, module.eps)
        return (g * xhat).sum(1)
    shape = (bsz, g.shape[-1], x.shape[-1])
    out = None if scratch is None else scratch.setdefault(shape, x.new_empty(shape))
    return torch.bmm(g.transpose(1, 2), x, out=out)  # Linear: sum_t g_t a_t^T, [B, out, in]


def _add_squared(target: Tensor, module, attr, x, g, scratch: dict | None = None) -> None:
    if isinstance(module, nn.Linear) and attr == "weight" and g.reshape(g.shape[0], -1, g.shape[-1]).shape[1] == 1:
        # one position per sample (a head on [CLS]): (g a^T)^2 = g^2 (a^2)^T, no [B, out, in] buffer
        g2 = g.reshape(g.shape[0], -1).float().square()
        target.add_(g2.T @ x.reshape(x.shape[0], -1).float().square())
        return
    _add_squared_sum(target, [(module, attr, x, g)], scratch)


def _add_squared_sum(target: Tensor, parts, scratch: dict | None = None) -> None:
    """Square the per-sample gradient summed over all calls of a module, add over samples."""
    module = parts[0][0]
    if isinstance(module, nn.Embedding):
        sparse = [_per_sample(m, a, x, g) for m, a, x, g in parts]
        keys, vals = torch.cat([k for k, _ in sparse]), torch.cat([v for _, v in sparse])
        # sum each sample's rows before squaring, without torch.unique's device sync: sort the
        # (sample, row) keys, number the runs of equal keys, add per run (unused runs stay zero)
        keys, order = torch.sort(keys)
        run = torch.ones_like(keys, dtype=torch.bool)
        run[1:] = keys[1:] != keys[:-1]
        run = torch.cumsum(run, 0) - 1
        sums = torch.zeros_like(vals).index_add_(0, run, vals[order])
        rows = torch.zeros_like(keys).index_put_((run,), keys % module.num_embeddings)
        target.index_add_(0, rows, sums.square_())
        return
    total = None
    for m, a, x, g in parts:
        ps = _per_sample(m, a, x, g, scratch if len(parts) == 1 else None)
        total = ps if total is None else total + ps
    target = target.view(total.shape[1:])
    if total.device.type == "cpu":  # CPU reduces slowly over dim 0 and allocates slowly; FMA per row
        for row in total:
            target.addcmul_(row, row)
    else:  # sum_b G_b^2 as a squared norm over the sample axis: one read, no [B, out, in] temporary
        target.add_(torch.linalg.vector_norm(total, dim=0).square_())
