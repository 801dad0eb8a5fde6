"""B-CL (Ke, Xu, Liu 2021): squash and dynamic routing against brute force, blocked later tasks, HAT's protection."""

import math

import pytest
import torch

from frkit.methods.b_cl import BclAdapter, dynamic_routing, squash
from frkit.methods.hat import HatState, used_by
from tests.test_hat import learn_first_task_with_binary_masks, make_method


def test_squash_and_routing_match_a_brute_force_loop():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(5, generator=g)
    n2 = sum(v * v for v in x.tolist())
    assert squash(x).tolist() == pytest.approx([n2 / (1 + n2) * v / math.sqrt(n2) for v in x.tolist()], rel=1e-5)
    T, J, D, iters = 3, 2, 4, 3
    u = torch.randn(T, J, D, generator=g)  # u[i, j] = u_{j|i}
    b = [[0.0] * J for _ in range(T)]
    for it in range(iters):
        c = [[math.exp(b[i][j]) / sum(math.exp(b[k][j]) for k in range(T)) for j in range(J)] for i in range(T)]
        s = [[sum(c[i][j] * u[i, j, d].item() for i in range(T)) for d in range(D)] for j in range(J)]
        if it < iters - 1:
            v = [squash(torch.tensor(s[j])).tolist() for j in range(J)]
            b = [[b[i][j] + sum(u[i, j, d].item() * v[j][d] for d in range(D)) for j in range(J)] for i in range(T)]
    votes, coupling = dynamic_routing(u.unsqueeze(0), iters)
    assert votes[0].tolist() == [pytest.approx(row, rel=1e-4) for row in s]
    assert coupling[0].tolist() == [pytest.approx(row, rel=1e-5) for row in c]
    torch.testing.assert_close(coupling.sum(-2), torch.ones(1, J))  # each capsule's couplings sum to one over tasks


def test_a_later_task_does_not_enter_an_earlier_tasks_routing():
    torch.manual_seed(0)
    state = HatState(task="en")
    module = BclAdapter(8, 2, state, capsules=3, capsule_dim=3, iterations=3).eval()
    module.add_task("en")
    h = torch.randn(2, 4, 8)
    before = module(h)
    module.add_task("es")
    assert torch.equal(module(h), before)
    state.task = "es"
    assert module.tcl.up_to("es") == ["en", "es"] and not torch.equal(module(h), before)


def test_masks_protect_older_marketplaces_while_capsules_share_knowledge(tiny_params):
    method, ms = make_method(tiny_params, name="b_cl", epochs=1)
    olders, befores = learn_first_task_with_binary_masks(method, ms)  # as in the HAT test
    method.learn(1, ms[1], ms[:2])
    for name, out, inp in (
        ("up.weight", "up", "down"),
        ("larger.weight", "larger", None),
        ("down.weight", "down", None),
    ):
        protected = changed = 0
        for module, older, before in zip(method.modules, olders, befores):
            after = module.state_dict()
            used = used_by(older[out], None if inp is None else older[inp], before[name]).bool()
            assert torch.equal(before[name][used], after[name][used]), name  # HAT's gradient masks
            protected += int(used.sum())
            changed += int((before[name] != after[name]).sum())
        assert protected and changed, name  # units task 1 uses are kept, the ones it leaves free keep learning
    afters = [m.state_dict() for m in method.modules]
    for before, after in zip(befores, afters):
        assert all(torch.equal(before[k], after[k]) for k in before if k.startswith("e_") and k.endswith(".en"))
    # task 1's capsule keeps training with task 2 (knowledge sharing; in the tiny model's last layer the CLS token's
    # two bottleneck units can both be off, which stops its gradient there, hence "any")
    assert any(not torch.equal(b["tcl.caps.en.weight"], a["tcl.caps.en.weight"]) for b, a in zip(befores, afters))
    assert method.trainable_params == sum(p.numel() for p in method.trainable("es")[0]["params"]) + 32 * 2 + 2
