"""`frkit recheck`: a finished run trained again from its own files gives its AUC matrix back, and a result that
does not match its params is caught, naming the folder and by how much."""

import json
import re
import shutil
from pathlib import Path

import numpy as np
import yaml

from frkit.cli import main
from frkit.config import make_config
from frkit.recheck import Recheck, table
from frkit.runner import run


def finished_run(tiny_params, tmp_path):
    """A finished tiny run copied out as a results folder holds it (params, metrics, progress, environment)."""
    result = run(
        make_config(tiny_params(method="sequential", epochs=1, precision="fp32", run_name="x/seed0")),
        show_progress=False,
    )
    folder = tmp_path / "results" / "seed0"
    folder.mkdir(parents=True)
    for name in ("params.yaml", "metrics.json", "progress.json", "environment.json", "auc_matrix.csv"):
        shutil.copy2(result.run_dir / name, folder / name)
    return folder, result.auc_matrix


def test_a_run_trained_again_gives_its_auc_matrix_to_the_last_digit(tiny_params, tmp_path, capsys):
    folder, matrix = finished_run(tiny_params, tmp_path)
    again = tmp_path / "again"
    assert main(["recheck", str(folder), "-o", str(again)]) == 0
    out = capsys.readouterr().out
    assert "trained again in fp32" in out and "largest |difference|: 0" in out and "replays within 0" in out
    run_dir = Path(re.search(r"trained again in fp32 -> (\S+)", out).group(1))
    assert run_dir.is_relative_to(again) and not (run_dir / "checkpoints").exists()
    assert np.array_equal(np.array(json.loads((run_dir / "metrics.json").read_text())["auc_matrix"]), matrix)
    record = json.loads((run_dir / "recheck.json").read_text())
    assert record["max_difference"] == 0.0 and record["again"] == matrix.tolist() and record["again_on"]["cpu"]
    row = table([run_dir / "recheck.json"]).splitlines()[-1]
    avg = np.mean(matrix[-1])
    assert row.startswith(f"| `{folder}` | fp32 |") and f"| 0 | {avg:.4f} -> {avg:.4f} (+0.0000) |" in row

    # a committed figure that is not what its params give is caught, by how much; each recheck has its own folder
    metrics = json.loads((folder / "metrics.json").read_text())
    metrics["auc_matrix"][2][0] += 0.01
    (folder / "metrics.json").write_text(json.dumps(metrics))
    assert main(["recheck", str(folder), "-o", str(again)]) == 4
    err = capsys.readouterr().err
    assert str(folder) in err and "differ by up to 0.01" in err
    assert main(["recheck", str(folder), "-o", str(again), "--tolerance", "0.02"]) == 0
    assert len(list(again.iterdir())) == 3 and run_dir.is_dir()  # no recheck set another aside


def test_recheck_names_what_is_missing_or_ambiguous_before_training(tiny_params, tmp_path, capsys):
    folder = tmp_path / "results" / "seed0"
    folder.mkdir(parents=True)
    again = tmp_path / "again"
    (folder / "params.yaml").write_text(yaml.safe_dump(tiny_params(precision="auto")))
    assert main(["recheck", str(folder), "-o", str(again)]) == 2
    assert "no metrics.json" in capsys.readouterr().err
    (folder / "metrics.json").write_text(json.dumps({"auc_matrix": [[0.5] * 3] * 3}))
    step = {"marketplace": "en", "auc_row": [0.5] * 3}  # a finished step as progress.json records it
    (folder / "progress.json").write_text(
        json.dumps({"steps": [{**step, "step": 0, "precision": "bf16"}, {**step, "step": 1, "precision": "fp32"}]})
    )
    assert main(["recheck", str(folder), "-o", str(again)]) == 2
    assert "different precisions" in capsys.readouterr().err
    (folder / "progress.json").write_text(
        json.dumps({"steps": [{**step, "step": i, "precision": "fp32"} for i in range(3)]})
    )
    (folder / "metrics.json").write_text(json.dumps({"auc_matrix": [[0.5, 0.5], [0.5]]}))  # ragged
    assert main(["recheck", str(folder), "-o", str(again)]) == 2
    assert "metrics.json" in capsys.readouterr().err
    (folder / "metrics.json").write_text(json.dumps({"auc_matrix": [[0.5] * 2] * 2}))  # 2 x 2 for 3 marketplaces
    assert main(["recheck", str(folder), "-o", str(again)]) == 2
    assert "names 3 marketplaces" in capsys.readouterr().err
    for bad in ("-1", "nan"):
        assert main(["recheck", str(folder), "--tolerance", bad]) == 2
        assert f"--tolerance {bad}" in capsys.readouterr().err
    assert not again.exists()  # nothing written before the inputs were checked


def test_largest_difference_counts_a_cell_evaluated_in_one_matrix_only():
    def check(committed, again):
        return Recheck(Path("r"), Path("a"), "fp32", ["en", "es"], np.array(committed), np.array(again)).max_difference

    nan = np.nan
    assert check([[0.5, nan], [0.6, 0.7]], [[0.5, nan], [0.6, 0.7]]) == 0.0  # unevaluated in both: no difference
    assert check([[0.5, nan], [0.6, 0.7]], [[0.5, nan], [0.6, 0.75]]) == 0.75 - 0.7
    assert check([[0.5, nan], [0.6, 0.7]], [[0.5, 0.8], [0.6, 0.7]]) == np.inf
