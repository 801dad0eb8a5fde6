"""CTR (Ke et al. 2021): transfer routing against brute force, the router, padding, blocked later tasks, HAT's TSM."""

import torch

from frkit.methods.ctr import CtrAdapter, SimilarityEstimator, router_gate, transfer_route
from frkit.methods.hat import HatState, used_by
from tests.test_hat import learn_first_task_with_binary_masks, make_method


def test_transfer_route_matches_a_brute_force_sum_and_a_closed_gate_drops_the_task():
    g = torch.Generator().manual_seed(0)
    B, L, T, D = 2, 3, 3, 4
    u, a = torch.randn(B, L, T, D, generator=g), torch.randn(B, T, D, generator=g)
    gates = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 1.0]])
    v = transfer_route(u, a, gates)
    for b in range(B):
        for pos in range(L):
            expected = sum(gates[b, i].item() * a[b, i] * u[b, pos, i] for i in range(T))
            torch.testing.assert_close(v[b, pos], expected)
    u2 = u.clone()
    u2[0, :, 1] += 5.0  # task 1 is gated off for row 0: its pre-route vectors do not matter there
    assert torch.equal(transfer_route(u2, a, gates)[0], v[0])


def test_router_is_a_hard_binary_gate_sampled_in_training_and_deterministic_in_evaluation():
    torch.manual_seed(0)
    logits = torch.randn(64, 2, requires_grad=True)
    d = router_gate(logits, training=True)
    assert set(d.unique().tolist()) <= {0.0, 1.0}
    d.sum().backward()
    assert logits.grad.abs().sum() > 0  # straight-through: the router learns
    assert router_gate(logits, training=False).tolist() == (logits[:, 0] >= logits[:, 1]).float().tolist()


def test_similarity_estimator_ignores_padding():
    torch.manual_seed(0)
    se = SimilarityEstimator(9).eval()
    u = torch.randn(2, 6, 2, 9)
    mask = torch.tensor([[1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1]])
    a, d = se(u, mask)
    longer = torch.cat([u, torch.randn(2, 4, 2, 9)], dim=1)
    a2, d2 = se(longer, torch.cat([mask, torch.zeros(2, 4, dtype=mask.dtype)], dim=1))
    torch.testing.assert_close(a2, a, rtol=0, atol=1e-6)
    assert torch.equal(d2, d)


def test_a_later_task_does_not_enter_an_earlier_tasks_plugin():
    torch.manual_seed(0)
    state = HatState(task="en")
    module = CtrAdapter(8, 2, state, capsules=3, capsule_dim=3).eval()
    module.add_task("en")
    h = torch.randn(2, 7, 8)
    before = module(h)
    module.add_task("es")
    assert torch.equal(module(h), before)
    state.task = "es"
    assert not torch.equal(module(h), before)


def test_task_masks_protect_the_tsm_while_the_knowledge_sharing_module_trains(tiny_params):
    method, ms = make_method(tiny_params, name="ctr", epochs=1)
    olders, befores = learn_first_task_with_binary_masks(method, ms)  # as in the HAT test
    method.learn(1, ms[1], ms[:2])
    afters = [m.state_dict() for m in method.modules]
    protected = 0
    for older, before, after in zip(olders, befores, afters):
        for name, out, inp in (("up.weight", "up", "down"), ("down.weight", "down", None)):
            used = used_by(older[out], None if inp is None else older[inp], before[name]).bool()
            assert torch.equal(before[name][used], after[name][used]), name
            protected += int(used.sum())
        assert all(torch.equal(before[k], after[k]) for k in before if k.startswith("e_") and k.endswith(".en"))
    assert protected
    for key in ("larger.weight", "se.fc_sim.weight", "se.router.weight"):  # shared KSM parts keep training
        assert any(not torch.equal(b[key], a[key]) for b, a in zip(befores, afters)), key
    shared = sum(p.numel() for p in method.trainable("es")[0]["params"])
    assert method.trainable_params == shared + 32 * 2 + 2
