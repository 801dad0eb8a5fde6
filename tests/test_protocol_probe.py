"""Issue 30's probe report: per candidate sweep, the rows' spread, just-learned AUC and cost, sequential's forgetting
test and the pairwise MDE, each checked against a hand computation on results written by the test."""

import numpy as np
import pytest
import yaml
from conftest import write_result
from scipy import stats

from frkit.cli import main
from frkit.errors import FrkitInputError
from frkit.reports.collect import collect
from frkit.reports.protocol_probe import (
    Candidate,
    load_candidate,
    pairwise_mde,
    probe_markdown,
    row_table,
    sequential_forgetting,
)
from frkit.reports.statistics import mde
from frkit.sweep import load_sweep

FORGETTING = {"sequential": [-0.10, -0.14, -0.08], "lora": [0.0, 0.0, 0.0]}
AVERAGE = {"sequential": [0.70, 0.74, 0.69], "lora": [0.80, 0.81, 0.83]}


@pytest.fixture
def probe(tmp_path, tiny_params):
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(tiny_params()))
    sweep = {
        "base": "base.yaml",
        "name": "probe_x",
        "description": "stands in for shops that judge relevance differently",
        "results": str(tmp_path / "results"),
        "seeds": [0, 1, 2],
        "runs": {"sequential": {"method": "sequential"}, "lora": {"method": "lora"}},
    }
    (tmp_path / "sweep.yaml").write_text(yaml.safe_dump(sweep))
    for label in FORGETTING:
        for seed in range(3):
            diagonal = [0.9, 0.65 if label == "lora" else 0.8, 0.85]
            matrix = [[diagonal[i] if j == i else 0.5 for j in range(3)] for i in range(3)]
            average = AVERAGE[label][seed]
            write_result(
                tmp_path / "results",
                label,
                seed,
                {"en": average, "es": average, "ja": average},
                forgetting=FORGETTING[label][seed],
                seconds=60.0 * (seed + 1),
                auc_matrix=matrix,
            )
    return tmp_path / "sweep.yaml"


def test_rows_sequential_forgetting_and_mde_match_a_hand_computation(probe):
    sweep = load_sweep(probe)
    results = collect(sweep)
    table = row_table(results).set_index("row")
    assert table.loc["sequential", "std forgetting"] == pytest.approx(np.std(FORGETTING["sequential"], ddof=1))
    assert table.loc["lora", "average AUC"] == pytest.approx(np.mean(AVERAGE["lora"]))
    assert table.loc["lora", "just learned"] == pytest.approx((0.9 + 0.65 + 0.85) / 3)
    assert table.loc["lora", "least just learned"] == pytest.approx(0.65)
    # cpu_seconds of write_result: 2 x seconds per step, 3 steps; seeds ran 60, 120, 180 s a step
    assert table.loc["lora", "CPU min/run"] == pytest.approx(np.mean([6 * 60, 6 * 120, 6 * 180]) / 60)
    seq = sequential_forgetting(results)
    want = stats.ttest_1samp(FORGETTING["sequential"], 0.0, alternative="less").pvalue
    assert seq["p"] == pytest.approx(want) and seq["verdict"] == "reproduced" and seq["n"] == 3
    diffs = np.subtract(AVERAGE["lora"], AVERAGE["sequential"])
    assert pairwise_mde(results)["lora vs sequential"] == pytest.approx(mde(np.std(diffs, ddof=1), 3))
    text = probe_markdown([Candidate(sweep, results)])
    assert "stands in for shops that judge relevance differently" in text
    assert "below 0.7: lora" in text and "**reproduced**" in text


def test_no_forgetting_is_not_reproduced_and_the_cli_writes_the_report(probe, tmp_path, capsys):
    results = collect(load_sweep(probe))
    assert sequential_forgetting(results, "lora")["verdict"] == "within noise"
    out = tmp_path / "probe.md"
    assert main(["probe-report", str(probe), "-o", str(out)]) == 0
    written = out.read_text()
    assert written.startswith("# Protocol probe") and "## probe_x (`" in written
    assert written in capsys.readouterr().out


def test_the_sweep_summary_marks_a_row_that_does_not_learn(probe):
    from frkit.reports.summary import summary_markdown

    text = summary_markdown(collect(load_sweep(probe)))
    lora = next(line for line in text.splitlines() if line.startswith("| lora "))
    sequential = next(line for line in text.splitlines() if line.startswith("| sequential "))
    assert f"{(0.9 + 0.65 + 0.85) / 3:.4f} **not learning**" in lora  # its es learned only to 0.65
    assert "not learning" not in sequential and f"{(0.9 + 0.8 + 0.85) / 3:.4f}" in sequential


def test_one_order_of_a_sweep_is_a_candidate_of_its_own(probe, tmp_path):
    """FILE@ORDER: the comparison's first order is the probe of its protocol; the spread is read within it."""
    spec = yaml.safe_load(probe.read_text())
    spec["orders"] = [["en", "es", "ja"], ["ja", "es", "en"]]
    probe.write_text(yaml.safe_dump(spec))
    for seed, forgetting in enumerate([0.05, 0.04, 0.06]):  # the other order: no forgetting at all
        write_result(
            tmp_path / "results",
            "sequential",
            seed,
            {"en": 0.8, "es": 0.8, "ja": 0.8},
            forgetting=forgetting,
            order=("ja", "es", "en"),
        )
    whole = load_candidate(str(probe))
    first = load_candidate(f"{probe}@en-es-ja")
    assert (len(whole.results.runs), whole.expected) == (9, 12)
    assert (len(first.results.runs), first.expected) == (6, 6)
    seq = sequential_forgetting(first.results)
    assert seq["n"] == 3 and seq["mean"] == pytest.approx(np.mean(FORGETTING["sequential"]))  # seeds, one order
    assert seq["verdict"] == "reproduced"
    text = probe_markdown([first])
    assert "## probe_x, order en-es-ja (`" in text and "6 of 6 runs have results" in text
    assert "@en-es-ja" in text.splitlines()[2]  # the rebuild command names the order
    with pytest.raises(FrkitInputError, match=r"order 'es-en-ja' is not one of .*\['en-es-ja', 'ja-es-en'\]"):
        load_candidate(f"{probe}@es-en-ja")
