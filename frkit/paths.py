"""Where relative paths in parameters point: the project root, the same from the CLI, papermill and JupyterLab.

A JupyterLab kernel runs in the notebook's folder (``notebooks/``), the CLI and papermill wherever they were
started; so a relative ``data_path: ../shared/data/...`` or ``output_dir: outputs`` would mean something
else in each. The rule: **a relative path in the parameters is taken from the project root**, which is

1. ``$FRKIT_ROOT`` when set, else
2. the nearest folder, from the working folder upwards, that holds a ``pyproject.toml``, else
3. the working folder.

In this repository that is the folder holding ``pyproject.toml``, ``params/`` and ``notebooks/``, wherever
below it a command or kernel runs. Absolute paths are used as they are. (File arguments typed on the
command line, such as ``frkit run params/x.yaml``, are ordinary shell paths from the working folder.)
"""

from __future__ import annotations

import os
from pathlib import Path

ROOT_MARKER = "pyproject.toml"


def project_root() -> Path:
    env = os.environ.get("FRKIT_ROOT")
    if env:
        return Path(env).expanduser().resolve()
    cwd = Path.cwd().resolve()
    for folder in (cwd, *cwd.parents):
        if (folder / ROOT_MARKER).is_file():
            return folder
    return cwd


def resolve(path: str | Path | None) -> Path | None:
    """``path`` from the project root (absolute paths unchanged; ``None`` stays ``None``)."""
    if path is None:
        return None
    path = Path(path).expanduser()
    return path if path.is_absolute() else project_root() / path


def shown(path: str | Path) -> str:
    """``path`` as a report or the README prints it: from the project root when it lies below it (a rendered report
    shared from one machine should not name that machine's folders), else as it is."""
    try:
        return Path(path).resolve().relative_to(project_root()).as_posix()
    except ValueError:
        return Path(path).as_posix()


def cache_root() -> Path:
    """Where frkit caches built models (the offline e5, trimmed vocabularies): ``$FRKIT_CACHE`` or
    ``~/.cache/frkit``."""
    return Path(os.environ.get("FRKIT_CACHE") or Path.home() / ".cache" / "frkit")
