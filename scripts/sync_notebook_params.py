"""Rewrite the ``parameters`` cell of every notebook from the run configuration's keys and defaults.

Run after adding a key or a method option: ``python scripts/sync_notebook_params.py``.
A test fails while a notebook's parameters cell and the configuration disagree.
"""
from __future__ import annotations

import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from frkit.config import default_params  # noqa: E402

# notebooks that read a finished run rather than train take only these keys plus their own
EXTRA = {}


def parameters_source() -> str:
    lines = ["# Parameters: every key of the run configuration (frkit/config.py + method options)."]
    lines += ["# papermill -f params/x.yaml / -p key value override them; the values below are the defaults."]
    lines += [f"{k} = {v!r}" for k, v in default_params().items()]
    return "\n".join(lines)


def sync(path: Path) -> bool:
    nb = nbformat.read(path, as_version=4)
    cells = [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    if not cells:
        raise SystemExit(f"{path}: no cell tagged 'parameters'")
    new = parameters_source() + EXTRA.get(path.name, "")
    changed = cells[0].source != new
    cells[0].source = new
    if changed:
        nbformat.write(nb, path)
    return changed


if __name__ == "__main__":
    for p in sorted((ROOT / "notebooks").glob("*.ipynb")):
        print(p.name, "updated" if sync(p) else "in sync")
