"""Report functions (frkit.reports) against hand-computed cases (the notebooks themselves: test_notebooks)."""

from pathlib import Path

import numpy as np
import pytest
import torch

from frkit.config import make_config
from frkit.reload import load_method
from frkit.reports.fisher import downsample, split_key, topk_overlap
from frkit.reports.projection import auc_with_and_without_projection, projection_table
from frkit.runner import run

ROOT = Path(__file__).resolve().parents[1]


def test_topk_overlap_by_hand():
    a = {"w": torch.tensor([[9.0, 8.0], [1.0, 0.0]])}
    b = {"w": torch.tensor([[9.0, 0.0], [8.0, 1.0]])}
    # top 50% of 4 = 2 entries: a -> {0, 1}, b -> {0, 2}: Jaccard 1/3
    assert topk_overlap(a, b, 50) == pytest.approx(1 / 3)
    assert topk_overlap(a, a, 50) == 1.0


def test_split_key_and_downsample():
    assert split_key("encoder.layer.11.attention.self.value.weight") == (11, "value")
    m = torch.arange(16.0).reshape(4, 4)
    np.testing.assert_allclose(downsample(m, 2), [[2.5, 4.5], [10.5, 12.5]])


@pytest.fixture
def fr_run(tiny_params):
    params = tiny_params(method="fr_lora", run_name="fr_analysis", epochs=1)
    return params, run(make_config(params), show_progress=False)


def test_reloaded_method_reproduces_the_final_row_and_projection_arms(fr_run):
    params, result = fr_run
    cfg, method, marketplaces = load_method(result.run_dir)
    aucs = auc_with_and_without_projection(result.run_dir)
    np.testing.assert_allclose(aucs["without projection"].values, result.auc_matrix[-1], atol=1e-6)
    table = projection_table(method)
    assert set(table["marketplace"]) == {"en", "es"} and (table["residual_B"] >= 0).all()
    # projecting the older adapters leaves them in the last adapter's subspaces
    method.project_older_adapters()
    assert projection_table(method)[["residual_A", "residual_B"]].to_numpy().max() < 1e-4
