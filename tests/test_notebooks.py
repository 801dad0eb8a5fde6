"""Every notebook executed headless by papermill as committed (its parameters cell names params/demo.yaml) in a
project on the tiny model and data, rendered to a self-contained HTML report; the report opened in Chromium.

Each notebook runs once per session (``rendered``); the JupyterLab test then reuses the finished run folders.
"""

import re
from pathlib import Path

import nbformat
import pytest
from browser import browser_or_skip, chromium, wait_for
from conftest import run_notebook_bounded

NOTEBOOKS = [
    "01_data_prep.ipynb",
    "02_train.ipynb",
    "03_fisher_inspection.ipynb",
    "04_attention_scores.ipynb",
    "05_projection_analysis.ipynb",
    "06_compare.ipynb",
]
MIN_HEIGHT = 200  # px
_REPORTS: dict[str, tuple[Path, Path]] = {}


@pytest.fixture
def rendered(notebook_project, tmp_path_factory):
    """(executed notebook, HTML report) of a notebook, run as committed once per session."""

    def render(name: str) -> tuple[Path, Path]:
        if name not in _REPORTS:
            out = tmp_path_factory.mktemp("reports")
            _REPORTS[name] = run_notebook_bounded(notebook_project / "notebooks" / name, None, out)
        return _REPORTS[name]

    return render


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_runs_headless_and_renders(name, rendered, notebook_project):
    out_nb, html = rendered(name)
    nb = nbformat.read(out_nb, as_version=4)
    errors = [
        o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.get("output_type") == "error"
    ]
    assert not errors, [f"{e['ename']}: {e['evalue']}" for e in errors]
    text = html.read_text()
    assert not re.search(r"<script[^>]*\ssrc=[\"']https?://", text)  # opens offline: no script from a CDN
    assert text.count("window.PlotlyConfig") == 1  # plotly.js embedded exactly once, however many figures
    if name == "02_train.ipynb":
        assert (notebook_project / "outputs" / "demo" / "metrics.json").exists()  # output_dir from the project root
    if name in ("03_fisher_inspection.ipynb", "04_attention_scores.ipynb"):
        assert "updatemenus" in text  # the static report's dropdowns


@pytest.mark.skipif(browser_or_skip() is not None, reason=str(browser_or_skip()))
@pytest.mark.parametrize("name", NOTEBOOKS)
def test_static_report_draws_every_figure_in_chromium(name, rendered):
    _, html = rendered(name)
    with chromium() as driver:
        driver.get(html.as_uri())
        figures = wait_for(
            driver,
            "const f = Array.from(document.querySelectorAll('.plotly-graph-div')).map(p => "
            "({height: p.getBoundingClientRect().height, svg: p.querySelectorAll('svg.main-svg').length}));"
            "return f.length && f.every(x => x.svg > 0) ? f : null",
            60,
            f"{name}'s report figures",
        )
    assert all(f["height"] > MIN_HEIGHT for f in figures), figures


def test_report_can_share_one_plotly_js_file_and_still_draws(rendered, tmp_path):
    """``render_html(..., plotly_js=...)`` (``frkit notebook --plotly-js``): the report loads plotly.js by a relative
    path from one shared file instead of embedding it, and is much smaller; in Chromium its figures still draw."""
    from plotly.offline import get_plotlyjs

    from frkit.notebook import render_html

    out_nb, embedded = rendered("06_compare.ipynb")
    shared_js = tmp_path / "results" / "plotly.min.js"
    html = render_html(out_nb, tmp_path / "results" / "sweep" / "06_compare.html", plotly_js=shared_js)
    text = html.read_text()
    assert '<script src="../plotly.min.js"></script>' in text and get_plotlyjs()[:2000] not in text
    assert shared_js.read_text() == get_plotlyjs()
    assert len(text) < len(embedded.read_text()) - 4_000_000
    if browser_or_skip() is not None:
        pytest.skip(str(browser_or_skip()))
    with chromium() as driver:
        driver.get(html.as_uri())
        figures = wait_for(
            driver,
            "const f = Array.from(document.querySelectorAll('.plotly-graph-div')).map(p => "
            "p.querySelectorAll('svg.main-svg').length); return f.length && f.every(x => x > 0) ? f : null",
            60,
            "the shared-plotly.js report's figures",
        )
    assert figures


KEYS_02 = {"method", "run_name", "beta", "ewc_lambda", "lr", "epochs", "marketplaces"}


def test_help_notebook_lists_the_keys_a_reader_varies_with_their_meaning():
    """`papermill --help-notebook notebooks/02_train.ipynb` (papermill.inspect_notebook): the params file and the keys
    of the card's command, each None (the params file's value) with its meaning; every notebook declares its keys."""
    import papermill as pm

    notebooks = Path(__file__).resolve().parents[1] / "notebooks"
    declared = pm.inspect_notebook(str(notebooks / "02_train.ipynb"))
    assert {"params_file"} | KEYS_02 <= set(declared)
    for name in KEYS_02:
        assert declared[name]["default"] == "None" and len(declared[name]["help"]) > 10, declared[name]
    assert "Eq. 4" in declared["beta"]["help"]
    for name in NOTEBOOKS:
        params = pm.inspect_notebook(str(notebooks / name))
        assert len(params) >= 2 and all(p["help"] for p in params.values()), (name, params)


def test_the_cards_command_sets_beta_without_unknown_parameter_warnings(notebook_project, tmp_path, caplog):
    """`papermill notebooks/02_train.ipynb out.ipynb -p beta 1e-4` on the fixture project: no "Passed unknown
    parameter" warning for a declared key, and the run's params.yaml holds beta 1e-4; a key the cell does not declare
    (lora_rank) still reaches the run, with papermill's warning, as before."""
    import logging

    import papermill as pm
    import yaml

    notebook = notebook_project / "notebooks" / "02_train.ipynb"
    with caplog.at_level(logging.WARNING, logger="papermill"):
        pm.execute_notebook(
            str(notebook),
            str(tmp_path / "out.ipynb"),
            cwd=str(notebook.parent),
            progress_bar=False,
            start_timeout=300,
            execution_timeout=240,
            parameters={"beta": 1e-4, "method": "fr_lora", "run_name": "beta_1e-4", "lora_rank": 3},
        )
    unknown = [r.getMessage() for r in caplog.records if "Passed unknown parameter" in r.getMessage()]
    assert unknown == ["Passed unknown parameter: lora_rank"], unknown
    saved = yaml.safe_load((notebook_project / "outputs" / "beta_1e-4" / "params.yaml").read_text())
    assert saved["beta"] == 1e-4 and saved["method"] == "fr_lora" and saved["lora_rank"] == 3
    assert saved["epochs"] == 1 and saved["lr"] == 1e-3  # None in the cell: the params file's values


def test_report_without_code_cells(rendered, tmp_path):
    """``frkit notebook --no-input``: the shared report keeps the outputs and the prose but no code cell, as readers
    of a report expect; the default report keeps the code."""
    from frkit.notebook import render_html

    out_nb, with_code = rendered("06_compare.ipynb")
    html = render_html(out_nb, tmp_path / "06_no_input.html", no_input=True).read_text()
    code_cell = "hl-ipython3"  # highlighted Python source: a code cell's input
    assert code_cell not in html and code_cell in with_code.read_text()
    assert html.count('class="jp-OutputArea') >= 3 and "plotly-graph-div" in html  # outputs and figures kept
