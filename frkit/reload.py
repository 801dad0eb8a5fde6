"""A run's method reloaded from its latest checkpoint (notebooks 03-05, frkit export): nothing trains here."""

from __future__ import annotations

from pathlib import Path

from frkit.config import make_config
from frkit.errors import FrkitInputError
from frkit.records import RunFolder, load_run, verify


def load_method(run_dir: str | Path):
    """(cfg, method, marketplaces) with the method restored from the run's latest checkpoint."""
    from frkit.methods import METHODS
    from frkit.methods.base import MethodContext
    from frkit.models.encoder import load_tokenizer
    from frkit.models.source import prepare_model_source
    from frkit.runner import load_configured_marketplaces

    record = load_run(run_dir)
    cfg = make_config(record.params, source=str(Path(run_dir) / "params.yaml"))
    marketplaces = load_configured_marketplaces(cfg)
    source = prepare_model_source(cfg, marketplaces, METHODS[cfg.method].looks_up_translations(cfg))
    ctx = MethodContext(cfg, source, load_tokenizer(source), show_progress=False)
    method = METHODS[cfg.method](cfg, ctx)
    checkpoint = RunFolder(run_dir).latest_checkpoint()
    if checkpoint is None:
        raise FrkitInputError(f"{run_dir} has no finished marketplace to load")
    problem = verify(checkpoint)
    if problem is not None:  # analysis of a damaged checkpoint would show garbage as results
        raise FrkitInputError(
            f"the latest checkpoint of {run_dir} is damaged: {problem}; run the same params again "
            "(frkit run) to set it aside and redo that marketplace"
        )
    method.load(checkpoint)
    return cfg, method, marketplaces
