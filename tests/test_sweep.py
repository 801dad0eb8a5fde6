"""`frkit sweep`: the sweep file is validated before any training, runs go through the runner, the summary holds
mean ± std over seeds, and runs trained in parallel processes (`jobs`) give the same numbers as serial ones."""
import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from frkit.cli import main
from frkit.errors import FrkitInputError
from frkit.sweep import load_sweep, run_sweep


def write_sweep(tmp_path: Path, params: dict, sweep: dict) -> Path:
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(params))
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump({"base": "base.yaml", **sweep}))
    return path


def test_unknown_sweep_key_is_named(tmp_path, tiny_params):
    path = write_sweep(tmp_path, tiny_params(), {"runs": {"a": {"method": "sequential"}}, "seed": [0]})
    with pytest.raises(FrkitInputError, match=r"unknown key\(s\) \['seed'\]"):
        load_sweep(path)


def test_missing_runs_and_base_are_named(tmp_path, tiny_params):
    with pytest.raises(FrkitInputError, match="missing key 'runs'"):
        load_sweep(write_sweep(tmp_path, tiny_params(), {}))
    path = tmp_path / "no_base.yaml"
    path.write_text(yaml.safe_dump({"base": "nowhere.yaml", "runs": {"a": {}}}))
    with pytest.raises(FrkitInputError, match="nowhere.yaml does not exist"):
        load_sweep(path)
    with pytest.raises(FrkitInputError, match="does not exist"):
        load_sweep(tmp_path / "absent.yaml")


def test_bad_run_parameter_names_the_run_and_key(tmp_path, tiny_params):
    path = write_sweep(tmp_path, tiny_params(), {"runs": {"good": {"method": "sequential"},
                                                          "broken": {"method": "lora", "lora_rnk": 4}}})
    with pytest.raises(FrkitInputError, match=r"(?s)run 'broken'.*lora_rnk"):
        load_sweep(path)


def test_only_with_unknown_label_fails_before_training(tmp_path, tiny_params):
    path = write_sweep(tmp_path, tiny_params(), {"runs": {"seq": {"method": "sequential"}}})
    with pytest.raises(FrkitInputError, match=r"--only \['sequentail'\] not among its runs \['seq'\]"):
        run_sweep(path, only=["sequentail"])
    with pytest.raises(FrkitInputError, match=r"--jobs 0: expected a whole number >= 1"):
        run_sweep(path, jobs=0)
    assert not (tmp_path / "outputs").exists()


def test_sweep_runs_every_seed_and_summarises_mean_and_std(tmp_path, tiny_params):
    path = write_sweep(tmp_path, tiny_params(epochs=1), {
        "name": "s", "seeds": [0, 1], "baseline": "independent",
        "runs": {"independent": {"method": "independent"}, "seq": {"method": "sequential"}}})
    assert main(["sweep", str(path)]) == 0
    out = tmp_path / "outputs" / "s"
    metrics = {(label, seed): json.loads((out / label / f"seed{seed}" / "metrics.json").read_text())
               for label in ("independent", "seq") for seed in (0, 1)}
    summary = (out / "summary.md").read_text()
    for label in ("independent", "seq"):
        values = [metrics[(label, s)]["average_auc"] for s in (0, 1)]
        mean, std = sum(values) / 2, abs(values[0] - values[1]) / 2 ** 0.5  # sample std of two values
        line = next(ln for ln in summary.splitlines() if ln.startswith(f"| {label} "))
        assert f"{mean:.4f} ± {std:.4f}" in line
    assert "Relative to independent" in summary


def test_parallel_jobs_match_serial(tmp_path, tiny_params):
    runs = {"seq": {"method": "sequential"}, "lora": {"method": "lora"}}
    folders = {}
    for name in ("serial", "parallel"):
        (tmp_path / name).mkdir()
        folders[name] = write_sweep(tmp_path / name, tiny_params(epochs=1, output_dir=str(tmp_path / name / "out")),
                                    {"name": "s", "runs": runs})
    serial, parallel = folders["serial"], folders["parallel"]
    run_sweep(serial)
    run_sweep(parallel, jobs=2)
    for label in runs:
        a = json.loads((tmp_path / "serial" / "out" / "s" / label / "seed0" / "metrics.json").read_text())
        b = json.loads((tmp_path / "parallel" / "out" / "s" / label / "seed0" / "metrics.json").read_text())
        np.testing.assert_allclose(np.array(b["auc_matrix"], dtype=float), np.array(a["auc_matrix"], dtype=float), atol=1e-6)
        assert (tmp_path / "parallel" / "out" / "s" / label / "seed0.log").is_file()


def test_parallel_failure_is_reported_and_other_runs_finish(tmp_path, tiny_params, capsys):
    # a run whose data folder vanishes after validation fails inside its worker; the other run still finishes
    path = write_sweep(tmp_path, tiny_params(epochs=1), {
        "name": "s", "runs": {"seq": {"method": "sequential"}, "bad": {"method": "sequential", "data_path": str(tmp_path / "gone")}}})
    (tmp_path / "gone").mkdir()
    with pytest.raises(RuntimeError, match=r"(?s)sweep runs failed.*bad seed 0"):
        run_sweep(path, jobs=2)
    assert (tmp_path / "outputs" / "s" / "seq" / "seed0" / "metrics.json").is_file()
    reported = [line for line in capsys.readouterr().out.splitlines() if line.startswith("== bad seed 0: failed")]
    assert reported and "Error" in reported[0]  # the reason at once, not only at the end of the sweep
    assert "Traceback" in (tmp_path / "outputs" / "s" / "bad" / "seed0.log").read_text()  # and kept in its log
