"""Every registered method end to end through the runner, on the tiny model and data."""

import json

import numpy as np
import pytest
import torch
from peft import PeftModel
from safetensors.torch import load_file

from frkit.config import make_config
from frkit.methods import METHODS
from frkit.models.encoder import load_encoder
from frkit.runner import run


@pytest.mark.parametrize("method", sorted(METHODS))
def test_method_runs_end_to_end(method, tiny_params):
    cfg = make_config(tiny_params(method=method, run_name=method))
    result = run(cfg, show_progress=False)
    R = result.auc_matrix
    assert R.shape == (3, 3) and np.isfinite(R).all() and ((R >= 0) & (R <= 1)).all()
    m = json.loads((result.run_dir / "metrics.json").read_text())
    assert m["average_auc"] == pytest.approx(R[-1].mean())
    # the metrics are the ones of this matrix (forgetting: last row against each column's best since it was learned)
    assert m["forgetting"] == pytest.approx(np.mean([R[2, t] - R[t:, t].max() for t in range(3)]))
    assert m["backward_transfer"] == pytest.approx(np.mean([R[2, t] - R[t, t] for t in range(2)]))
    assert m["auc_matrix"] == R.tolist()
    assert set(m["trainable_params"]) == {"en", "es", "ja"} and all(v > 0 for v in m["trainable_params"].values())
    for f in ("params.yaml", "environment.json", "auc_matrix.csv", "progress.json"):
        assert (result.run_dir / f).exists(), f
    env = json.loads((result.run_dir / "environment.json").read_text())
    assert env["seed"] == 0 and env["versions"]["torch"]
    from frkit.precision import bf16_support, cpu_model

    assert env["cpu"] == cpu_model() and env["torch_threads"] >= 1  # where the result was computed
    assert (env["bf16_autocast_fast"], env["bf16_autocast_why"]) == bf16_support(torch.device("cpu"))
    # each step says what it computed in: precision auto is bf16 on one CPU and fp32 on another
    from frkit.precision import resolved_precision

    steps = json.loads((result.run_dir / "progress.json").read_text())["steps"]
    assert [s["precision"] for s in steps] == [resolved_precision(cfg.precision)] * 3


@pytest.mark.parametrize("bf16_fast", [True, False])
def test_each_step_records_the_precision_auto_chose(bf16_fast, tiny_params, monkeypatch):
    """Whatever this CPU is: where bf16 is fast auto records bf16, where it is not fp32."""
    import frkit.precision

    monkeypatch.setattr(frkit.precision, "bf16_support", lambda device: (bf16_fast, "a test's CPU"))
    cfg = make_config(tiny_params(method="sequential", epochs=1, run_name=f"auto{bf16_fast}"))
    result = run(cfg, show_progress=False)
    steps = json.loads((result.run_dir / "progress.json").read_text())["steps"]
    assert [s["precision"] for s in steps] == ["bf16" if bf16_fast else "fp32"] * 3


def _base_view(encoder) -> dict:
    """The encoder's weights under the plain model's names: peft's wrappers (base_model[.model], base_layer) and
    frkit's injected adapter modules dropped, so they compare key by key with a freshly loaded base."""
    out = {}
    for name, tensor in encoder.state_dict().items():
        for prefix in ("base_model.model.", "base_model."):
            if name.startswith(prefix):
                name = name[len(prefix) :]
                break
        out[name.replace(".base_layer.", ".")] = tensor
    return out


@pytest.mark.parametrize("method", ["lora", "prefix", "adapter_fusion"])
def test_adapter_methods_do_not_touch_the_base(method, tiny_params, tiny_model_dir):
    from frkit.reload import load_method

    cfg = make_config(tiny_params(method=method, run_name=f"{method}_base"))
    result = run(cfg, show_progress=False)
    _, trained, _ = load_method(result.run_dir)  # the final checkpoint, as a notebook reloads it
    base, now = load_encoder(tiny_model_dir).state_dict(), _base_view(trained.model.encoder)
    missing = sorted(set(base) - set(now))
    assert not missing, missing[:5]
    changed = sorted(k for k in base if not torch.equal(base[k], now[k].cpu()))
    assert not changed, changed[:5]  # every base weight as it was loaded, after three marketplaces
    assert len(now) > len(base)  # and the adapters are there beside it
    if method == "lora":  # the saved adapter loads with peft's own API onto a fresh base
        ckpt = next((result.run_dir / "checkpoints").glob("step_2_*"))
        model = PeftModel.from_pretrained(load_encoder(tiny_model_dir), str(ckpt / "adapters" / "en"))
        lora = [n for n in load_file(str(ckpt / "adapters" / "en" / "adapter_model.safetensors"))]
        assert lora and all("lora_" in n for n in lora)
        assert model.peft_config["default"].r == 2


def test_sequential_forgets_and_independent_does_not_change_old_models(tiny_params):
    seq = run(make_config(tiny_params(method="sequential", run_name="seq")), show_progress=False).auc_matrix
    ind = run(make_config(tiny_params(method="independent", run_name="ind")), show_progress=False).auc_matrix
    # an independent model never changes after it was trained: its column is constant from the diagonal down
    for t in range(3):
        assert np.allclose(ind[t:, t], ind[t, t])
    # sequential training moves the shared encoder, so the first marketplace's score changes
    assert not np.isclose(seq[0, 0], seq[2, 0])


def test_init_aucs_are_kept_on_disk_for_the_next_runs_process(tiny_params, tmp_path, monkeypatch):
    """b_t (the base encoder's AUC with a fresh seeded head) is the same for every method of one seed and data: a
    sweep's next run, in a process of its own, reads it from the cache instead of scoring every test set again."""
    import frkit.runner as runner

    monkeypatch.setenv("FRKIT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(runner, "_INIT_AUCS", {})
    first = run(make_config(tiny_params(method="sequential", run_name="first")), show_progress=False)
    assert len(list((tmp_path / "cache" / "init_aucs").glob("*.json"))) == 3
    monkeypatch.setattr(runner, "_INIT_AUCS", {})  # a new process: nothing in memory

    def no_second_scoring(*args, **kwargs):
        raise AssertionError("the init AUCs were computed again")

    scoring = runner.fresh_cross_encoder
    monkeypatch.setattr(runner, "fresh_cross_encoder", no_second_scoring)
    second = run(make_config(tiny_params(method="lora", run_name="second")), show_progress=False)
    init = [json.loads((r.run_dir / "progress.json").read_text())["init_aucs"] for r in (first, second)]
    assert init[0] == init[1] and len(init[0]) == 3
    # another seed has another fresh head: computed, not read (a new process again: other tests' seed-1 entries in
    # this process's memory must not stand in for it)
    monkeypatch.setattr(runner, "fresh_cross_encoder", scoring)
    monkeypatch.setattr(runner, "_INIT_AUCS", {})
    run(make_config(tiny_params(method="lora", run_name="third", seed=1)), show_progress=False)
    assert len(list((tmp_path / "cache" / "init_aucs").glob("*.json"))) == 6
