"""The training loop: warm-up that ends within the run, the learning curve, and a NaN validation AUC that stops it."""

import math

import pytest
import torch

from frkit.train import TrainSettings, fit, warmup_steps


def test_fixed_warmup_is_capped_at_a_tenth_of_the_run():
    paper = TrainSettings(lr=1e-5, warmup_steps=1000)  # FR-LoRA Stage II: 1000 warm-up steps
    assert warmup_steps(paper, 50_000) == 1000  # long enough: the paper's value as it is
    assert warmup_steps(paper, 150) == 15  # a short run warms up over its first tenth, then trains at the rate
    assert warmup_steps(TrainSettings(lr=1e-5, warmup_ratio=0.2), 150) == 30  # ratio-based warm-up unchanged


def _toy(n=32):
    torch.manual_seed(0)
    x = torch.randn(n, 4)
    y = (x[:, 0] > 0).long()
    model = torch.nn.Linear(4, 2)
    batches = [{"x": x[i : i + 4], "labels": y[i : i + 4]} for i in range(0, n, 4)]
    loss = lambda m, b: torch.nn.functional.cross_entropy(m(b["x"]), b["labels"])  # noqa: E731
    return model, batches, loss


def test_learning_curve_every_n_steps():
    model, batches, loss = _toy()
    calls = []
    result = fit(
        model,
        list(model.parameters()),
        batches,
        loss,
        lambda: calls.append(1) or 0.5 + 0.01 * len(calls),
        TrainSettings(lr=0.1, epochs=2, eval_every_steps=3, show_progress=False, patience=0, precision="fp32"),
    )
    assert [p["step"] for p in result.curve] == [3, 6, 9, 12, 15]  # 8 steps an epoch, 2 epochs
    assert all(math.isfinite(p["train_loss"]) and 0.5 < p["val_auc"] < 1 for p in result.curve)
    assert [h["step"] for h in result.history] == [8, 16]


def test_nan_validation_auc_stops_instead_of_keeping_untrained_weights():
    model, batches, loss = _toy()
    with pytest.raises(RuntimeError, match=r"validation ROC-AUC is nan after step 8.*both labels"):
        fit(
            model,
            list(model.parameters()),
            batches,
            loss,
            lambda: float("nan"),
            TrainSettings(lr=0.1, epochs=1, show_progress=False, precision="fp32"),
            desc="toy",
        )
