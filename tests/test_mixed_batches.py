"""Methods that mix memory or translated batches train through ``Method.train(batches=...)``: the one caller of the
training loop (issue 31). Their tiny runs give the AUC matrices that the code before that move gave (recorded at
commit 18188b2, fp32 on the tiny model and data of conftest.py), so the move changed no number."""

from __future__ import annotations

import sys

import numpy as np
import pytest

import frkit.methods.base as base
from frkit.config import make_config
from frkit.runner import run

BEFORE = {  # R[k, t] after marketplace k (en, es, ja) on test set t, from the code that called fit in each method
    "replay": [
        [0.52734375, 0.4609375, 0.23828125],
        [0.62109375, 0.49609375, 0.51953125],
        [0.62109375, 0.3984375, 0.44140625],
    ],
    "dytox": [[0.6171875, 0.3359375, 0.390625], [0.53125, 0.3671875, 0.41015625], [0.6484375, 0.3671875, 0.37109375]],
    "attention_distillation": [
        [0.33203125, 0.53515625, 0.5546875],
        [0.33203125, 0.5234375, 0.5234375],
        [0.3359375, 0.5234375, 0.55859375],
    ],
}


@pytest.mark.parametrize("method", sorted(BEFORE))
def test_mixed_batch_methods_give_the_numbers_they_gave_before(method, tiny_params, monkeypatch):
    calls = []
    real_fit = base.fit
    monkeypatch.setattr(base, "fit", lambda *a, **kw: calls.append(kw["desc"]) or real_fit(*a, **kw))
    # replay_fraction null: the fixed replay_samples buffer the code of 18188b2 had (the default is now a fraction)
    extra = {"replay_fraction": None} if method == "replay" else {}
    cfg = make_config(tiny_params(method=method, run_name=method, precision="fp32", epochs=2, **extra))
    result = run(cfg, show_progress=False)
    np.testing.assert_allclose(result.auc_matrix, BEFORE[method], rtol=0, atol=1e-6)
    assert calls and all(d.startswith(f"{method}:") for d in calls)  # every training went through Method.train


def test_no_method_file_calls_the_training_loop_itself():
    import frkit.methods  # noqa: F401  (every method file)
    from frkit.train import fit

    callers = [
        n for n, m in list(sys.modules.items()) if n.startswith("frkit.methods") and getattr(m, "fit", None) is fit
    ]
    assert callers == ["frkit.methods.base"]
