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


def _epochs_run_by_rule(aucs, patience, min_delta):
    """Brute force: stop after ``patience`` epochs in a row whose AUC is not more than ``min_delta`` above the AUC
    of the last epoch that was (Lightning's EarlyStopping with min_delta)."""
    reference, bad = -math.inf, 0
    for epoch, auc in enumerate(aucs, start=1):
        reference, bad = (auc, 0) if auc > reference + min_delta else (reference, bad + 1)
        if patience and bad >= patience:
            return epoch
    return len(aucs)


@pytest.mark.parametrize(
    "aucs, patience, min_delta, stops_after",
    [
        ([0.80, 0.9338, 0.9218, 0.9469, 0.9470, 0.9471, 0.9472], 2, 0.005, 6),  # STS-B en, seed 0: creeps up, stops
        ([0.80, 0.9338, 0.9218, 0.9469, 0.9470, 0.9471, 0.9472], 2, 0.0, 7),  # any gain counts: trains all 7
        ([0.52, 0.51, 0.53, 0.60, 0.78, 0.80], 2, 0.005, 6),  # a plateau, then learning (PAWS-X)
        ([0.52, 0.51, 0.515, 0.60, 0.78, 0.80], 2, 0.005, 3),  # the plateau's noise is no gain: stops at 3
    ],
)
def test_min_delta_stops_a_marketplace_that_only_creeps_up(aucs, patience, min_delta, stops_after):
    model, batches, loss = _toy()
    scripted = iter(aucs)
    result = fit(
        model,
        list(model.parameters()),
        batches,
        loss,
        lambda: next(scripted),
        TrainSettings(lr=0.1, epochs=len(aucs), patience=patience, min_delta=min_delta, show_progress=False),
    )
    expected = _epochs_run_by_rule(aucs, patience, min_delta)
    assert result.epochs_run == expected == stops_after
    assert result.best_val_auc == max(aucs[:expected])  # the best epoch is kept whatever its gain
    assert result.best_epoch == aucs.index(max(aucs[:expected])) + 1
