"""The README's results block of a sweep: the claims as checked and the summary table, between two markers.

``frkit sweep FILE --summary-only --readme README.md`` rewrites the block; ``tests/test_readme.py`` rebuilds it from
``results/`` and fails where the README says something the committed results do not.
"""

from __future__ import annotations

from pathlib import Path

from frkit import atomic
from frkit.paths import shown
from frkit.reports.claims import VERDICT_RULE, claims_markdown, claims_table
from frkit.reports.collect import SweepResults
from frkit.reports.findings import findings_markdown
from frkit.reports.summary import summary_markdown

README_BEGIN = "<!-- frkit:results {name} begin: written by `frkit sweep {file} --summary-only --readme README.md` -->"
README_END = "<!-- frkit:results {name} end -->"


def readme_section(sweep, results: SweepResults) -> str:
    """What the README shows of a sweep: the claims as checked and the summary table, from the results folder."""
    summary = summary_markdown(results)
    table = (
        summary.split("## Summary", 1)[1].split("## Relative")[0].split("## Missing")[0].strip()
        if "## Summary" in summary
        else "No finished runs yet."
    )
    claims = claims_table(results.frame(), sorted(sweep.orders[0]), blocked=sweep.unit == "seed")
    head = (
        f"{len(results.runs)} of {len(sweep.configs)} runs of `{shown(sweep.path)}` have results in "
        f"`{shown(sweep.results_dir)}/`."
    )
    rows = ["Every row (mean ± sample std over seeds x orders; `runs` found of expected):", "", table]
    findings = findings_markdown(results.frame())
    if findings:  # the comparison sentences, computed as the tables are (frkit/reports/findings.py)
        rows = [
            "What the runs say, paired by order and seed (difference ± sample std of the pairs):",
            "",
            findings,
            "",
            *rows,
        ]
    if (claims["verdict"] == "missing").all():  # a sweep without the papers' rows (e.g. a strength sweep)
        return "\n".join([head, "", *rows])
    counts = ", ".join(f"{v} {k}" for k, v in claims["verdict"].value_counts().items())
    checked = claims[claims["verdict"] != "missing"]  # claims.md lists every claim; the README those with rows here
    left_out = len(claims) - len(checked)
    where = f"`{shown(sweep.results_dir)}/claims.md`"
    shown_line = (
        f"The {len(checked)} claims this sweep has rows for ({left_out} more are in {where}):" if left_out else ""
    )
    table = claims_markdown(checked)
    return "\n".join(
        [f"{head} Claims: {counts}.", "", VERDICT_RULE, "", *([shown_line, ""] if shown_line else []), table, "", *rows]
    )


def update_readme(readme: Path, sweep, results: SweepResults, sweep_file: str) -> None:
    """Replace the README's block between the sweep's markers (added at the end when absent)."""
    begin, end = README_BEGIN.format(name=sweep.name, file=sweep_file), README_END.format(name=sweep.name)
    text = readme.read_text()
    block = f"{begin}\n{readme_section(sweep, results)}\n{end}"
    start = text.find(f"<!-- frkit:results {sweep.name} begin")
    if start >= 0:
        stop = text.index(end, start) + len(end)
        text = text[:start] + block + text[stop:]
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    atomic.write_text(readme, text)


PROBE_BEGIN = "<!-- frkit:probe begin: written by `frkit probe-report {files} --readme README.md` -->"
PROBE_END = "<!-- frkit:probe end -->"


def update_probe_block(readme: Path, sweep_files: list[str], text: str) -> None:
    """Replace the README's protocol-probe block (issue 30) with ``text`` (the report less its title), keeping the
    command that rebuilds it in the opening marker; added at the end when absent."""
    begin = PROBE_BEGIN.format(files=" ".join(sweep_files))
    body = text.split("\n", 1)[1].strip() if text.startswith("# ") else text.strip()
    block = f"{begin}\n{body}\n{PROBE_END}"
    old = readme.read_text()
    start = old.find("<!-- frkit:probe begin")
    if start >= 0:
        new = old[:start] + block + old[old.index(PROBE_END, start) + len(PROBE_END) :]
    else:
        new = old.rstrip() + "\n\n" + block + "\n"
    atomic.write_text(readme, new)
