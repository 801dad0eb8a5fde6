"""Eq. 3 diagonal Fisher against a brute-force per-sample loop (batch size 1, one backward each)."""

from __future__ import annotations

import copy
import warnings

import pytest
import torch
from peft import LoraConfig, get_peft_model
from torch import nn
from transformers import BertConfig, BertModel

from frkit.core.fisher import diagonal_fisher

LENGTHS = [9, 5, 7, 3, 9, 6, 4]


class TinyCrossEncoder(nn.Module):
    def __init__(self, encoder: nn.Module):
        super().__init__()
        self.encoder = encoder
        self.head = nn.Linear(32, 2)


def tiny_bert() -> BertModel:
    cfg = BertConfig(
        vocab_size=100,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=32,
    )
    return BertModel(cfg, add_pooling_layer=False)


def forward(model, batch):
    hidden = model.encoder(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
    return model.head(hidden[:, 0])


def forward_4d_mask(model, batch):
    """vmap-safe: transformers returns a prebuilt 4-D mask as is, skipping its data-dependent checks."""
    keep = batch["attention_mask"][:, None, None, :].float()
    mask = (1.0 - keep) * torch.finfo(torch.float32).min
    return model.head(model.encoder(input_ids=batch["input_ids"], attention_mask=mask).last_hidden_state[:, 0])


def padded_batches(seed=0):
    """Two batches (4 + 3 samples) of different lengths, right-padded with [PAD] = 0."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, 100, (len(LENGTHS), max(LENGTHS)), generator=g)
    mask = torch.zeros_like(ids)
    for i, n in enumerate(LENGTHS):
        mask[i, :n] = 1
    ids = ids * mask
    labels = torch.randint(0, 2, (len(LENGTHS),), generator=g)
    whole = {"input_ids": ids, "attention_mask": mask, "labels": labels}
    return [{k: v[:4] for k, v in whole.items()}, {k: v[4:] for k, v in whole.items()}]


def reference_fisher(model, batches, names, kind):
    """Eq. 3 written out: for every sample alone, backward log p(y|x) (each class c weighted by p_c
    for the true Fisher), square, average over samples."""
    ref = copy.deepcopy(model).eval()
    params = dict(ref.named_parameters())
    for p in params.values():
        p.requires_grad_(True)
    total = {n: torch.zeros_like(params[n]) for n in names}
    count = 0
    for batch in batches:
        for b in range(len(batch["labels"])):
            one = {k: v[b : b + 1] for k, v in batch.items()}
            n_real = int(one["attention_mask"].sum())  # no padding at all for the lone sample
            one = {"input_ids": one["input_ids"][:, :n_real], "attention_mask": one["attention_mask"][:, :n_real]}
            logp = torch.log_softmax(forward(ref, one)[0], dim=-1)
            classes = [int(batch["labels"][b])] if kind == "empirical" else range(logp.shape[0])
            for c in classes:
                weight = 1.0 if kind == "empirical" else float(logp[c].detach().exp())
                grads = torch.autograd.grad(logp[c], [params[n] for n in names], retain_graph=True, allow_unused=True)
                for n, g in zip(names, grads):
                    if g is not None:
                        total[n] += weight * g**2
            count += 1
    return {n: t / count for n, t in total.items()}


def assert_close(got, want, rtol=1e-4):
    assert set(got) == set(want)
    top = max(float(w.norm()) for w in want.values())
    for n in want:
        assert not got[n].requires_grad and got[n].dtype == torch.float32
        # floor: some gradients are exactly zero in theory (key biases: softmax is shift-invariant)
        err = float((got[n] - want[n]).norm()) / max(float(want[n].norm()), 1e-6 * top)
        assert err < rtol, f"{n}: relative error {err:.2e}"


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return TinyCrossEncoder(tiny_bert())


@pytest.mark.parametrize("kind", ["empirical", "true"])
def test_matches_per_sample_loop(model, kind):
    names = [n for n, _ in model.named_parameters()]
    got = diagonal_fisher(model, padded_batches(), forward, names, kind=kind, chunk_size=3)
    assert_close(got, reference_fisher(model, padded_batches(), names, kind))
    assert "encoder.embeddings.word_embeddings.weight" in got
    assert float(got["encoder.embeddings.word_embeddings.weight"][0].abs().max()) == 0.0  # [PAD] row: no grad


@pytest.mark.parametrize("kind", ["empirical", "true"])
def test_func_engine_matches(model, kind):
    names = [
        "encoder.embeddings.word_embeddings.weight",
        "encoder.encoder.layer.1.attention.self.value.weight",
        "encoder.encoder.layer.0.output.LayerNorm.weight",
        "head.weight",
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # no batching rule for CPU flash attention: a slow path, still exact
        got = diagonal_fisher(model, padded_batches(), forward_4d_mask, names, kind=kind, chunk_size=4, engine="func")
    assert_close(got, reference_fisher(model, padded_batches(), names, kind))


@pytest.mark.parametrize("use_dora", [False, True])
def test_peft_model_frozen_base(use_dora):
    torch.manual_seed(1)
    config = LoraConfig(r=4, lora_alpha=8, target_modules=["query", "key", "value"], use_dora=use_dora)
    model = TinyCrossEncoder(get_peft_model(tiny_bert(), config))
    for n, p in model.named_parameters():
        if "lora_" in n:
            p.data.normal_(0, 0.2)  # lora_B starts at zero; make the adapter matter
    names = [n for n, p in model.named_parameters() if "magnitude" not in n]  # frozen base + adapter
    assert any(not dict(model.named_parameters())[n].requires_grad for n in names)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # DoRA uses its base bias outside the Linear: that part falls back
        got = diagonal_fisher(model, padded_batches(), forward, names, kind="true", chunk_size=4)
    assert_close(got, reference_fisher(model, padded_batches(), names, "true"))


def test_model_state_untouched(model):
    model.train()
    frozen = "encoder.encoder.layer.0.attention.self.query.weight"
    dict(model.named_parameters())[frozen].requires_grad_(False)
    before = {n: (p.detach().clone(), p.requires_grad) for n, p in model.named_parameters()}
    try:
        with torch.no_grad():  # enables grad itself
            got = diagonal_fisher(model, padded_batches(), forward)
        assert frozen not in got and "head.weight" in got  # default: the params that require grad
        got = diagonal_fisher(model, padded_batches(), forward, param_names=[frozen])
        assert float(got[frozen].sum()) > 0
        assert all(m.training for m in model.modules())
        for n, p in model.named_parameters():
            assert torch.equal(p, before[n][0]) and p.requires_grad == before[n][1] and p.grad is None
    finally:
        dict(model.named_parameters())[frozen].requires_grad_(True)
        model.eval()


def test_not_the_square_of_the_minibatch_gradient(model):
    names = ["encoder.encoder.layer.0.attention.self.query.weight", "head.weight"]
    batches = padded_batches()
    fisher = diagonal_fisher(model, batches, forward, names)
    ref = copy.deepcopy(model).eval()
    params = dict(ref.named_parameters())
    shortcut = {n: torch.zeros_like(params[n]) for n in names}
    for batch in batches:  # mean log-likelihood gradient of each mini-batch, squared
        logp = torch.log_softmax(forward(ref, batch), -1).gather(1, batch["labels"][:, None]).mean()
        for n, g in zip(names, torch.autograd.grad(logp, [params[n] for n in names])):
            shortcut[n] += g**2 / len(batches)
    for n in names:
        rel = float((fisher[n] - shortcut[n]).norm() / fisher[n].norm())
        assert rel > 0.2, f"{n}: per-sample Fisher and mini-batch shortcut agree ({rel:.3f})"
        assert float(fisher[n].sum()) > float(shortcut[n].sum())  # per-sample gradients do not cancel


def test_bad_arguments(model):
    with pytest.raises(ValueError, match="kind"):
        diagonal_fisher(model, padded_batches(), forward, kind="sampled")
    with pytest.raises(KeyError, match="not parameters"):
        diagonal_fisher(model, padded_batches(), forward, ["nope.weight"])
    no_labels = [{k: v for k, v in b.items() if k != "labels"} for b in padded_batches()]
    with pytest.raises(KeyError, match="labels"):
        diagonal_fisher(model, no_labels, forward, ["head.weight"])
    assert diagonal_fisher(model, no_labels, forward, ["head.weight"], kind="true")["head.weight"].shape == (2, 32)
