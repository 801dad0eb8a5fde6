"""Run notebooks headless (papermill) and render them as self-contained HTML reports (nbconvert)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from frkit.config import BaseRunConfig, config_class, make_config


def config_from_namespace(namespace: dict[str, Any], source: str = "notebook parameters") -> BaseRunConfig:
    """Build the run config from a notebook's globals (its ``parameters`` cell plus papermill's injected cell)."""
    keys = config_class().model_fields
    return make_config({k: namespace[k] for k in keys if k in namespace}, source=source)


def render_html(notebook: Path, html: Path) -> Path:
    from nbconvert import HTMLExporter

    body, _ = HTMLExporter().from_filename(str(notebook))
    html.write_text(body, encoding="utf-8")
    return html


def run_notebook(notebook: str | Path, params_file: str | Path | None = None, out_dir: str | Path | None = None,
                 kernel: str = "python3", **parameters: Any) -> tuple[Path, Path]:
    """Execute ``notebook`` with papermill on a params file (+ overrides) and write ``.ipynb`` and ``.html``.

    Output goes to ``out_dir`` (default: ``<output_dir>/<run_name>/reports/``). The parameters are
    validated first, so a bad key fails before the notebook starts.
    """
    import papermill as pm

    notebook = Path(notebook)
    values = yaml.safe_load(Path(params_file).read_text()) if params_file else {}
    values.update(parameters)
    cfg = make_config(values, source=str(params_file or "parameters"))
    out_dir = Path(out_dir) if out_dir else cfg.run_dir / "reports"
    out_dir.mkdir(parents=True, exist_ok=True)
    out_nb = out_dir / notebook.name
    # generous kernel start-up: on a loaded 2-core machine the default 60 s was seen to run out once
    pm.execute_notebook(str(notebook), str(out_nb), parameters=values, kernel_name=kernel, cwd=str(Path.cwd()),
                        start_timeout=300)
    return out_nb, render_html(out_nb, out_nb.with_suffix(".html"))
