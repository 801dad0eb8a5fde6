"""HAT (Serra et al. 2018) on the kit's adapters: its equations against brute force, old tasks kept bit-identical."""

import math

import numpy as np
import pytest
import torch

from frkit.config import make_config
from frkit.methods import METHODS
from frkit.methods.base import MethodContext
from frkit.methods.hat import THRES_EMB, annealed_slope, compensation, mask_regulariser, unit_mask, used_by
from frkit.models.encoder import load_tokenizer
from frkit.runner import load_configured_marketplaces


def make_method(tiny_params, name="hat", **kw):
    cfg = make_config(tiny_params(method=name, **kw))
    ms = load_configured_marketplaces(cfg)
    ctx = MethodContext(cfg, cfg.model_name_or_path, load_tokenizer(cfg.model_name_or_path), show_progress=False)
    return METHODS[name](cfg, ctx), ms


def test_slope_anneals_from_one_over_smax_to_smax_within_an_epoch():
    smax, B = 400.0, 5
    slopes = [annealed_slope(b, B, smax) for b in range(B)]
    assert slopes[0] == pytest.approx(1 / smax) and slopes[-1] == pytest.approx(smax)
    expected = [1 / smax + (smax - 1 / smax) * (b - 1) / (B - 1) for b in range(1, B + 1)]  # Eq. 4, b = 1..B
    assert slopes == pytest.approx(expected)
    assert annealed_slope(0, 1, smax) == smax  # a one-batch epoch trains at s_max


def test_regulariser_matches_a_brute_force_sum_and_spares_units_older_tasks_use():
    g = torch.Generator().manual_seed(0)
    masks = [torch.rand(4, generator=g), torch.rand(3, generator=g)]
    older = [torch.tensor([1.0, 0.0, 0.3, 1.0]), torch.tensor([0.0, 0.5, 1.0])]
    num = sum(masks[k][i].item() * (1 - older[k][i].item()) for k in range(2) for i in range(len(masks[k])))
    den = sum(1 - older[k][i].item() for k in range(2) for i in range(len(older[k])))
    assert mask_regulariser(masks, older).item() == pytest.approx(num / den, rel=1e-6)
    assert mask_regulariser(masks, None).item() == pytest.approx(torch.cat(masks).mean().item(), rel=1e-6)
    assert mask_regulariser(masks, [torch.ones(4), torch.ones(3)]).item() == 0.0
    # sparsity: R pushes the new task's embeddings down on free units only (a unit older tasks use is free to reuse)
    e = torch.randn(4, requires_grad=True)
    mask_regulariser([unit_mask(e, 2.0)], [torch.tensor([1.0, 1.0, 0.0, 0.0])]).backward()
    assert (e.grad[:2] == 0).all() and (e.grad[2:] > 0).all()


def test_gradient_views_and_embedding_compensation_match_the_formulas():
    out, inp = torch.tensor([1.0, 0.0, 0.4]), torch.tensor([0.0, 1.0])
    w = torch.zeros(3, 2)
    view = used_by(out, inp, w)
    assert view.tolist() == [[min(o, i) for i in inp.tolist()] for o in out.tolist()]
    assert used_by(out, None, w).tolist() == [[o, o] for o in out.tolist()]
    assert torch.equal(used_by(out, inp, torch.zeros(3)), out)
    e = torch.tensor([-2.0, 0.1, 3.0])
    s, smax = 7.0, 400.0
    expected = [smax / s * (math.cosh(max(-50, min(50, s * x))) + 1) / (math.cosh(x) + 1) for x in e.tolist()]
    assert compensation(e, s, smax).tolist() == pytest.approx(expected, rel=1e-5)


def binary_mask_embedding(e: torch.Tensor) -> torch.Tensor:
    """Every other unit fully on, the rest fully off at s_max (sigmoid(400 * 6) is 1.0 in float32): a binary mask
    that uses some units and leaves others free whatever training did (a 2-unit bottleneck can end all off)."""
    on = torch.arange(e.numel(), device=e.device).view_as(e) % 2 == 0
    return torch.where(on, torch.full_like(e, THRES_EMB), torch.full_like(e, -THRES_EMB))


def learn_first_task_with_binary_masks(method, ms):
    """Learn task 1, then make its masks exactly binary; returns (task 1's masks per module, modules' weights)."""
    method.learn(0, ms[0], ms[:1])
    with torch.no_grad():
        for m in method.modules:
            for e in m.embeddings("en"):
                e.copy_(binary_mask_embedding(e))
    befores = [{k: v.detach().clone() for k, v in m.state_dict().items()} for m in method.modules]
    return method.older_masks(), befores


def test_a_task_with_a_binary_mask_scores_bit_identically_after_the_next_task(tiny_params):
    method, ms = make_method(tiny_params, epochs=1)
    masks, befores = learn_first_task_with_binary_masks(method, ms)
    assert all(set(v.unique().tolist()) <= {0.0, 1.0} for old in masks for v in old.values())
    before_scores = method.predict(ms[0].test, "en")
    before = befores[0]
    calls = []
    real_train = method.train

    def spy(model, params, marketplace, head, lr, step, **kw):
        calls.append(
            {
                "n": sum(p.numel() for g in params for p in g["params"]),
                "decay": [g.get("weight_decay") for g in params],
                "clip": kw["max_grad_norm"],
            }
        )
        return real_train(model, params, marketplace, head, lr, step, **kw)

    method.train = spy
    log = method.learn(1, ms[1], ms[:2])
    after = method.modules[0].state_dict()
    assert not torch.equal(before["up.weight"], after["up.weight"])  # task 2 trained the shared adapter ...
    used = used_by(masks[0]["up"], masks[0]["down"], before["up.weight"]).bool()
    assert used.any() and not used.all()
    assert torch.equal(before["up.weight"][used], after["up.weight"][used])  # ... but not weights task 1 uses
    assert torch.equal(before["down.bias"][masks[0]["down"].bool()], after["down.bias"][masks[0]["down"].bool()])
    assert torch.equal(before["e_down.en"], after["e_down.en"])  # task 1's embeddings are frozen
    np.testing.assert_array_equal(method.predict(ms[0].test, "en"), before_scores)  # bit-identical
    assert not np.array_equal(method.predict(ms[0].test, "es"), before_scores)
    # trainable: the shared adapters, task 2's embeddings and head; no weight decay on the masked modules
    shared = sum(p.numel() for m in method.modules for p in m.shared_parameters() + m.embeddings("es"))
    assert calls[0]["n"] == shared + 32 * 2 + 2 == method.trainable_params
    assert calls[0]["decay"] == [0.0, None] and calls[0]["clip"] == 10000.0
    assert 0 < log["mask_used"] <= 1 and log["capacity_used"] >= log["mask_used"] - 1e-9
    assert method.model_for("en")[1] == "en" and method.state.task == "en"  # scored with its own mask and head


def test_a_stronger_regulariser_leaves_the_task_fewer_units(tiny_params):
    used = {}
    for c in (0.0, 50.0):
        torch.manual_seed(0)
        method, ms = make_method(tiny_params, epochs=4, patience=0, batch_size=16, adapter_lr=0.2, hat_c=c)
        used[c] = method.learn(0, ms[0], ms[:1])["mask_used"]
    assert used[50.0] < used[0.0] - 0.1


def test_bad_hat_options_fail_naming_the_key(tiny_params):
    from frkit.errors import FrkitInputError

    with pytest.raises(FrkitInputError, match="hat_smax"):
        make_config(tiny_params(method="hat", hat_smax=0.5))
