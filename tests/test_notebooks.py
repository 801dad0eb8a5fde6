"""Both notebooks executed headless by papermill with tiny parameters, and rendered to HTML."""
from pathlib import Path

import nbformat
import pytest

from conftest import run_notebook_bounded

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", ["01_data_prep.ipynb", "02_train.ipynb"])
def test_notebook_runs_headless_and_renders(name, tiny_params, tmp_path):
    params = tiny_params(method="lora", run_name="nb", epochs=1)
    out_nb, html = run_notebook_bounded(ROOT / "notebooks" / name, None, tmp_path / "reports", **params)
    nb = nbformat.read(out_nb, as_version=4)
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors
    text = html.read_text()
    assert "plotly" in text.lower() and len(text) > 1_000_000  # plotly.js embedded: figures show offline
    if name == "02_train.ipynb":
        assert (Path(params["output_dir"]) / "nb" / "metrics.json").exists()
