"""One process at a time on a run folder (issue 31, item 7): ``run.lock`` (frkit/records/lock.py).

A second process on a folder that a live process holds is refused at once, naming the folder, the pid and the host;
the lock of a dead process is taken over with a one-line warning; a run drops its lock when it ends, however it ends.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import yaml

from frkit.errors import FrkitInputError
from frkit.records import LOCK, RunFolder, RunLock, lock_run_folder

REPO = Path(__file__).resolve().parents[1]


def _dead_pid() -> int:
    """The pid of a process that has run and ended (and been reaped)."""
    out = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True
    )
    return int(out.stdout)


def _write_lock(folder: Path, **holder) -> None:
    (folder / LOCK).write_text(json.dumps({"host": socket.gethostname(), "started": "2024-01-01T00:00:00", **holder}))


def test_a_second_process_on_a_held_folder_is_refused_naming_folder_pid_and_host(tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    code = (
        "import sys\nfrom frkit.errors import FrkitInputError\nfrom frkit.records.lock import lock_run_folder\n"
        "try:\n    lock_run_folder(sys.argv[1])\nexcept FrkitInputError as err:\n    print(err)\n    sys.exit(3)\n"
    )
    with lock_run_folder(folder) as lock:
        assert lock.held and json.loads((folder / LOCK).read_text())["pid"] == os.getpid()
        out = subprocess.run(
            [sys.executable, "-c", code, str(folder)], capture_output=True, text=True, cwd=REPO, timeout=300
        )
        assert out.returncode == 3, out.stderr
        assert str(folder) in out.stdout and f"process {os.getpid()}" in out.stdout, out.stdout
        assert socket.gethostname() in out.stdout
        assert json.loads((folder / LOCK).read_text())["pid"] == os.getpid()  # the holder's lock is left alone
    assert not (folder / LOCK).exists()  # released on leaving the block


def test_frkit_run_on_a_folder_another_live_process_holds_is_refused_at_once(
    tiny_params, tmp_path, capsys, monkeypatch
):
    """A real ``frkit run`` against a folder held by a live process (here: a child that sleeps holding it): refused
    before any data or model is read."""
    import frkit.runner

    def not_now(*args, **kwargs):
        raise AssertionError("data read before the lock was checked")

    monkeypatch.setattr(frkit.runner, "load_configured_marketplaces", not_now)
    params = tiny_params(method="sequential", run_name="r", marketplaces=["en"])
    run_dir = Path(params["output_dir"]) / "r"
    run_dir.mkdir(parents=True)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\nfrom frkit.records.lock import lock_run_folder"
            "\nlock_run_folder(sys.argv[1])\nprint('held', flush=True)\ntime.sleep(600)",
            str(run_dir),
        ],
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        pfile = tmp_path / "params.yaml"
        pfile.write_text(yaml.safe_dump(params))
        from frkit.cli import main

        assert main(["run", str(pfile)]) == 2
        err = capsys.readouterr().err
        assert f"run folder {run_dir} is in use by process {holder.pid}" in err, err
        assert sorted(p.name for p in run_dir.iterdir()) == [LOCK]  # nothing of the refused run was written
    finally:
        holder.kill()
        holder.wait()


def test_a_stale_lock_of_a_dead_process_is_taken_over_with_a_warning(tmp_path, caplog):
    pid = _dead_pid()
    _write_lock(tmp_path, pid=pid)
    with caplog.at_level(logging.WARNING, logger="frkit.records.lock"):
        lock = lock_run_folder(tmp_path)
    notices = [r.getMessage() for r in caplog.records if "stale lock" in r.getMessage()]
    assert len(notices) == 1 and f"process {pid}" in notices[0] and "\n" not in notices[0], notices
    assert json.loads((tmp_path / LOCK).read_text())["pid"] == os.getpid()
    lock.release()
    assert not (tmp_path / LOCK).exists()


def test_a_live_holder_is_not_taken_for_stale(tmp_path, caplog):
    """The parent of this process lives: its lock is refused, never taken over (the check that can fail)."""
    _write_lock(tmp_path, pid=os.getppid())
    with pytest.raises(FrkitInputError, match=rf"in use by process {os.getppid()} on host"):
        lock_run_folder(tmp_path)
    assert json.loads((tmp_path / LOCK).read_text())["pid"] == os.getppid()


def test_a_lock_from_another_host_counts_as_live(tmp_path):
    _write_lock(tmp_path, pid=_dead_pid(), host="another-host.example")
    with pytest.raises(FrkitInputError, match=r"on host another-host\.example.*delete .*run\.lock"):
        lock_run_folder(tmp_path)


def test_a_reused_pid_is_stale(tmp_path, caplog):
    """A live pid whose process started at another time than the lock says (a pid reused) is not the holder."""
    from frkit.records.lock import _process_start

    if _process_start(os.getppid()) is None:
        pytest.skip("no /proc here")
    _write_lock(tmp_path, pid=os.getppid(), process_start="1")
    with caplog.at_level(logging.WARNING, logger="frkit.records.lock"):
        lock_run_folder(tmp_path).release()
    assert any("stale lock" in r.getMessage() for r in caplog.records)


def test_own_pid_is_stale_unless_this_process_holds_the_lock_now(tmp_path, caplog):
    """A lock with this process's pid that this process does not hold (a pid reused in a container) is stale; one
    it holds now (a run of the folder in another thread, or a run inside a run) is refused, not waited for."""
    _write_lock(tmp_path, pid=os.getpid())
    with caplog.at_level(logging.WARNING, logger="frkit.records.lock"):
        lock = lock_run_folder(tmp_path)
    assert any("stale lock" in r.getMessage() for r in caplog.records)
    errors = []
    thread = threading.Thread(target=lambda: errors.append(pytest.raises(FrkitInputError, lock_run_folder, tmp_path)))
    thread.start()
    thread.join(timeout=60)
    assert not thread.is_alive() and "in use by this process" in str(errors[0].value)
    lock.release()
    with lock_run_folder(tmp_path):  # and again, as a notebook cell run twice would
        pass
    assert not (tmp_path / LOCK).exists()


def test_release_leaves_a_lock_that_another_process_took_over(tmp_path):
    lock = lock_run_folder(tmp_path)
    _write_lock(tmp_path, pid=os.getppid(), token="theirs")
    lock.release()
    assert json.loads((tmp_path / LOCK).read_text())["token"] == "theirs"


def test_a_run_holds_the_lock_and_drops_it_at_the_end_also_when_refused(tiny_params, monkeypatch):
    from frkit.config import make_config
    from frkit.runner import run

    seen = []
    real = RunFolder.save_step

    def spy(self, *args, **kwargs):
        seen.append(json.loads((self.path / LOCK).read_text()))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(RunFolder, "save_step", spy)
    params = tiny_params(method="sequential", run_name="r", marketplaces=["en"], epochs=1, max_steps_per_epoch=2)
    result = run(make_config(params), show_progress=False)
    assert [s["pid"] for s in seen] == [os.getpid()]
    assert not (result.run_dir / LOCK).exists()
    with pytest.raises(FrkitInputError, match="other parameters"):  # refused after the lock was taken
        run(make_config({**params, "lr": 0.5}), show_progress=False)
    assert not (result.run_dir / LOCK).exists()
    # resume: false sets the old run aside while this process goes on holding the folder's lock
    again = run(make_config({**params, "lr": 0.5, "resume": False}), show_progress=False)
    aside = list(result.run_dir.parent.glob("r.old-*"))
    assert len(aside) == 1 and (aside[0] / "metrics.json").is_file() and not (aside[0] / LOCK).exists()
    assert yaml.safe_load((again.run_dir / "params.yaml").read_text())["lr"] == 0.5
    assert len(seen) == 2 and not (again.run_dir / LOCK).exists()


def test_runlock_is_a_context_manager(tmp_path):
    with RunLock(tmp_path) as lock:
        assert (tmp_path / LOCK).is_file() and lock.held
    assert not (tmp_path / LOCK).exists() and not lock.held
