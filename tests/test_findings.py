"""The README's comparison sentences (issue 29, item 6) are computed from the runs: checked on a hand-made frame."""

import numpy as np
import pandas as pd

from frkit.reports.findings import comparison_sentence, findings_markdown, spread_sentence


def frame():
    rows = []
    for seed, (a, b) in enumerate([(0.80, 0.74), (0.82, 0.78), (0.79, 0.80)]):
        rows += [("fr_lora", "x", seed, a, 0.8), ("independent", "x", seed, b, 0.6)]
    rows += [("fr_lora", "y", 0, 0.9, 0.8)]  # no partner: left out of the pairs
    return pd.DataFrame(rows, columns=["label", "order", "seed", "average_auc", "least_just_learned"])


def test_a_sentence_is_the_paired_difference_of_the_runs():
    diffs = np.array([0.06, 0.04, -0.01])
    text = comparison_sentence(frame(), "fr_lora", "independent")
    assert text.startswith(f"**fr_lora − independent**: {diffs.mean():+.3f} ± {np.std(diffs, ddof=1):.3f} average AUC")
    assert "over 3 paired runs, fr_lora higher on 2 of 3" in text
    assert "independent does not learn here: least just-learned AUC 0.600 < 0.70" in text
    assert comparison_sentence(frame(), "fr_lora", "replay") is None  # a row the sweep lacks: no sentence


def test_the_block_has_the_spread_and_only_the_comparisons_it_can_make():
    text = findings_markdown(frame())
    assert text.splitlines()[0] == "- " + spread_sentence(frame())
    assert len(text.splitlines()) == 2  # the spread and fr_lora − independent
