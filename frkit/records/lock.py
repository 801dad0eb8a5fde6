"""One process at a time on a run folder: ``run.lock``, made with O_CREAT | O_EXCL, says who holds it.

Two processes on one folder (a second ``frkit run``, a sweep and a notebook on the same ``run_name``) would both
train and both write it, each over the other's checkpoints. The lock file holds the holder's pid, host, the
process's start (so a pid reused by a later process is not taken for the holder) and when it took the lock:

- held by a live process: refused at once (``FrkitInputError`` naming the folder, the pid and the host); a lock
  from another host counts as live, since its process cannot be checked from here;
- left by a dead process of this host (killed, power cut): taken over, with a one-line warning;
- with this process's own pid: taken over as stale (a pid reused inside a container, or a lock that an earlier
  run of this process could not remove) unless this process holds it right now, i.e. a run of the folder is
  going on in another thread: then refused like any live holder. A notebook that runs a cell twice does not
  wait for itself: the runner releases the lock at the end of each run, however it ends.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
import uuid
from pathlib import Path

from frkit.errors import FrkitInputError

LOCK = "run.lock"
log = logging.getLogger(__name__)
_HELD: set[str] = set()  # the lock files this process holds now
_HELD_GUARD = threading.Lock()


def _process_start(pid: int) -> str | None:
    """When ``pid`` started (clock ticks since boot, /proc/<pid>/stat field 22), None where it cannot be read."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rfind(")") + 2 :].split()  # after the command name, which may hold spaces and parentheses
    return fields[19] if len(fields) > 19 else None


def _alive(holder: dict) -> bool:
    """Whether the process that wrote ``holder`` still runs (on another host: assumed, it cannot be checked)."""
    pid = holder.get("pid")
    if holder.get("host") != socket.gethostname():
        return True
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    except OSError:
        return False
    started = _process_start(pid)
    if started is not None and holder.get("process_start") not in (None, started):
        return False  # the pid now belongs to a later process
    try:
        state = Path(f"/proc/{pid}/stat").read_text()
        return state[state.rfind(")") + 2 :].split()[0] != "Z"  # a zombie has ended, only its parent has not reaped it
    except (OSError, IndexError):
        return True


class RunLock:
    """The lock of one run folder (``folder/run.lock``); ``acquire`` takes it, ``release`` (or ``with``) drops it."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        self.path = self.folder / LOCK
        self.token = uuid.uuid4().hex
        self.held = False

    def _read(self) -> tuple[dict | None, int | None]:
        """(holder, inode) of the lock file; (None, None): it is gone; ({}, inode): unreadable even after waiting
        a moment for a holder that is writing it."""
        for _ in range(20):
            try:
                with open(self.path, "rb") as fh:
                    ino, raw = os.fstat(fh.fileno()).st_ino, fh.read()
            except FileNotFoundError:
                return None, None
            try:
                holder = json.loads(raw.decode("utf-8"))
                if isinstance(holder, dict):
                    return holder, ino
            except (UnicodeDecodeError, ValueError):
                pass
            time.sleep(0.05)  # made but not yet written (O_EXCL, then the write): give its holder a moment
        return {}, ino

    def _refusal(self, holder: dict) -> FrkitInputError:
        ours = holder.get("pid") == os.getpid() and holder.get("host") == socket.gethostname()
        who = "this process" if ours else "process"
        return FrkitInputError(
            f"run folder {self.folder} is in use by {who} {holder.get('pid')} on host {holder.get('host')} (since "
            f"{holder.get('started')}; {self.path}); two processes on one run folder would both write it: wait for "
            "that run to end, or use another run_name (or output_dir)"
            + ("" if ours else f"; if that process is gone and the lock remains, delete {self.path}")
        )

    def _take_over(self, ino: int) -> bool:
        """Remove the stale lock file with inode ``ino``, and only that one (another process may have taken the
        lock over in between: its fresh file is put back). True when the stale file was removed."""
        aside = self.path.with_name(f"{LOCK}.stale-{os.getpid()}-{self.token[:8]}")
        try:
            os.rename(self.path, aside)
        except FileNotFoundError:
            return False
        if aside.stat().st_ino != ino:  # not the file we judged stale: give it back
            try:
                os.link(aside, self.path)
            except FileExistsError:
                pass
            aside.unlink()
            return False
        aside.unlink()
        return True

    def acquire(self) -> RunLock:
        """Take the lock (the folder must exist); refused at once when a live process holds it."""
        record = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "process_start": _process_start(os.getpid()),
            "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "token": self.token,
        }
        for _ in range(10):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                pass
            except OSError as err:
                raise FrkitInputError(
                    f"output_dir: cannot make the lock {self.path} of the run folder "
                    f"({err.strerror or err}); choose another output_dir"
                ) from None
            else:
                try:
                    os.write(fd, json.dumps(record).encode("utf-8"))
                    os.fsync(fd)
                finally:
                    os.close(fd)
                with _HELD_GUARD:
                    _HELD.add(str(self.path.resolve()))
                self.held = True
                return self
            holder, ino = self._read()
            if holder is None:  # released in between: try again
                continue
            if holder:
                ours = holder.get("pid") == os.getpid() and holder.get("host") == socket.gethostname()
                with _HELD_GUARD:
                    held_here = str(self.path.resolve()) in _HELD
                if (ours and held_here) or (not ours and _alive(holder)):
                    raise self._refusal(holder)
            if self._take_over(ino):
                what = (
                    f"process {holder.get('pid')} on {holder.get('host')}, since {holder.get('started')}"
                    if holder
                    else "an unreadable lock file"
                )
                log.warning("run folder %s: taking over the stale lock of %s (that process is gone)", self.folder, what)
        raise FrkitInputError(
            f"run folder {self.folder}: could not take {self.path} (other processes keep taking "
            "it over); run one process at a time on a run folder"
        )

    def release(self) -> None:
        """Drop the lock, if this lock still holds it (a lock file that another process took over stays)."""
        if not self.held:
            return
        self.held = False
        with _HELD_GUARD:
            _HELD.discard(str(self.path.resolve()))
        holder, _ = self._read()
        if holder and holder.get("token") == self.token:
            try:
                self.path.unlink()
            except FileNotFoundError:
                pass

    def __enter__(self) -> RunLock:
        return self if self.held else self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def lock_run_folder(path: str | Path) -> RunLock:
    """The held lock of the run folder ``path`` (which must exist): ``with lock_run_folder(p): ...``."""
    return RunLock(path).acquire()
