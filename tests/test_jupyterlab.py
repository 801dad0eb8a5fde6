"""JupyterLab as users open it, in a real browser: every notebook run with "Run All" as committed, drawn by the
system Chromium (selenium). Skipped, with the reason, where no browser exists (the static reports: test_notebooks).

The project is a copy of the repository's notebooks in a folder with its own ``pyproject.toml`` and
``params/demo.yaml`` on the tiny model and data (conftest.build_notebook_project): the kernels run in
``notebooks/`` and must find the project root exactly as a user's do.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from browser import ERRORS, FIGURES, browser_or_skip, chromium, jupyterlab, run_all, wait_for

pytestmark = pytest.mark.skipif(browser_or_skip() is not None, reason=str(browser_or_skip()))

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = [
    "01_data_prep.ipynb",
    "02_train.ipynb",
    "03_fisher_inspection.ipynb",
    "04_attention_scores.ipynb",
    "05_projection_analysis.ipynb",
    "06_compare.ipynb",
]
EXPLORERS = {"03_fisher_inspection.ipynb": "marketplace", "04_attention_scores.ipynb": "marketplace"}
MIN_HEIGHT = 200  # px: JupyterLab once drew these figures 0-7 px high


def _screenshot_dir(tmp_path: Path) -> Path:
    """docs/screenshots with FRKIT_UPDATE_SCREENSHOTS=1 (to commit them), else a temporary folder."""
    return ROOT / "docs" / "screenshots" if os.environ.get("FRKIT_UPDATE_SCREENSHOTS") == "1" else tmp_path


@pytest.fixture
def lab_project(notebook_project) -> Path:
    """The fixture project; FRKIT_BROWSER_PROJECT=<folder> runs the same test on a real project instead (e.g. the
    repository itself, for the screenshots in docs/: real demo runs and committed results, minutes on a CPU)."""
    real = os.environ.get("FRKIT_BROWSER_PROJECT")
    return Path(real).resolve() if real else notebook_project


def _explorer_figure(driver) -> str:
    return driver.execute_script(
        "const outs = window.jupyterapp.shell.currentWidget.node.querySelectorAll('.widget-output .js-plotly-plot');"
        "if (!outs.length) return null; const p = outs[outs.length - 1];"
        "return (p.querySelector('.gtitle') || {textContent: ''}).textContent + '|' + "
        "p.querySelector('svg.main-svg').innerHTML.length;"
    )


def _change_dropdown(driver, description: str) -> str:
    """Pick the next option of the explorer's dropdown labelled ``description``; returns the option picked."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    for box in driver.find_elements(By.CSS_SELECTOR, ".widget-dropdown"):
        if box.find_element(By.CSS_SELECTOR, "label").text.strip() == description:
            select = Select(box.find_element(By.TAG_NAME, "select"))
            current = select.first_selected_option.text
            other = next(o.text for o in select.options if o.text != current)
            select.select_by_visible_text(other)
            return other
    raise AssertionError(f"no dropdown labelled {description!r} in the explorer")


@pytest.mark.timeout(int(os.environ.get("FRKIT_LAB_TEST_TIMEOUT", 1200)))  # six notebooks, each bounded by run_all
def test_every_notebook_runs_in_jupyterlab_and_draws_its_figures(lab_project, tmp_path):
    shots = _screenshot_dir(tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    seen = {}
    with jupyterlab(lab_project, tmp_path / "lab-settings", tmp_path / "lab.log") as (url, token), chromium() as driver:
        for name in NOTEBOOKS:
            state = run_all(
                driver, url, token, f"notebooks/{name}", timeout=float(os.environ.get("FRKIT_RUN_ALL_TIMEOUT", 300))
            )
            errors = driver.execute_script(ERRORS)
            assert not errors, f"{name}: error outputs after Run All: {errors}"
            figures = driver.execute_script(FIGURES)
            assert figures, f"{name}: no plotly figure drawn"
            flat = [f for f in figures if f["svg"] == 0 or f["height"] <= MIN_HEIGHT]
            assert not flat, f"{name}: figures without a drawn SVG or {MIN_HEIGHT} px: {flat}"
            seen[name] = {
                "cells": state["cells"],
                "figures": len(figures),
                "heights": sorted({round(f["height"]) for f in figures}),
            }
            if name in EXPLORERS:
                before = wait_for(driver, f"return ({_explorer_js()})", 60, f"{name}: the explorer's figure")
                _change_dropdown(driver, EXPLORERS[name])
                after = wait_for(
                    driver,
                    f"const v = ({_explorer_js()}); return v && v !== {before!r} ? v : null",
                    60,
                    f"{name}: the explorer's figure to change with its dropdown",
                )
                assert after != before
                seen[name]["explorer"] = "changed with its dropdown"
            main = driver.find_elements("css selector", ".js-plotly-plot")[0]
            driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", main)
            time.sleep(0.5)
            main.screenshot(str(shots / f"{Path(name).stem}.png"))
    print("\nJupyterLab, Run All:", seen)  # the closing note's table (pytest -s)


def _explorer_js() -> str:
    return (
        "(function() { const outs = window.jupyterapp.shell.currentWidget.node.querySelectorAll("
        "'.widget-output .js-plotly-plot'); if (!outs.length) return null; const p = outs[outs.length - 1];"
        "const svg = p.querySelector('svg.main-svg'); if (!svg) return null;"
        "return (p.querySelector('.gtitle') || {textContent: ''}).textContent + '|' + svg.innerHTML.length; })()"
    )
