"""The run folder (frkit/records/folder.py): an output_dir that cannot be made or written is refused before any data
or model is read (issue 31, item 7); a refused run leaves no folder behind; the records sit below the data layer."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml

from frkit.errors import FrkitInputError
from frkit.records import LOCK, RunFolder, make_writable_folder


@pytest.fixture
def no_data_or_model(monkeypatch):
    """The runner's data and model loaders raise if called: a refusal must come before them."""
    import frkit.runner

    def not_now(*args, **kwargs):
        raise AssertionError("data or model loaded before output_dir was checked")

    monkeypatch.setattr(frkit.runner, "load_configured_marketplaces", not_now)
    monkeypatch.setattr(frkit.runner, "prepare_model_source", not_now)
    monkeypatch.setattr(frkit.runner, "load_tokenizer", not_now)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc is Linux's")
def test_output_dir_on_a_virtual_file_system_is_refused_before_the_model_loads(
    tiny_params, no_data_or_model, tmp_path, capsys
):
    """/proc accepts no new folder, even from root, although os.access calls it writable: today's message was
    "unexpected error FileNotFoundError" after the model had loaded."""
    from frkit.cli import main
    from frkit.config import make_config
    from frkit.runner import run

    params = tiny_params(method="sequential", output_dir="/proc/frkit-test", run_name="r")
    with pytest.raises(FrkitInputError, match=r"^output_dir: cannot make or write the run folder /proc/frkit-test/r"):
        run(make_config(params), show_progress=False)
    pfile = tmp_path / "params.yaml"
    pfile.write_text(yaml.safe_dump(params))
    assert main(["run", str(pfile)]) == 2
    err = capsys.readouterr().err
    assert "frkit: output_dir: cannot make or write the run folder /proc/frkit-test/r" in err, err
    assert "Traceback" not in err and "unexpected" not in err


def test_output_dir_under_a_file_is_refused_before_the_model_loads(tiny_params, no_data_or_model, tmp_path):
    from frkit.config import make_config
    from frkit.runner import run

    (tmp_path / "a_file").write_text("not a folder")
    params = tiny_params(method="sequential", output_dir=str(tmp_path / "a_file" / "outputs"), run_name="r")
    with pytest.raises(FrkitInputError, match=r"^output_dir: .*a_file is a file"):
        run(make_config(params), show_progress=False)


def test_a_refused_run_leaves_no_folder_behind(tiny_params, monkeypatch, tmp_path):
    """The folder is made (and locked) before anything is read; a run refused after that removes what it made."""
    import frkit.runner
    from frkit.config import make_config
    from frkit.runner import run

    def refuse(*args, **kwargs):
        raise FrkitInputError("bad data (a test's)")

    monkeypatch.setattr(frkit.runner, "load_configured_marketplaces", refuse)
    out = tmp_path / "deep" / "outputs"
    with pytest.raises(FrkitInputError, match="a test's"):
        run(make_config(tiny_params(method="sequential", output_dir=str(out), run_name="r")), show_progress=False)
    assert not (tmp_path / "deep").exists()


def test_make_writable_folder_makes_and_names_what_it_made(tmp_path):
    target = tmp_path / "a" / "b" / "run"
    made = make_writable_folder(target)
    assert made == [target, target.parent, target.parent.parent]  # deepest first
    assert target.is_dir() and list(target.iterdir()) == []  # the probe file is gone
    assert make_writable_folder(target) == []


def test_check_reads_only(tmp_path):
    """RunFolder.check makes and writes the folder to know it can, then leaves the disk as it was."""
    RunFolder(tmp_path / "x" / "run").check({"lr": 1}, resume=True)
    assert list(tmp_path.iterdir()) == []


def test_locked_makes_the_folder_and_removes_it_when_left_empty(tmp_path):
    folder = RunFolder(tmp_path / "out" / "run")
    with folder.locked() as lock:
        assert (folder.path / LOCK).is_file() and lock.held
    assert not (tmp_path / "out").exists()
    with folder.locked():
        (folder.path / "params.yaml").write_text("lr: 1\n")
    assert sorted(p.name for p in folder.path.iterdir()) == ["params.yaml"]  # a folder with a run in it stays


def test_a_refusal_of_the_main_process_is_shared_with_every_process(tmp_path):
    """In a launch of several processes only the main one takes the lock; ``share`` (the broadcast) hands its
    refusal to the others, which did not take it, so that they stop too."""
    with RunFolder(tmp_path).locked():
        with pytest.raises(FrkitInputError, match="in use by this process"):
            with RunFolder(tmp_path).locked():
                pass
    refusal = "run folder x is in use by process 1 on host h"
    with pytest.raises(FrkitInputError, match="in use by process 1"):
        with RunFolder(tmp_path).locked(take=False, share=lambda mine: refusal):
            pass


def test_fingerprint_hashes_the_data_layers_columns_and_splits():
    """records sit below frkit.data, so they name the columns and splits themselves: the same as the data layer's."""
    import frkit.data.marketplace as data
    from frkit.records.fingerprint import COLUMNS, SPLITS

    assert COLUMNS == data.COLUMNS and SPLITS == data.SPLITS


def test_records_import_nothing_above_the_bottom_layer():
    import ast

    allowed = ("frkit.records", "frkit.atomic", "frkit.errors", "frkit.precision")
    for path in (Path(__file__).resolve().parents[1] / "frkit" / "records").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("frkit"):
                names = [node.module] if node.module != "frkit" else [f"frkit.{a.name}" for a in node.names]
                assert all(n.startswith(allowed) for n in names), (path.name, names)
