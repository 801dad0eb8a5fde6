"""LoRA Sequential Stacking (FR-LoRA Table 1): O-LoRA's adapters and training without the orthogonality term."""

import torch
from transformers import set_seed

from frkit.config import make_config
from frkit.core.lora_delta import lora_factors
from frkit.methods import METHODS
from frkit.methods.base import MethodContext
from frkit.methods.lora_stacking import LoraStacking
from frkit.methods.o_lora import OLora
from frkit.models.encoder import load_tokenizer
from frkit.runner import load_configured_marketplaces


def _method(tiny_params, name, **overrides):
    cfg = make_config(tiny_params(method=name, epochs=1, **overrides))
    ctx = MethodContext(cfg, cfg.model_name_or_path, load_tokenizer(cfg.model_name_or_path), show_progress=False)
    return METHODS[name](cfg, ctx), load_configured_marketplaces(cfg)


def test_o_lora_is_stacking_plus_its_loss_terms():
    assert issubclass(OLora, LoraStacking) and METHODS["lora_stacking"] is LoraStacking
    for shared in ("learn", "activate", "model_for", "save", "load"):  # one code path, not a copy
        assert getattr(OLora, shared) is getattr(LoraStacking, shared), shared


def test_older_loras_are_unchanged_and_active_while_a_new_one_trains(tiny_params):
    method, ms = _method(tiny_params, "lora_stacking")
    method.learn(0, ms[0], ms[:1])
    before = {
        k: (a.detach().clone(), b.detach().clone()) for k, (a, b) in lora_factors(method.model.encoder, "en").items()
    }

    active_during_training = []
    real_loss = method.loss

    def spying_loss(name):
        task = real_loss(name)

        def loss(model, batch):
            active_during_training.append(sorted(model.encoder.base_model.active_adapters))
            return task(model, batch)

        return loss

    method.loss = spying_loss
    method.learn(1, ms[1], ms[:2])
    assert active_during_training and all(a == ["en", "es"] for a in active_during_training)
    after = lora_factors(method.model.encoder, "en")
    assert before.keys() == after.keys() and before
    for k, (a, b) in after.items():  # A and B of the older LoRA: bit for bit
        assert torch.equal(before[k][0], a) and torch.equal(before[k][1], b), k
    es_b = [b for _, b in lora_factors(method.model.encoder, "es").values()]
    assert any(b.abs().sum() > 0 for b in es_b)  # the new LoRA did learn (B starts at zero)
    model, head = method.model_for("en")
    assert head == "en" and sorted(model.encoder.base_model.active_adapters) == ["en", "es"]
    # trainable: the new LoRA (q/k/v of 2 layers, rank 2, hidden 32: 2 * 3 * (2*32 + 32*2)) and its head
    assert method.trainable_params == 2 * 3 * (2 * 32 + 32 * 2) + (32 * 2 + 2)


def test_stacking_equals_o_lora_with_its_terms_switched_off(tiny_params):
    results = {}
    for name, extra in (("lora_stacking", {}), ("o_lora", {"olora_lambda_orth": 0.0, "olora_lambda_l2": 0.0})):
        method, ms = _method(tiny_params, name, **extra)
        for k in range(2):
            set_seed(k)
            method.learn(k, ms[k], ms[: k + 1])
        results[name] = {k: b.detach().clone() for k, (_, b) in lora_factors(method.model.encoder, "es").items()}
    for k, b in results["lora_stacking"].items():
        torch.testing.assert_close(b, results["o_lora"][k], rtol=0, atol=0)
