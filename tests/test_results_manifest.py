"""Results integrity (issue 31): every run exported to a results folder carries a sha256 manifest of its files, and the
summary (``collect``: ``frkit sweep --summary-only``, notebook 06, tests/test_readme.py) refuses a run whose files no
longer match it, or that has none, naming the run and the file. A deliberate change is blessed by exporting the run
again or by ``frkit sweep FILE --write-manifests``."""

import json
import shutil
from pathlib import Path

import pytest
import yaml
from conftest import write_result

from frkit.cli import main
from frkit.errors import FrkitInputError
from frkit.records.checksums import MANIFEST, verify
from frkit.reports.collect import collect
from frkit.sweep import export_run, load_sweep

ROOT = Path(__file__).resolve().parents[1]
ORDER = "en-es-ja"
FINALS = {0: (0.70, 0.72, 0.74), 1: (0.71, 0.70, 0.75)}


def tiny_results(tmp_path: Path, tiny_params) -> Path:
    """A sweep file of one row, two seeds, whose results folder is written by hand (with manifests)."""
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(tiny_params()))
    path = tmp_path / "sweep.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "base": "base.yaml",
                "name": "fx",
                "seeds": [0, 1],
                "results": str(tmp_path / "results"),
                "runs": {"fr_lora": {"method": "sequential"}},
            }
        )
    )
    for seed, finals in FINALS.items():
        write_result(tmp_path / "results", "fr_lora", seed, dict(zip(["en", "es", "ja"], finals)))
    return path


def hand_edit_metrics(folder: Path) -> None:
    metrics = json.loads((folder / "metrics.json").read_text())
    (folder / "metrics.json").write_text(json.dumps({**metrics, "average_auc": 0.99}))


def test_a_hand_edited_metrics_file_is_refused_naming_the_run_and_the_file(tmp_path, tiny_params, capsys):
    path = tiny_results(tmp_path, tiny_params)
    assert len(collect(load_sweep(path)).runs) == 2
    folder = tmp_path / "results" / "fr_lora" / ORDER / "seed1"
    hand_edit_metrics(folder)
    with pytest.raises(
        FrkitInputError,
        match=r"results of fr_lora \[en-es-ja\] seed 1 in .*seed1 do not match their "
        r"checksums\.json: .*seed1/metrics\.json",
    ):
        collect(load_sweep(path))
    summary = tmp_path / "results" / "summary.md"
    assert main(["sweep", str(path), "--summary-only"]) == 2
    err = capsys.readouterr().err
    assert "fr_lora [en-es-ja] seed 1" in err and "metrics.json" in err and "--write-manifests" in err, err
    assert not summary.exists()  # nothing was summarised from the edited file

    # "I changed it on purpose": the manifests are written anew, and the summary takes the edited number
    assert main(["sweep", str(path), "--write-manifests"]) == 0
    assert "checksums.json written for 2 runs" in capsys.readouterr().out
    assert main(["sweep", str(path), "--summary-only"]) == 0
    assert [r["average_auc"] for k, r in collect(load_sweep(path)).runs.items() if k.seed == 1] == [0.99]


def test_a_run_folder_without_a_manifest_is_refused_with_the_command_that_writes_one(tmp_path, tiny_params):
    path = tiny_results(tmp_path, tiny_params)
    (tmp_path / "results" / "fr_lora" / ORDER / "seed0" / MANIFEST).unlink()
    with pytest.raises(
        FrkitInputError,
        match=r"results of fr_lora \[en-es-ja\] seed 0 .*no checksums\.json.*"
        r"`frkit sweep .*sweep\.yaml --write-manifests`",
    ):
        collect(load_sweep(path))


def test_a_missing_file_of_the_manifest_is_named(tmp_path, tiny_params):
    path = tiny_results(tmp_path, tiny_params)
    (tmp_path / "results" / "fr_lora" / ORDER / "seed0" / "progress.json").unlink()
    with pytest.raises(FrkitInputError, match=r"seed 0 .*seed0/progress\.json is missing"):
        collect(load_sweep(path))


def test_exporting_a_run_again_writes_its_manifest_anew(tmp_path, tiny_params):
    path = tiny_results(tmp_path, tiny_params)
    target = tmp_path / "results" / "fr_lora" / ORDER / "seed1"
    run_dir = tmp_path / "outputs" / "run"  # a run folder that holds more than the results take (a checkpoint)
    shutil.copytree(target, run_dir)
    (run_dir / MANIFEST).unlink()
    (run_dir / "checkpoints").mkdir()
    (run_dir / "checkpoints" / "adapter.safetensors").write_bytes(b"\0" * 8)
    hand_edit_metrics(run_dir)
    export_run(run_dir, target)  # the small files and their manifest, never the checkpoint
    small = ["metrics.json", "params.yaml", "progress.json"]
    assert sorted(p.name for p in target.iterdir()) == sorted([MANIFEST, *small])
    assert sorted(json.loads((target / MANIFEST).read_text())["files"]) == small
    results = collect(load_sweep(path))
    assert [r["average_auc"] for k, r in results.runs.items() if k.seed == 1] == [0.99]


@pytest.mark.parametrize("sweep", ["cpu_stsb", "cpu_stsb_ewc", "cpu_stsb_probe_dytox"])
def test_every_committed_run_carries_a_manifest_that_matches(sweep):
    folders = sorted(p.parent for p in (ROOT / "results" / sweep).glob("*/*/seed*/metrics.json"))
    assert folders
    problems = [
        f"{f}: {verify(f) or 'no checksums.json'}" for f in folders if not (f / MANIFEST).is_file() or verify(f)
    ]
    assert not problems, "\n".join(problems[:5])
