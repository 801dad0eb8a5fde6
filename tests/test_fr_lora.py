"""FR-LoRA / EWC follow Algorithm 1: what trains in which stage, lr decay, projection, Fisher artifacts."""

import json

import pytest
import torch

from frkit.config import make_config
from frkit.core.lora_delta import lora_factors
from frkit.core.projection import projection_residual
from frkit.methods import METHODS
from frkit.methods.base import MethodContext
from frkit.models.encoder import load_tokenizer
from frkit.records import RunFolder
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
        snapshots["base_changed_in_stage2"] = [
            k for k, v in snapshots["base_after_stage1"].items() if not torch.equal(v, after[k])
        ]
        snapshots["head_changed_in_stage2"] = not torch.equal(
            snapshots["head_after_stage1"], method.model.heads[m.name].weight
        )
        snapshots["lora_nonzero"] = any(
            p.abs().sum() > 0 for n, p in method.model.encoder.named_parameters() if "lora_B" in n
        )
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


def test_the_next_eq2_is_weighted_by_line_10s_fisher(tiny_params, monkeypatch):
    """Algorithm 1 line 10: the Fisher recomputed with adapter t on is what the next marketplace's Eq. 2 reads."""
    import frkit.methods.ewc as ewc_module

    cfg, method, ms = _method(tiny_params, method="fr_lora", epochs=1)
    assert cfg.ewc_lambda > 0
    fishers, penalised = [], []
    real_fisher, real_penalty = method.compute_fisher, ewc_module.ewc_penalty

    def fisher_spy(marketplace, head, names=None):
        out = real_fisher(marketplace, head, names)
        fishers.append({k: v.clone() for k, v in out.items()})
        return out

    def penalty_spy(params, anchor, fisher, lam):
        penalised.append({k: v.clone() for k, v in fisher.items()})
        return real_penalty(params, anchor, fisher, lam)

    method.compute_fisher = fisher_spy
    monkeypatch.setattr(ewc_module, "ewc_penalty", penalty_spy)
    method.learn(0, ms[0], ms[:1])
    line5, line10 = fishers
    method.learn(1, ms[1], ms[:2])
    assert penalised and set(penalised[0]) == set(line10)
    assert all(torch.equal(penalised[0][k], line10[k]) for k in line10)
    # the two Fishers differ (adapter en on or off), so the check above tells them apart
    assert any(not torch.equal(line5[k], line10[k]) for k in line10)


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


def test_lr_decay_and_projection_through_the_runner(tiny_params, monkeypatch):
    made = []  # the learning rate of every optimiser the loop builds, as AdamW holds it

    class SpyAdamW(torch.optim.AdamW):
        def __init__(self, params, *args, **kwargs):
            super().__init__(params, *args, **kwargs)
            made.append([group["lr"] for group in self.param_groups])

    monkeypatch.setattr(torch.optim, "AdamW", SpyAdamW)
    cfg = make_config(tiny_params(method="fr_lora", run_name="proj", projection=True, lr_decay=0.5, epochs=1))
    result = run(cfg, show_progress=False)
    # per marketplace: Stage I (base + head) at lr * decay^t, then Stage II (LoRA + head) at stage2_lr
    assert made == [[pytest.approx(lr)] for t in range(3) for lr in (cfg.lr * 0.5**t, cfg.stage2_lr)]
    steps = json.loads((result.run_dir / "progress.json").read_text())["steps"]
    assert [s["stage1_lr"] for s in steps] == pytest.approx(
        [cfg.lr, cfg.lr * 0.5, cfg.lr * 0.25]
    )  # and the log says so
    assert all(s["stage2"]["eq4_penalty"]["mean"] > 0 for s in steps)  # progress.json splits Eq. 4 out of the loss
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


def test_stage_two_loss_holds_the_eq4_penalty_built_from_the_line_5_fisher(tiny_params, monkeypatch):
    """Stage II's loss = L_task + beta/2 sum (Delta W)^2 / (F + eps), with F the Fisher of line 5 (the Stage-I base,
    adapters off), not line 10's (adapter on); Delta W = scaling * B A of the new LoRA, computed here by hand."""
    import frkit.methods.fr_lora as fr_module
    from frkit.core.lora_delta import lora_layers
    from frkit.train import cross_entropy_loss

    cfg, method, ms = _method(tiny_params, method="fr_lora", epochs=1, beta=0.5, fr_eps=1e-7)
    fishers, penalties, seen = [], [], {}
    real_fisher, real_train, real_penalty = method.compute_fisher, method.train, fr_module.fr_penalty_precomputed

    def spy_fisher(marketplace, head, names=None):
        fishers.append(real_fisher(marketplace, head, names))
        return fishers[-1]

    def spy_penalty(delta_w, inv_fisher, beta):
        penalties.append(real_penalty(delta_w, inv_fisher, beta))
        return penalties[-1]

    def spy_train(model, params, marketplace, head, lr, step, loss_fn=None, **kwargs):
        result = real_train(model, params, marketplace, head, lr, step, loss_fn=loss_fn, **kwargs)
        if "warmup_steps" in kwargs:  # Stage II: evaluate its loss once more on one batch, after training
            batch = next(iter(method.ctx.loader(marketplace.train, train=False)))
            batch = {k: v.to(method.ctx.device) for k, v in batch.items()}
            with torch.no_grad():
                seen["total"], seen["task"] = (
                    loss_fn(model, batch).item(),
                    cross_entropy_loss(head)(model, batch).item(),
                )
                seen["delta"] = {
                    k: layer.scaling[head] * layer.lora_B[head].weight @ layer.lora_A[head].weight
                    for k, layer in lora_layers(method.model.encoder, head).items()
                }
        return result

    method.compute_fisher, method.train = spy_fisher, spy_train
    monkeypatch.setattr(fr_module, "fr_penalty_precomputed", spy_penalty)
    logged = method.learn(0, ms[0], ms[:1])["stage2"]["eq4_penalty"]
    line5, line10 = fishers  # Algorithm 1 lines 5 and 10

    def eq4(fisher):
        return sum(
            (0.5 / 2) * (d.double() ** 2 / (fisher[k].double() + 1e-7)).sum() for k, d in seen["delta"].items()
        ).item()

    assert len(penalties) > 1  # every Stage II step carried the penalty
    assert eq4(line5) > 0 and penalties[-1].item() == pytest.approx(eq4(line5), rel=1e-4)
    # the check sees the Fisher: a Fisher ten times as large would give another penalty (fr_eps is small beside
    # this Fisher) (line 10's Fisher, taken with
    # this run's barely trained LoRA active, is within 1e-7 of line 5's here, so it cannot tell them apart)
    assert eq4({k: 10 * f for k, f in line5.items()}) != pytest.approx(penalties[-1].item(), rel=1e-2)
    assert line10 is not line5
    assert seen["total"] == pytest.approx(seen["task"] + penalties[-1].item(), abs=1e-5)
    # the log splits the penalty out of Stage II's loss: its steps' penalties (the last call above was the no-grad look)
    trained = [p.item() for p in penalties[:-1]]
    below = sum(int((line5[k] < 1e-7).sum()) for k in seen["delta"]) / sum(line5[k].numel() for k in seen["delta"])
    assert logged == pytest.approx(
        {"mean": sum(trained) / len(trained), "last": trained[-1], "fisher_below_eps": below}
    )


def test_stage_two_log_holds_no_penalty_at_beta_zero(tiny_params):
    _, method, ms = _method(tiny_params, method="fr_lora", epochs=1, beta=0.0)
    assert method.learn(0, ms[0], ms[:1])["stage2"]["eq4_penalty"] is None
