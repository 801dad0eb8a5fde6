"""O-LoRA (FR-LoRA Table 1): the orthogonality term against a brute-force sum, and the method's adapters."""

import pytest
import torch

from frkit.config import make_config
from frkit.core.lora_delta import lora_factors
from frkit.core.orthogonal import l2_loss, orthogonality_loss
from frkit.methods import METHODS
from frkit.methods.base import MethodContext
from frkit.models.encoder import load_tokenizer
from frkit.runner import load_configured_marketplaces


def test_orthogonality_loss_matches_a_brute_force_sum():
    g = torch.Generator().manual_seed(0)
    older = [{"q": torch.randn(2, 5, generator=g), "v": torch.randn(2, 5, generator=g)} for _ in range(2)]
    new = {"q": torch.randn(3, 5, generator=g), "v": torch.randn(3, 5, generator=g)}
    expected = 0.0
    for old in older:
        for key in new:
            for i in range(old[key].shape[0]):
                for j in range(new[key].shape[0]):
                    expected += abs(sum(old[key][i, d].item() * new[key][j, d].item() for d in range(5)))
    assert orthogonality_loss(older, new).item() == pytest.approx(expected, rel=1e-5)
    assert l2_loss(new.values()).item() == pytest.approx(sum(t.norm().item() for t in new.values()), rel=1e-6)


def test_orthogonal_subspaces_cost_nothing_and_only_the_new_adapter_gets_gradient():
    eye = torch.eye(4)
    old = {"q": eye[:2].clone().requires_grad_(True)}
    new = {"q": eye[2:].clone().requires_grad_(True)}
    assert orthogonality_loss([old], new).item() == 0.0
    new["q"].data += 0.1
    orthogonality_loss([old], new).backward()
    assert old["q"].grad is None and new["q"].grad.abs().sum() > 0
    with pytest.raises(ValueError, match="same targets"):
        orthogonality_loss([{"k": eye[:2]}], {"q": eye[2:]})


def test_o_lora_trains_only_the_new_adapter_with_the_older_ones_active(tiny_params, monkeypatch):
    cfg = make_config(tiny_params(method="o_lora", epochs=1, olora_lambda_l2=0.01))
    ms = load_configured_marketplaces(cfg)
    ctx = MethodContext(cfg, cfg.model_name_or_path, load_tokenizer(cfg.model_name_or_path), show_progress=False)
    method = METHODS["o_lora"](cfg, ctx)
    method.learn(0, ms[0], ms[:1])
    en_before = {
        k: (a.detach().clone(), b.detach().clone()) for k, (a, b) in lora_factors(method.model.encoder, "en").items()
    }
    orth_calls = []
    import frkit.methods.o_lora as o_lora_module

    real = o_lora_module.orthogonality_loss

    def spy(older, new):
        active = method.model.encoder.base_model.active_adapters
        orth_calls.append(sorted(active))
        return real(older, new)

    monkeypatch.setattr(o_lora_module, "orthogonality_loss", spy)
    method.learn(1, ms[1], ms[:2])
    assert orth_calls and all(a == ["en", "es"] for a in orth_calls)  # the penalty is on, both LoRAs summed
    en_after = lora_factors(method.model.encoder, "en")
    assert en_after.keys() == en_before.keys()
    for k, (a, b) in en_after.items():  # older LoRA frozen: both of its factors
        assert torch.equal(en_before[k][0], a) and torch.equal(en_before[k][1], b), k
    assert any(
        b.abs().sum() > 0 for _, b in en_after.values()
    )  # B of en was trained in step 1 (not still its zero init)
    model, head = method.model_for("en")
    assert head == "en" and sorted(model.encoder.base_model.active_adapters) == ["en", "es"]
