"""The run folder's one owner: its files, the parameters check, environment, fingerprints, checksums, the lock,
resuming, and reading run and results folders (strictly to go on, leniently to summarise).

Bottom layer (tests/test_layers.py): imports only frkit.atomic, frkit.errors and frkit.precision.
The function ``environment`` re-exported here hides the module of that name as an attribute of the package:
reach the module as ``sys.modules["frkit.records.environment"]`` (``from frkit.records.environment import ...``
works as usual). Fingerprints are imported from ``frkit.records.fingerprint`` (not re-exported, for the same
reason).
"""

from frkit.records.checksums import MANIFEST, has_manifest, sha256_file, verify, write_manifest
from frkit.records.environment import PACKAGES, code_hash, environment, git_revision
from frkit.records.folder import RunFolder, make_writable_folder
from frkit.records.lock import LOCK, RunLock, lock_run_folder
from frkit.records.params import (
    LEGACY_VALUES,
    RESUME_FREE_KEYS,
    START_AGAIN,
    describe_changes,
    params_changes,
    with_legacy_values,
)
from frkit.records.precision import UNRECORDED, run_precision
from frkit.records.readers import RunRecord, load_run, read_json, read_params, read_run_files
from frkit.records.resume import restore

__all__ = [
    "MANIFEST",
    "has_manifest",
    "sha256_file",
    "verify",
    "write_manifest",
    "PACKAGES",
    "code_hash",
    "environment",
    "git_revision",
    "RunFolder",
    "make_writable_folder",
    "LOCK",
    "RunLock",
    "lock_run_folder",
    "LEGACY_VALUES",
    "RESUME_FREE_KEYS",
    "START_AGAIN",
    "describe_changes",
    "params_changes",
    "with_legacy_values",
    "UNRECORDED",
    "run_precision",
    "RunRecord",
    "load_run",
    "read_json",
    "read_params",
    "read_run_files",
    "restore",
]
