"""`frkit recheck`: a finished run trained again from its own files gives its AUC matrix back, and a result that
does not match its params is caught, naming the folder and by how much."""
import json
import shutil

import numpy as np
import yaml

from frkit.cli import main
from frkit.config import make_config
from frkit.runner import run


def finished_run(tiny_params, tmp_path):
    """A finished tiny run copied out as a results folder holds it (params, metrics, progress, environment)."""
    result = run(make_config(tiny_params(method="sequential", epochs=1, precision="fp32", run_name="x/seed0")),
                 show_progress=False)
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
    redone = json.loads((again / "x" / "seed0" / "metrics.json").read_text())["auc_matrix"]
    assert np.array_equal(np.array(redone), matrix)  # the new folder holds the same numbers, not a copy of a file

    # a committed figure that is not what its params give is caught, by how much
    metrics = json.loads((folder / "metrics.json").read_text())
    metrics["auc_matrix"][2][0] += 0.01
    (folder / "metrics.json").write_text(json.dumps(metrics))
    assert main(["recheck", str(folder), "-o", str(again)]) == 4
    err = capsys.readouterr().err
    assert str(folder) in err and "differ by up to 0.01" in err
    assert main(["recheck", str(folder), "-o", str(again), "--tolerance", "0.02"]) == 0


def test_recheck_names_what_is_missing_or_ambiguous_before_training(tiny_params, tmp_path, capsys):
    folder = tmp_path / "results" / "seed0"
    folder.mkdir(parents=True)
    (folder / "params.yaml").write_text(yaml.safe_dump(tiny_params(precision="auto")))
    assert main(["recheck", str(folder), "-o", str(tmp_path / "again")]) == 2
    assert "no metrics.json" in capsys.readouterr().err
    (folder / "metrics.json").write_text(json.dumps({"auc_matrix": [[0.5] * 3] * 3}))
    (folder / "progress.json").write_text(json.dumps({"steps": [{"precision": "bf16"}, {"precision": "fp32"}]}))
    assert main(["recheck", str(folder), "-o", str(tmp_path / "again")]) == 2
    assert "different precisions" in capsys.readouterr().err and not (tmp_path / "again").exists()
    assert main(["recheck", str(folder), "--tolerance", "-1"]) == 2
    assert "--tolerance -1" in capsys.readouterr().err
