"""Every registered method end to end through the runner, on the tiny model and data."""
import json

import numpy as np
import pytest
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
    assert m["forgetting"] <= 1e-12
    assert set(m["trainable_params"]) == {"en", "es", "ja"} and all(v > 0 for v in m["trainable_params"].values())
    for f in ("params.yaml", "environment.json", "auc_matrix.csv", "progress.json"):
        assert (result.run_dir / f).exists(), f
    env = json.loads((result.run_dir / "environment.json").read_text())
    assert env["seed"] == 0 and env["versions"]["torch"]


def test_adapter_methods_do_not_touch_the_base(tiny_params, tiny_model_dir):
    cfg = make_config(tiny_params(method="lora", run_name="lora_base"))
    result = run(cfg, show_progress=False)
    ckpt = next((result.run_dir / "checkpoints").glob("step_2_*"))
    # the saved adapter loads with peft's own API onto a fresh base
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
