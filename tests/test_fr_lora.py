"""FR-LoRA / EWC follow Algorithm 1: what trains in which stage, lr decay, projection, Fisher artifacts."""
import json

import pytest
import torch

from frkit.artifacts import RunFolder
from frkit.config import make_config
from frkit.core.lora_delta import lora_factors
from frkit.core.projection import projection_residual
from frkit.methods import METHODS
from frkit.methods.base import MethodContext
from frkit.models.encoder import load_tokenizer
from frkit.runner import load_configured_marketplaces, run


def _method(tiny_params, **kw):
    cfg = make_config(tiny_params(**kw))
    ms = load_configured_marketplaces(cfg)
    ctx = MethodContext(cfg, cfg.model_name_or_path, load_tokenizer(cfg.model_name_or_path), show_progress=False)
    return cfg, METHODS[cfg.method](cfg, ctx), ms


def test_stage_two_trains_only_the_adapter_and_head(tiny_params):
    cfg, method, ms = _method(tiny_params, method="fr_lora", epochs=1)
    snapshots = {}
    real_stage1, real_stage2 = method.train_base_with_ewc, method.train_adapter

    from frkit.methods.ewc import base_parameters

    def state():
        return {k: p.detach().clone() for k, p in base_parameters(method.model.encoder).items()}

    def stage1(step, m):
        out = real_stage1(step, m)
        snapshots["base_after_stage1"] = state()
        snapshots["head_after_stage1"] = method.model.heads[m.name].weight.detach().clone()
        return out

    def stage2(step, m):
        out = real_stage2(step, m)
        after = state()
        snapshots["base_changed_in_stage2"] = [k for k, v in snapshots["base_after_stage1"].items() if not torch.equal(v, after[k])]
        snapshots["head_changed_in_stage2"] = not torch.equal(snapshots["head_after_stage1"], method.model.heads[m.name].weight)
        snapshots["lora_nonzero"] = any(p.abs().sum() > 0 for n, p in method.model.encoder.named_parameters() if "lora_B" in n)
        return out

    method.train_base_with_ewc, method.train_adapter = stage1, stage2
    base_before = {k: v.clone() for k, v in method.model.encoder.state_dict().items()}
    method.learn(0, ms[0], ms[:1])
    assert snapshots["base_changed_in_stage2"] == []  # base frozen in Stage II
    assert snapshots["head_changed_in_stage2"] and snapshots["lora_nonzero"]  # adapter and head trained
    # Stage I did move the base
    after = snapshots["base_after_stage1"]
    moved = [k for k, v in base_before.items() if k in after and not torch.equal(v, after[k])]
    assert moved  # Stage I moved the base (keys of the plain encoder = peft-free names)
    assert method.fisher is not None and method.anchor is not None
    # trainable count (Table 1's last column): base + head t (Stage I) + LoRA t (Stage II), the head counted once
    base = sum(p.numel() for p in base_parameters(method.model.encoder).values())
    lora = sum(p.numel() for n, p in method.model.encoder.named_parameters() if "lora_" in n)
    head = sum(p.numel() for p in method.model.heads[ms[0].name].parameters())
    assert method.trainable_params == base + head + lora


@pytest.mark.parametrize("method_name", ["fr_lora", "fr_dora"])
def test_fisher_of_line_5_sees_the_base_and_line_10_the_new_adapter(tiny_params, method_name):
    """Line 5's Fisher (Eq. 4's weights) is of the Stage-I base with every adapter off, also when older adapters
    exist; line 10's is of the model with adapter t on. Spy on which adapters are live at each Fisher call."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    cfg, method, ms = _method(tiny_params, method=method_name, epochs=1)
    calls = []
    real = method.compute_fisher

    def spy(marketplace, head, names=None):
        layers = [m for m in method.model.encoder.modules() if isinstance(m, BaseTunerLayer)]
        live = sorted({a for m in layers if not m.disable_adapters for a in m.active_adapters}) if layers else []
        calls.append((marketplace.name, live))
        return real(marketplace, head, names)

    method.compute_fisher = spy
    for step, m in enumerate(ms[:2]):
        method.learn(step, m, ms[: step + 1])
        method.model_for(m.name)  # scoring activates adapter t, as the runner does
    assert calls == [("en", []), ("en", ["en"]), ("es", []), ("es", ["es"])]


def test_ewc_penalty_is_active_from_the_second_marketplace(tiny_params, monkeypatch):
    import frkit.methods.ewc as ewc_module

    values = []
    real = ewc_module.ewc_penalty

    def spy(params, anchor, fisher, lam):
        out = real(params, anchor, fisher, lam)
        values.append(out.item())
        return out

    monkeypatch.setattr(ewc_module, "ewc_penalty", spy)
    cfg, method, ms = _method(tiny_params, method="ewc", epochs=1)
    method.learn(0, ms[0], ms[:1])
    assert values == []  # Eq. 2's indicator 1{t>1}: no penalty on the first marketplace
    method.learn(1, ms[1], ms[:2])
    assert values and values[0] == 0.0  # first step of task 2 starts at the anchor
    assert max(values) > 0  # and the penalty grows as the base moves away from it


def test_lr_decay_and_projection_through_the_runner(tiny_params):
    cfg = make_config(tiny_params(method="fr_lora", run_name="proj", projection=True, lr_decay=0.5, epochs=1))
    result = run(cfg, show_progress=False)
    steps = json.loads((result.run_dir / "progress.json").read_text())["steps"]
    assert [s["stage1_lr"] for s in steps] == pytest.approx([cfg.lr, cfg.lr * 0.5, cfg.lr * 0.25])
    # the final checkpoint's older adapters lie in the last adapter's subspaces (Eq. 5)
    folder = RunFolder(result.run_dir)
    _, method, _ = _method(tiny_params, method="fr_lora", run_name="proj", projection=True, lr_decay=0.5, epochs=1)
    method.load(folder.latest_checkpoint())
    latest = lora_factors(method.model.encoder, "ja")
    for name in ("en", "es"):
        for key, (a, b) in lora_factors(method.model.encoder, name).items():
            a_m, b_m = latest[key]
            assert projection_residual(b.detach(), b_m.detach()) < 1e-4
            assert projection_residual(a.detach().T, a_m.detach().T) < 1e-4
    # the Fisher of every marketplace is kept for the inspection notebook
    for k, name in enumerate(["en", "es", "ja"]):
        fisher = folder.load_artifact(k, name, "fisher_qkv")
        assert fisher and all(k.endswith(("query.weight", "key.weight", "value.weight")) for k in fisher)
        assert all((f >= 0).all() for f in fisher.values())
