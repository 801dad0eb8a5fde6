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


PROBE = re.compile(
    r"<!-- frkit:probe begin: written by `frkit probe-report (.+?) --readme README.md` -->\n"
    r"(.*?)\n<!-- frkit:probe end -->",
    re.S,
)


def test_readme_protocol_probe_block_matches_the_committed_results(monkeypatch):
    """Issue 30's probe figures in the README are the report rebuilt from the committed probe sweeps."""
    from frkit.reports.protocol_probe import load_candidate, probe_markdown

    monkeypatch.chdir(ROOT)
    found = PROBE.findall((ROOT / "README.md").read_text())
    assert len(found) == 1, "the README has no protocol-probe block (frkit probe-report ... --readme README.md)"
    files, text = found[0]
    expected = probe_markdown([load_candidate(arg) for arg in files.split()]).split("\n", 1)[1].strip()
    assert text.strip() == expected, f"README probe block differs from results/: run `frkit probe-report {files} ...`"
