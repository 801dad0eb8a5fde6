"""Issue 30, item 5: scripts/gpu_protocol.sh runs the protocol at the papers' scale on a GPU; here its sweep file is
validated and the script runs a tiny CPU configuration end to end, keeping only small text files."""

import os
import subprocess
from pathlib import Path

import yaml

from frkit.sweep import load_sweep
from tests.test_mixed_protocol import write_sources

ROOT = Path(__file__).resolve().parents[1]
HEADLINE = {"independent", "sequential", "ewc", "lora", "fr_lora", "fr_lora_beta0", "replay", "adapter"}


def test_the_gpu_sweep_is_the_papers_scale_on_the_chosen_protocol(monkeypatch):
    monkeypatch.chdir(ROOT)
    sweep = load_sweep(ROOT / "params" / "sweeps" / "gpu_protocol.yaml")
    assert HEADLINE | {"attention_distillation"} <= set(sweep.labels) and len(sweep.orders) == 2
    for cfg in sweep.configs.values():
        assert (cfg.batch_size, cfg.epochs, cfg.patience) == (128, 25, 3)  # FR-LoRA section 5.1
        assert cfg.max_train is cfg.max_test is None and cfg.data_source == "mixed"
        assert cfg.marketplaces[-1].startswith("pawsx_") and cfg.head_init in ("previous", "fresh")  # as shift.yaml


def test_the_script_runs_a_tiny_configuration_and_keeps_only_small_files(tmp_path, tiny_model_dir):
    sources = write_sources(tmp_path / "data", languages=("en", "es", "ja"))
    tiny = {
        "model_name_or_path": str(tiny_model_dir),
        "source_paths": yaml.safe_dump(sources, default_flow_style=True).strip(),
        "trim_vocab": "false",
        "max_length": "32",
        "epochs": "1",
        "batch_size": "8",
        "eval_batch_size": "32",
        "precision": "fp32",
        "output_dir": str(tmp_path / "outputs"),
        "report_to": "none",
    }
    args = ["--results", str(tmp_path / "results"), "--only", "sequential"]
    for key, value in tiny.items():
        args += ["-p", key, value]
    env = {**os.environ, "OUT": str(tmp_path / "out"), "JOBS": "1"}
    done = subprocess.run(
        ["bash", str(ROOT / "scripts" / "gpu_protocol.sh"), *args], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "device:" in done.stdout
    files = [p for p in (tmp_path / "out").rglob("*") if p.is_file()]
    names = {p.name for p in files}
    assert {"summary.md", "runs.csv", "metrics.json", "auc_matrix.csv", "params.yaml"} <= names
    assert len([p for p in files if p.name == "metrics.json"]) == 2  # 1 row x 2 orders x 1 seed
    assert all(p.suffix in {".json", ".csv", ".md", ".yaml"} and p.stat().st_size < 1 << 20 for p in files)
    assert not (ROOT / "results" / "gpu_protocol").exists()  # nothing written into the repository's results
