"""Metrics against matrices computed by hand."""

import math

import numpy as np
import pytest

from frkit.metrics import average_auc, backward_transfer, forgetting, forward_transfer, relative_table, summarize

# rows: after step k; columns: marketplace t
R = np.array(
    [
        [0.80, 0.60, 0.55],
        [0.70, 0.85, 0.65],
        [0.75, 0.80, 0.90],
    ]
)


def test_average_is_mean_of_last_row():
    assert average_auc(R) == pytest.approx((0.75 + 0.80 + 0.90) / 3)


def test_forgetting_matches_hand_computation():
    # t=0: 0.75 - max(0.80, 0.70, 0.75) = -0.05 ; t=1: 0.80 - max(0.85, 0.80) = -0.05 ; t=2: 0.90 - 0.90 = 0
    assert forgetting(R) == pytest.approx((-0.05 - 0.05 + 0.0) / 3)


def test_forgetting_ignores_scores_before_a_marketplace_was_learned():
    R2 = R.copy()
    R2[0, 1] = 0.99  # forward-transfer entry higher than anything later: not "forgotten"
    assert forgetting(R2) == pytest.approx(forgetting(R))


def test_no_forgetting_is_zero():
    assert forgetting(np.array([[0.7, 0.5], [0.8, 0.9]])) == pytest.approx(0.0)


def test_backward_and_forward_transfer():
    # BWT = mean(R[2,0]-R[0,0], R[2,1]-R[1,1]) = mean(-0.05, -0.05)
    assert backward_transfer(R) == pytest.approx(-0.05)
    b = [0.5, 0.52, 0.49]
    # FWT = mean(R[0,1]-b1, R[1,2]-b2) = mean(0.08, 0.16)
    assert forward_transfer(R, b) == pytest.approx(0.12)
    assert math.isnan(forward_transfer(R, None))


def test_summary_and_relative_table():
    s = summarize(R, ["a", "b", "c"], [0.5, 0.5, 0.5])
    assert s["final_auc"] == {"a": 0.75, "b": 0.80, "c": 0.90}
    table = relative_table({"independent": {"a": 0.7, "b": 0.8}, "lora": {"a": 0.75, "b": 0.78}})
    assert list(table.loc["independent"]) == ["1x", "1x", "1x"]
    assert list(table.loc["lora"]) == ["+0.0500", "-0.0200", "+0.0150"]
    with pytest.raises(KeyError, match="baseline"):
        relative_table({"lora": {"a": 0.7}})


def test_non_square_matrix_is_refused():
    with pytest.raises(ValueError, match="square"):
        average_auc(np.zeros((2, 3)))
