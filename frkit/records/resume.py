"""Resume from the last sound checkpoint: never load one that fails its checksums.

The run folder keeps the checkpoints of the latest two finished marketplaces. The latest one is checked against
its ``checksums.json`` and loaded; if a file is missing, truncated or changed (or a checkpoint from an older frkit,
without checksums, fails to load), it is set aside in ``damaged/`` (renamed, never deleted), its step is dropped
from progress.json and the one before is tried: that marketplace is then learned again, with the same per-step
seed, so the run ends as an unbroken one would. With no sound checkpoint left the run starts from the first
marketplace, and says so.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from frkit.errors import FrkitInputError
from frkit.records.checksums import has_manifest, verify
from frkit.records.folder import RunFolder

log = logging.getLogger(__name__)


def restore(folder: RunFolder, make_method: Callable[[], object]):
    """(method, number of finished steps) restored from the last sound checkpoint of ``folder``."""
    steps = folder.progress()["steps"]
    dropped = False
    while steps:
        last = steps[-1]
        checkpoint = folder.checkpoint_dir(last["step"], last["marketplace"])
        problem = verify(checkpoint)
        if problem is None:
            method = make_method()
            try:
                method.load(checkpoint)
                log.info("resuming %s after %s", folder.path, last["marketplace"])
                return method, len(steps)
            except Exception as err:  # noqa: BLE001 - any failure to load is reported below
                if has_manifest(checkpoint):  # the files are as written: not damage, a code/version mismatch
                    raise FrkitInputError(
                        f"checkpoint {checkpoint} matches its checksums but could not be loaded "
                        f"({type(err).__name__}: {err}); was it written by another version of frkit or peft? "
                        "Reinstall that version to resume, or start again with resume: false"
                    ) from err
                problem = f"{checkpoint} could not be loaded ({type(err).__name__}: {err})"
        note = f"checkpoint of step {last['step']} ({last['marketplace']}) is damaged: {problem}"
        if checkpoint.exists():
            aside = folder.set_aside(checkpoint, note)
            note += f"; set aside as {aside}"
        log.warning("%s; %s will be learned again from the checkpoint before it", note, last["marketplace"])
        steps, dropped = steps[:-1], True
        folder.keep_steps(len(steps))
    if dropped:
        log.warning("no sound checkpoint is left in %s: starting again from the first marketplace", folder.path)
    return make_method(), 0
