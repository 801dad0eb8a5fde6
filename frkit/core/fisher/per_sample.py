"""The ``"func"`` (torch.func: vmap over per-sample grads) and ``"loop"`` (one backward per sample: the reference)
engines of Eq. 3: each sample's gradient of log p(y|x), squared, added to the Fisher's sums."""

from __future__ import annotations

import torch
from torch.func import grad, vmap

from frkit.core.fisher.batches import batch_size, functional, is_batched
from frkit.core.fisher.seeds import logit_seeds


def func_chunk(model, chunk, forward, names, kind, label_key, fisher) -> None:
    bsz = batch_size(chunk, label_key)
    named = dict(model.named_parameters())
    params = {n: named[n].detach() for n in names}
    with torch.no_grad():
        seeds = logit_seeds(functional(model, forward, params, chunk), chunk.get(label_key), kind)
    batched = {k: v for k, v in chunk.items() if is_batched(v, bsz)}
    static = {k: v for k, v in chunk.items() if k not in batched}

    def seeded_output(p, sample, seed):
        one = {**static, **{k: v.unsqueeze(0) for k, v in sample.items()}}
        return (functional(model, forward, p, one)[0] * seed).sum()

    per_sample_grad = vmap(grad(seeded_output), in_dims=(None, 0, 0))
    for k in range(seeds.shape[0]):
        with torch.no_grad():  # func.grad still differentiates; no_grad keeps the outer graph (other
            grads = per_sample_grad(params, batched, seeds[k])  # params that require grad) away
        for n in names:
            fisher[n].add_(grads[n].float().square().sum(0))


def loop_chunk(model, chunk, forward, names, kind, label_key, fisher) -> None:
    bsz = batch_size(chunk, label_key)
    named = dict(model.named_parameters())
    for b in range(bsz):
        one = {k: (v[b : b + 1] if is_batched(v, bsz) else v) for k, v in chunk.items()}
        leaves = {n: named[n].detach().requires_grad_(True) for n in names}
        logits = functional(model, forward, leaves, one)
        seeds = logit_seeds(logits, one.get(label_key), kind)
        for k in range(seeds.shape[0]):
            grads = torch.autograd.grad(
                logits,
                list(leaves.values()),
                grad_outputs=seeds[k],
                retain_graph=k + 1 < seeds.shape[0],
                allow_unused=True,
            )
            for n, g in zip(leaves, grads):
                if g is not None:
                    fisher[n].add_(g.float().square())
