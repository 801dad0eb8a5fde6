"""Notebooks: their parameters, headless execution (papermill) and self-contained HTML reports (nbconvert).

A notebook's ``parameters`` cell names a params file and declares the keys a reader varies there, ``None`` meaning
"the params file's value", each with its meaning as a comment (``papermill --help-notebook NB`` lists them)::

    params_file: str = "params/demo.yaml"  # relative paths: from the project root (frkit/paths.py)
    beta: float = None  # FR-LoRA Eq. 4: strength of the Fisher-weighted LoRA penalty

The run configuration is that file's keys, then every configuration key set in the notebook to something other
than None (its parameters cell and papermill's injected cell), validated together. So ``papermill nb.ipynb
out.ipynb -p beta 1e-4`` changes one key of the demo without papermill's "unknown parameter" warning, a key the
cell does not declare still counts (with the warning), and ``-p params_file params/stsb.yaml`` picks another file;
a key is set to null in the params file, not here. The report's injected cell then
shows just what this run was given. (papermill's ``-f FILE`` injects FILE's keys one by one, on top of the
notebook's ``params_file``; ``frkit notebook NB -f FILE`` injects ``params_file = FILE`` instead.)
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from frkit import atomic
from frkit.config import BaseRunConfig, config_class, make_config, read_params
from frkit.errors import FrkitInputError
from frkit.paths import project_root, resolve

PARAMS_FILE = "params_file"


class NotebookCellTimeout(RuntimeError):
    """A cell ran past ``execution_timeout``: names the notebook and the cell."""


def notebook_values(namespace: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """(values, source): the params file's keys, then the configuration keys set in the notebook (None: the file's)."""
    keys = config_class().model_fields
    values, source = {}, "notebook parameters"
    params_file = namespace.get(PARAMS_FILE)
    if params_file:
        path = resolve(params_file)
        values = read_params(path)
        source = f"{path} + notebook parameters"
    values.update({k: namespace[k] for k in keys if namespace.get(k) is not None})
    return values, source


def config_from_namespace(namespace: dict[str, Any]) -> BaseRunConfig:
    """The run configuration of a notebook's globals (``params_file`` + its parameters cell + papermill's cell)."""
    values, source = notebook_values(namespace)
    return make_config(values, source=source)


TEMPLATES = Path(__file__).resolve().parent / "reports" / "templates"


def render_html(notebook: Path, html: Path, plotly_js: Path | None = None, no_input: bool = False) -> Path:
    """An HTML report that opens offline (``reports/templates/frkit_offline``: no CDN scripts); ``no_input``: the
    outputs only, without the code cells and their prompts (nbconvert's ``--no-input``), as a shared report is read.

    Self-contained by default: plotly.js (~4.8 MB) is embedded once. With ``plotly_js`` (a file path), plotly.js is
    written there instead and the report loads it by a relative path, so that reports committed side by side
    (``results/*/``) share one copy and each stays small.
    """
    from nbconvert import HTMLExporter

    exporter = HTMLExporter(
        extra_template_basedirs=[str(TEMPLATES)],
        template_name="frkit_offline",
        exclude_input=no_input,
        exclude_input_prompt=no_input,
        exclude_output_prompt=no_input,
    )
    body, _ = exporter.from_filename(str(notebook))
    if plotly_js is not None:
        body = share_plotly_js(body, Path(html), Path(plotly_js))
    Path(html).parent.mkdir(parents=True, exist_ok=True)
    atomic.write_text(html, body)
    return html


def share_plotly_js(body: str, html: Path, plotly_js: Path) -> str:
    """``body`` with its embedded plotly.js replaced by ``<script src=...>`` of ``plotly_js`` (written if it
    differs)."""
    from plotly.offline import get_plotlyjs

    js = get_plotlyjs()
    inline = f"<script>{js}</script>"
    if inline not in body:  # a report without figures: nothing to share
        return body
    if not plotly_js.is_file() or plotly_js.read_text(encoding="utf-8") != js:
        plotly_js.parent.mkdir(parents=True, exist_ok=True)
        atomic.write_text(plotly_js, js)
    src = os.path.relpath(plotly_js.resolve(), html.resolve().parent).replace(os.sep, "/")
    return body.replace(inline, f'<script src="{src}"></script>')


def _portable(path: str | Path) -> str:
    """A params file as the notebook should see it: relative to the project root when inside it."""
    path = Path(path).resolve()
    try:
        return str(path.relative_to(project_root()))
    except ValueError:
        return str(path)


def run_notebook(
    notebook: str | Path,
    params_file: str | Path | None = None,
    out_dir: str | Path | None = None,
    kernel: str = "python3",
    execution_timeout: float | None = None,
    plotly_js: str | Path | None = None,
    no_input: bool = False,
    **parameters: Any,
) -> tuple[Path, Path]:
    """Execute ``notebook`` with papermill and write ``.ipynb`` and ``.html``; returns both paths.

    The kernel runs in the notebook's own folder, as in JupyterLab. ``params_file`` (a path from the working
    folder, as typed on a command line) and ``parameters`` are injected over the notebook's parameters cell;
    without ``params_file`` the notebook keeps its own (the demo's). The parameters are validated before the
    kernel starts. Output goes to ``out_dir`` (default ``<output_dir>/<run_name>/reports/``).
    ``execution_timeout``: seconds a cell may run (None: no limit); a cell past it raises
    :class:`NotebookCellTimeout` naming the cell. ``plotly_js``: share plotly.js through this file (see
    :func:`render_html`) instead of embedding it in the report. ``no_input``: the report without code cells.
    """
    import papermill as pm
    from nbclient.exceptions import CellTimeoutError

    notebook = Path(notebook).resolve()
    if not notebook.is_file():
        raise FrkitInputError(f"notebook {notebook} does not exist")
    injected = {**({PARAMS_FILE: _portable(params_file)} if params_file else {}), **parameters}
    keys = set(config_class().model_fields)
    values = {
        **(read_params(Path(params_file)) if params_file else {}),
        **{k: v for k, v in parameters.items() if k in keys and v is not None},
    }  # None: the file's value
    cfg = make_config(values, source=str(params_file or "parameters"))
    out_dir = Path(out_dir) if out_dir else cfg.run_dir / "reports"
    out_dir.mkdir(parents=True, exist_ok=True)
    out_nb = out_dir / notebook.name
    try:
        # generous kernel start-up: papermill's default start_timeout can run out on a loaded machine
        pm.execute_notebook(
            str(notebook),
            str(out_nb),
            parameters=injected,
            kernel_name=kernel,
            cwd=str(notebook.parent),
            start_timeout=300,
            execution_timeout=execution_timeout,
            progress_bar=False,
        )
    except CellTimeoutError as err:
        raise NotebookCellTimeout(
            f"{notebook.name}: a cell ran past {execution_timeout} s; partial notebook in {out_nb}\n{err}"
        ) from None
    html = out_nb.with_suffix(".html")
    return out_nb, render_html(out_nb, html, Path(plotly_js) if plotly_js else None, no_input=no_input)


def parameters_source(params_file: str, **keys: Any) -> str:
    """The committed ``parameters`` cell: a params file and the notebook's own keys."""
    lines = [
        "# Parameters: a params file (relative paths: from the project root) and this notebook's own keys.",
        "# papermill -p key value / -p params_file params/x.yaml override them.",
        f"{PARAMS_FILE} = {params_file!r}",
    ]
    lines += [f"{k} = {v!r}" for k, v in keys.items()]
    return "\n".join(lines)


def dump_params(values: dict) -> str:
    return yaml.safe_dump(values, sort_keys=False)
