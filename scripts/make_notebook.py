"""Create a notebook from a list of (kind, source) cells; used once per notebook, then edit in JupyterLab."""

from __future__ import annotations

import nbformat


def make(path, cells):
    nb = nbformat.v4.new_notebook()
    for kind, src in cells:
        if kind == "md":
            nb.cells.append(nbformat.v4.new_markdown_cell(src))
        elif kind == "params":
            nb.cells.append(nbformat.v4.new_code_cell(src, metadata={"tags": ["parameters"]}))
        else:
            nb.cells.append(nbformat.v4.new_code_cell(src))
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)
