"""The README's results blocks are what the committed results give: rebuilt here from results/ and compared."""

import re
from pathlib import Path

import pytest

from frkit.reports.collect import collect
from frkit.reports.readme_block import readme_section
from frkit.sweep import load_sweep

ROOT = Path(__file__).resolve().parents[1]
BLOCK = re.compile(
    r"<!-- frkit:results (\S+) begin: written by `frkit sweep (\S+) --summary-only --readme README.md` -->\n"
    r"(.*?)\n?<!-- frkit:results \1 end -->",
    re.S,
)


def blocks():
    return BLOCK.findall((ROOT / "README.md").read_text())


def test_readme_has_results_blocks():
    assert {name for name, _, _ in blocks()} >= {"cpu_stsb", "cpu_stsb_ewc"}


@pytest.mark.parametrize("name, sweep_file, text", blocks())
def test_readme_results_block_matches_the_committed_results(name, sweep_file, text, monkeypatch):
    monkeypatch.chdir(ROOT)
    sweep = load_sweep(ROOT / sweep_file)
    assert sweep.name == name
    expected = readme_section(sweep, collect(sweep))
    assert text.strip() == expected.strip(), (
        f"README block {name} differs from results/: run `frkit sweep {sweep_file} --summary-only --readme README.md`"
    )
