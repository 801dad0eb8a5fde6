"""head_init (issue 30): fresh, previous and shared heads through the runner; methods that cannot take one refuse."""

from __future__ import annotations

import pytest
import torch

from frkit.config import make_config
from frkit.errors import FrkitInputError
from frkit.methods import METHODS
from frkit.methods.base import MethodContext
from frkit.models.cross_encoder import SHARED_HEAD, CrossEncoder
from frkit.models.encoder import load_tokenizer
from frkit.records import with_legacy_values
from frkit.runner import load_configured_marketplaces, run

SHARING = sorted(m for m, cls in METHODS.items() if "shared" in cls.head_inits)
PREVIOUS = sorted(m for m, cls in METHODS.items() if "previous" in cls.head_inits)


def _spy_add_head(monkeypatch):
    """Every add_head call: (name, the new head's weights, every other head's weights at that moment)."""
    calls = []
    real = CrossEncoder.add_head

    def add_head(self, name, *args, **kwargs):
        others = {k: h.weight.detach().clone() for k, h in self.heads.items()}
        head = real(self, name, *args, **kwargs)
        calls.append((name, head.weight.detach().clone(), others))
        return head

    monkeypatch.setattr(CrossEncoder, "add_head", add_head)
    return calls


def _tiny(tiny_params, method, **kw):
    return make_config(tiny_params(method=method, epochs=1, marketplaces=["en", "es"], max_steps_per_epoch=2, **kw))


def test_previous_starts_the_new_head_from_the_last_one(tiny_params, monkeypatch):
    calls = _spy_add_head(monkeypatch)
    run(_tiny(tiny_params, "sequential", head_init="previous"), show_progress=False)
    (_, _, _), (name, new, others) = [c for c in calls if c[0] in ("en", "es")]
    assert name == "es" and torch.equal(new, others["en"])  # a copy of en's trained head


def test_fresh_is_a_new_random_head(tiny_params, monkeypatch):
    calls = _spy_add_head(monkeypatch)
    run(_tiny(tiny_params, "sequential"), show_progress=False)
    _, new, others = [c for c in calls if c[0] == "es"][0]
    assert not torch.equal(new, others["en"])


def test_shared_is_one_head_every_marketplace_scores_through(tiny_params, monkeypatch):
    cfg = _tiny(tiny_params, "sequential", head_init="shared")
    ms = load_configured_marketplaces(cfg)
    ctx = MethodContext(cfg, cfg.model_name_or_path, load_tokenizer(cfg.model_name_or_path), show_progress=False)
    method = METHODS["sequential"](cfg, ctx)
    for step, m in enumerate(ms):
        method.learn(step, m, ms[: step + 1])
    model = method.model
    assert list(model.heads) == [SHARED_HEAD] and len(model.heads) == 1
    assert all(model.heads[m.name] is model.heads[SHARED_HEAD] for m in ms)
    assert [k for k in model.state_dict() if k.startswith("heads.")] == ["heads.shared.weight", "heads.shared.bias"]
    used = []
    real = model.heads[SHARED_HEAD].forward
    monkeypatch.setattr(model.heads[SHARED_HEAD], "forward", lambda x: used.append(1) or real(x))
    for m in ms:
        before = len(used)
        method.predict(m.test, m.name)
        assert len(used) > before  # en and es are both scored through the one head


@pytest.mark.parametrize("method", SHARING)
def test_every_method_that_shares_runs_and_resumes_with_one_head(tiny_params, method, tmp_path):
    cfg = _tiny(tiny_params, method, head_init="shared")
    result = run(cfg, show_progress=False)
    assert result.auc_matrix.shape == (2, 2)
    ms = load_configured_marketplaces(cfg)
    ctx = MethodContext(cfg, cfg.model_name_or_path, load_tokenizer(cfg.model_name_or_path), show_progress=False)
    trained = METHODS[method](cfg, ctx)
    trained.learn(0, ms[0], ms[:1])
    trained.save(tmp_path)
    again = METHODS[method](cfg, ctx)
    again.load(tmp_path)  # the checkpoint's structure is rebuilt with the shared head
    model, head = again.model_for("en")
    assert len(model.heads) == 1 and torch.equal(
        model.heads[head].weight, trained.model_for("en")[0].heads["en"].weight
    )


@pytest.mark.parametrize("method", PREVIOUS)
def test_every_method_that_takes_previous_runs(tiny_params, method):
    assert run(_tiny(tiny_params, method, head_init="previous"), show_progress=False).auc_matrix.shape == (2, 2)


@pytest.mark.parametrize(
    "method,head_init",
    [
        ("hat", "shared"),
        ("b_cl", "shared"),
        ("ctr", "shared"),
        ("dytox", "previous"),
        ("independent", "shared"),
        ("joint", "previous"),
    ],
)
def test_a_method_that_cannot_take_it_is_refused_before_training(tiny_params, method, head_init, monkeypatch):
    monkeypatch.setattr(METHODS[method], "learn", lambda *a: pytest.fail("trained"))
    with pytest.raises(FrkitInputError, match=rf"head_init.*{method!r}"):
        run(make_config(tiny_params(method=method, head_init=head_init)), show_progress=False)


def test_old_runs_had_fresh_heads():
    assert with_legacy_values({"method": "sequential"})["head_init"] == "fresh"
    assert make_config({"method": "sequential"}).head_init == "fresh"
