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

One job per file: this one checks the arguments, plans which engine computes which parameter and takes Eq. 3's
mean; ``seeds.py`` holds the logit-space seeds whose backprops are the gradients Eq. 3 squares; ``hooks.py`` the
``"hooks"`` engine; ``per_sample.py`` the ``"func"`` and ``"loop"`` engines; ``batches.py`` the chunking of batches
and the call of ``forward`` with swapped parameters that all engines share.

The forward must not mix samples (no batch norm, no in-batch negatives): sample b's logits depend
only on sample b. Dropout is switched off (eval mode) for the computation and restored after, and
autocast is switched off: the Fisher is computed in fp32 whatever precision trains the model.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable

import torch
from torch import Tensor, nn

from frkit import distributed
from frkit.core.fisher.batches import Batch, Forward, batch_size, chunks
from frkit.core.fisher.hooks import hooks_chunk, hooks_cover, hooks_mismatch
from frkit.core.fisher.per_sample import func_chunk, loop_chunk
from frkit.core.fp32 import full_precision

KINDS = ("empirical", "true")
ENGINES = ("auto", "hooks", "func", "loop")


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
    hookable = [n for n in names if hooks_cover(model, n)]
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
                for chunk in chunks(batch, chunk_size, label_key):
                    if plan is None:
                        plan = _plan(engine, hookable, model, chunk, forward, names, kind, label_key)
                    for step in plan:
                        _accumulate(step, model, chunk, forward, kind, label_key, fisher)
                    n_samples += batch_size(chunk, label_key)
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
    bad = hooks_mismatch(model, chunk, forward, hookable, kind, label_key) if hookable else []
    if bad and engine == "hooks":
        raise RuntimeError(
            f"per-sample gradients from hooks do not add up for {bad[:5]} (a parameter used "
            "outside its module's forward, e.g. tied weights or peft DoRA's bias); use engine='auto'"
        )
    good = [n for n in hookable if n not in bad]
    rest = [n for n in names if n not in good]
    if bad:
        warnings.warn(
            f"hooks cannot see every use of {bad[:3]}{'...' if len(bad) > 3 else ''}; "
            "computing them with torch.func / the per-sample loop",
            stacklevel=4,
        )
    return [[e, ns] for e, ns in (("hooks", good), ("func", rest)) if ns]


def _accumulate(step, model, chunk, forward, kind, label_key, fisher) -> None:
    engine, names = step
    if engine == "hooks":
        return hooks_chunk(model, chunk, forward, names, kind, label_key, fisher)
    if engine == "loop":
        return loop_chunk(model, chunk, forward, names, kind, label_key, fisher)
    try:
        return func_chunk(model, chunk, forward, names, kind, label_key, fisher)
    except RuntimeError as err:  # vmap refuses data-dependent control flow (e.g. HF mask building)
        if "vmap" not in str(err):
            raise
        warnings.warn(f"forward is not vmap-safe ({str(err)[:60]}...); using the per-sample loop", stacklevel=4)
        step[0] = "loop"  # for the following chunks too
        return loop_chunk(model, chunk, forward, names, kind, label_key, fisher)
