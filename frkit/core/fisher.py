"""Diagonal Fisher information (FR-LoRA Eq. 3), exact per-sample, for any ``forward(model, batch) -> logits``.

    F_i = E_{(x,y)~D} [ (d log p(y|x; theta*) / d theta_i)^2 ]                      (Eq. 3)

The expectation is over SAMPLES: each sample's gradient is squared before averaging (the square of a
mini-batch gradient is a different, smaller quantity). Three engines compute the same numbers:

- ``"hooks"`` (what ``"auto"`` uses wherever it can): one batched forward, forward hooks record each owning module's
  input, and ``autograd.grad`` w.r.t. the module OUTPUTS gives per-token output gradients, from which
  per-sample parameter gradients follow in closed form (Linear: sum_t g_t a_t^T; Embedding: rows
  summed per sample via ``index_add``; LayerNorm: sum_t g_t * xhat_t). Works with any HF model as is
  (transformers 5.x builds its attention mask with data-dependent checks that ``vmap`` refuses),
  never materialises a per-sample gradient of the embedding table, and skips the weight-gradient
  matmuls of ordinary backprop. Covers ``nn.Linear`` / ``nn.Embedding`` / ``nn.LayerNorm`` weights
  and biases (every base weight of BERT/XLM-R, peft's ``base_layer``/``lora_A``/``lora_B``, heads).
  A parameter also used outside its module's forward is invisible to hooks; a check on the first
  chunk (per-sample gradients must sum to autograd's batch gradient) catches that.
- ``"func"``: ``torch.func`` (functional_call + vmap + grad) over ``chunk_size`` samples; any
  parameter, but ``forward`` must be vmap-safe (for HF BERT: pass a prebuilt 4-D float mask).
- ``"loop"``: batch-size-1 backward per sample; the slow reference, works for anything.

The forward must not mix samples (no batch norm, no in-batch negatives): sample b's logits depend
only on sample b. Dropout is switched off (eval mode) for the computation and restored after, and
autocast is switched off: the Fisher is computed in fp32 whatever precision trains the model.
"""
from __future__ import annotations

import warnings
from collections import Counter
from collections.abc import Callable, Iterable, Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call, grad, vmap

from frkit import distributed
from frkit.core.fp32 import full_precision

Batch = Mapping[str, object]
Forward = Callable[[nn.Module, Batch], Tensor]

KINDS = ("empirical", "true")
ENGINES = ("auto", "hooks", "func", "loop")
_HOOKABLE = (nn.Linear, nn.Embedding, nn.LayerNorm)


def diagonal_fisher(
    model: nn.Module,
    batches: Iterable[Batch],
    forward: Forward,
    param_names: list[str] | None = None,
    kind: str = "empirical",
    chunk_size: int = 32,
    engine: str = "auto",
    label_key: str = "labels",
) -> dict[str, Tensor]:
    """Diagonal Fisher of Eq. 3: mean over samples of the per-sample squared gradient of log p(y|x).

    Args:
        model: the module whose parameters are named in ``param_names`` (names as in
            ``model.named_parameters()``; these are the keys of the result).
        batches: dicts of tensors with the batch on dim 0; ``batch[label_key]`` holds class indices
            (needed for ``kind="empirical"`` only). Other entries go to ``forward`` untouched.
        forward: ``forward(model, batch) -> logits [B, C]``; softmax over C gives p(y|x).
        param_names: parameters to compute; ``None`` = those with ``requires_grad``. Frozen
            parameters can be named too (gradients are taken w.r.t. detached copies).
        kind: ``"empirical"`` (DEFAULT): y is the data label, as Eq. 3 writes it,
            E_{(x,y)~D_{t-1}}, i.e. (x, y) drawn from the marketplace's dataset.
            ``"true"``: y ~ p(.|x; theta), computed exactly without sampling,
            sum_c p_c g_c^2 = diag(J^T (diag(p) - p p^T) J) with J = d logits / d theta.
        chunk_size: samples per forward/backward; bounds memory (``"hooks"``: chunk x largest
            Linear; ``"func"``: chunk x all named parameters).
        engine: ``"auto"`` (default) uses ``"hooks"`` for the parameters of Linear / Embedding /
            LayerNorm modules that pass the first-chunk check, ``"func"`` for the rest (falling back
            to ``"loop"`` with a warning when ``forward`` is not vmap-safe). ``"hooks"`` raises
            instead of falling back.
        label_key: where the labels are in each batch.

    Returns: name -> float32 tensor of the parameter's shape, on the parameter's device.
    In a data-parallel launch every process must call it (each with its shard of the batches): the per-sample
    sums and the sample count are all-reduced before the mean, so every process gets the Fisher over all
    processes' samples, the single-process Fisher over the same samples.
    The model's parameters, ``requires_grad`` flags, ``.grad`` and train/eval modes are left as found.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    named = dict(model.named_parameters())
    names = [n for n, p in named.items() if p.requires_grad] if param_names is None else list(param_names)
    missing = [n for n in names if n not in named]
    if missing:
        raise KeyError(f"not parameters of the model: {missing[:5]}{' ...' if len(missing) > 5 else ''}")
    if not names:
        raise ValueError("no parameters to compute the Fisher for")
    hookable = [n for n in names if _hookable(model, n)]
    if engine == "hooks" and len(hookable) < len(names):
        bad = [n for n in names if n not in hookable]
        raise ValueError(f"engine='hooks' covers Linear/Embedding/LayerNorm weight and bias only; not {bad[:5]}")

    fisher = {n: torch.zeros(named[n].shape, dtype=torch.float32, device=named[n].device) for n in names}
    modes = {m: m.training for m in model.modules()}
    model.eval()  # dropout off: Eq. 3 is a property of the trained network, not of a noisy one
    n_samples, plan = 0, None
    try:
        with torch.enable_grad(), full_precision():  # Eq. 3 in fp32 even inside a bf16 autocast region
            for batch in batches:
                for chunk in _chunks(batch, chunk_size, label_key):
                    if plan is None:
                        plan = _plan(engine, hookable, model, chunk, forward, names, kind, label_key)
                    for step in plan:
                        _accumulate(step, model, chunk, forward, kind, label_key, fisher)
                    n_samples += _batch_size(chunk, label_key)
    finally:
        for m, was_training in modes.items():
            m.train(was_training)
    if distributed.world_size() > 1:  # a data-parallel launch: each process summed its shard's samples; Eq. 3's
        # mean is over all of them, sum_p sum_{b in shard p} g_b^2 / sum_p n_p, whatever the shards were
        count = torch.tensor([float(n_samples)], dtype=torch.float64, device=next(iter(fisher.values())).device)
        distributed.all_reduce_sum({**fisher, "\0count": count})
        n_samples = int(count.item())
    if n_samples == 0:
        raise ValueError("batches held no samples")
    for f in fisher.values():
        f.div_(n_samples)
    return fisher


def _plan(engine, hookable, model, chunk, forward, names, kind, label_key) -> list[list]:
    """[[engine, names], ...]. "auto": the hooks for the names they cover and that pass a check on
    the first chunk (their per-sample gradients must sum to autograd's batch gradient), torch.func
    for the rest."""
    if engine in ("func", "loop"):
        return [[engine, names]]
    bad = _hooks_mismatch(model, chunk, forward, hookable, kind, label_key) if hookable else []
    if bad and engine == "hooks":
        raise RuntimeError(f"per-sample gradients from hooks do not add up for {bad[:5]} (a parameter used "
                           "outside its module's forward, e.g. tied weights or peft DoRA's bias); use engine='auto'")
    good = [n for n in hookable if n not in bad]
    rest = [n for n in names if n not in good]
    if bad:
        warnings.warn(f"hooks cannot see every use of {bad[:3]}{'...' if len(bad) > 3 else ''}; "
                      "computing them with torch.func / the per-sample loop", stacklevel=4)
    return [[e, ns] for e, ns in (("hooks", good), ("func", rest)) if ns]


def _accumulate(step, model, chunk, forward, kind, label_key, fisher) -> None:
    engine, names = step
    if engine == "hooks":
        return _hooks_chunk(model, chunk, forward, names, kind, label_key, fisher)
    if engine == "loop":
        return _loop_chunk(model, chunk, forward, names, kind, label_key, fisher)
    try:
        return _func_chunk(model, chunk, forward, names, kind, label_key, fisher)
    except RuntimeError as err:  # vmap refuses data-dependent control flow (e.g. HF mask building)
        if "vmap" not in str(err):
            raise
        warnings.warn(f"forward is not vmap-safe ({str(err)[:60]}...); using the per-sample loop", stacklevel=4)
        step[0] = "loop"  # for the following chunks too
        return _loop_chunk(model, chunk, forward, names, kind, label_key, fisher)


# --- seeds: per-sample vectors s with d/dtheta (s . logits) = the gradient Eq. 3 squares -------------


def _seeds(logits: Tensor, labels: Tensor | None, kind: str) -> Tensor:
    """[K, B, C] logit-space seeds whose per-sample squared backprops sum to the Fisher contribution.

    d log p_y / d logits = e_y - p, so the empirical seed is e_y - p (K = 1). The true Fisher in
    logit space is M = diag(p) - p p^T (rank C-1, null vector 1); with M = sum_k s_k s_k^T from its
    eigen-decomposition, sum_k (J^T s_k)^2 = diag(J^T M J) = sum_c p_c (J^T (e_c - p))^2 exactly,
    in C-1 backward passes (one for two classes) instead of C.
    """
    p = torch.softmax(logits.detach().double(), dim=-1)
    if kind == "empirical":
        if labels is None:
            raise KeyError("kind='empirical' needs the labels in the batch (label_key)")
        return (F.one_hot(labels.long(), p.shape[-1]).double() - p).unsqueeze(0).to(logits.dtype)
    m = torch.diag_embed(p) - p.unsqueeze(-1) * p.unsqueeze(-2)
    evals, evecs = torch.linalg.eigh(m)  # ascending; the first is the null direction (all ones)
    s = evecs[..., 1:] * evals[..., 1:].clamp_min(0).sqrt().unsqueeze(-2)  # [B, C, C-1]
    return s.permute(2, 0, 1).to(logits.dtype)


# --- engine "hooks" ---------------------------------------------------------------------------------


def _hookable(model: nn.Module, name: str) -> bool:
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
        logits, leaves = _call_with_grad_leaves(model, forward, chunk, names)
    finally:
        for h in handles:
            h.remove()
    if any(out._version != v for _, _, out, v in records):
        raise RuntimeError("a hooked module's output was modified in place; use engine='func' or 'loop'")
    return logits, leaves, by_module, records, [u for u in unbatched if u.requires_grad]


def _hooks_chunk(model, chunk, forward, names, kind, label_key, fisher) -> None:
    bsz = _batch_size(chunk, label_key)
    logits, _, by_module, records, unbatched = _hooked_forward(model, chunk, forward, names, bsz)
    calls = Counter(module for module, *_ in records)
    seeds = _seeds(logits, chunk.get(label_key), kind)
    outputs = [out for _, _, out, _ in records] + unbatched
    scratch: dict[tuple, Tensor] = {}  # [B, out, in] buffers shared by same-shaped layers
    for k in range(seeds.shape[0]):
        grads = torch.autograd.grad(logits, outputs, grad_outputs=seeds[k], retain_graph=k + 1 < seeds.shape[0],
                                    allow_unused=True)
        grads, stray = grads[: len(records)], grads[len(records) :]
        if any(g is not None for g in stray):
            raise RuntimeError("a hooked module was called on a non-batched input that reaches the logits; "
                               "use engine='func' or 'loop' for its parameters")
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


def _hooks_mismatch(model, chunk, forward, names, kind, label_key) -> list[str]:
    """Names whose per-sample gradients from the hooks do not sum to autograd's batch gradient, i.e.
    the parameter is also used outside its module's forward (tied weights, peft DoRA's base bias),
    where no hook sees it. One extra forward/backward on two samples: the check is structural."""
    bsz = _batch_size(chunk, label_key)
    if bsz > 2:
        chunk, bsz = {k: (v[:2] if _is_batched(v, bsz) else v) for k, v in chunk.items()}, 2
    logits, leaves, by_module, records, _ = _hooked_forward(model, chunk, forward, names, bsz)
    seed = _seeds(logits, chunk.get(label_key), kind)[0]
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
    ref = {n: (g.float() if g is not None else torch.zeros_like(sums[n]))
           for n, g in zip(leaves, grads[len(records) :])}
    floor = 1e-6 * max(float(r.norm()) for r in ref.values())
    tf32 = torch.backends.cuda.matmul.allow_tf32 or torch.get_float32_matmul_precision() != "highest"
    exact = logits.dtype == torch.float64 or (logits.dtype == torch.float32 and not tf32)
    rtol = 1e-3 if exact else 5e-2  # TF32 / half matmuls round both sides differently
    return [n for n in names if float((sums[n] - ref[n]).norm()) > rtol * float(ref[n].norm()) + floor]


def _call_with_grad_leaves(model, forward, chunk, names) -> tuple[Tensor, dict[str, Tensor]]:
    """Run forward with the named params swapped for detached leaves that require grad (the model's
    own flags stay untouched), so the owning modules' outputs are part of the graph."""
    named = dict(model.named_parameters())
    leaves = {n: named[n].detach().requires_grad_(True) for n in names}
    return _functional(model, forward, leaves, chunk), leaves


def _functional(model, forward, params: dict[str, Tensor], batch) -> Tensor:
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


# --- engine "func" (torch.func) ---------------------------------------------------------------------


def _func_chunk(model, chunk, forward, names, kind, label_key, fisher) -> None:
    bsz = _batch_size(chunk, label_key)
    named = dict(model.named_parameters())
    params = {n: named[n].detach() for n in names}
    with torch.no_grad():
        seeds = _seeds(_functional(model, forward, params, chunk), chunk.get(label_key), kind)
    batched = {k: v for k, v in chunk.items() if _is_batched(v, bsz)}
    static = {k: v for k, v in chunk.items() if k not in batched}

    def seeded_output(p, sample, seed):
        one = {**static, **{k: v.unsqueeze(0) for k, v in sample.items()}}
        return (_functional(model, forward, p, one)[0] * seed).sum()

    per_sample_grad = vmap(grad(seeded_output), in_dims=(None, 0, 0))
    for k in range(seeds.shape[0]):
        with torch.no_grad():  # func.grad still differentiates; no_grad keeps the outer graph (other
            grads = per_sample_grad(params, batched, seeds[k])  # params that require grad) away
        for n in names:
            fisher[n].add_(grads[n].float().square().sum(0))


# --- engine "loop" (reference) ----------------------------------------------------------------------


def _loop_chunk(model, chunk, forward, names, kind, label_key, fisher) -> None:
    bsz = _batch_size(chunk, label_key)
    named = dict(model.named_parameters())
    for b in range(bsz):
        one = {k: (v[b : b + 1] if _is_batched(v, bsz) else v) for k, v in chunk.items()}
        leaves = {n: named[n].detach().requires_grad_(True) for n in names}
        logits = _functional(model, forward, leaves, one)
        seeds = _seeds(logits, one.get(label_key), kind)
        for k in range(seeds.shape[0]):
            grads = torch.autograd.grad(logits, list(leaves.values()), grad_outputs=seeds[k],
                                        retain_graph=k + 1 < seeds.shape[0], allow_unused=True)
            for n, g in zip(leaves, grads):
                if g is not None:
                    fisher[n].add_(g.float().square())


# --- batches ----------------------------------------------------------------------------------------


def _batch_size(batch: Batch, label_key: str) -> int:
    if isinstance(batch.get(label_key), Tensor):
        return int(batch[label_key].shape[0])
    for v in batch.values():
        if isinstance(v, Tensor) and v.dim() > 0:
            return int(v.shape[0])
    raise ValueError("batch holds no tensor with a batch dimension")


def _is_batched(v, bsz: int) -> bool:
    return isinstance(v, Tensor) and v.dim() > 0 and v.shape[0] == bsz


def _chunks(batch: Batch, size: int, label_key: str):
    bsz = _batch_size(batch, label_key)
    for i in range(0, bsz, size):
        yield {k: (v[i : i + size] if _is_batched(v, bsz) else v) for k, v in batch.items()}
