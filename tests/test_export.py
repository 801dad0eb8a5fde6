"""frkit export: a run's marketplace as a plain Hugging Face folder with frkit's exact logits (issue 32, items 1, 3).

Each test trains a seconds-long run on the tiny random BERT (conftest), exports one marketplace and loads the folder
with transformers alone (and sentence-transformers / onnxruntime where installed)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from frkit.cli import main
from frkit.config import make_config
from frkit.errors import FrkitInputError
from frkit.export import EPS, REFUSED, export, frkit_logits, prepare
from frkit.runner import load_configured_marketplaces, run

FAST = dict(marketplaces=["en", "es"], epochs=1, precision="fp32")


def train(tiny_params, method: str, **extra):
    params = tiny_params(method=method, run_name=method, **FAST, **extra)
    result = run(make_config(params), show_progress=False)
    cfg = make_config(params)
    return result.run_dir, {m.name: m for m in load_configured_marketplaces(cfg)}


def plain_hf_logits(out_dir: Path, table) -> np.ndarray:
    """The folder as a user without frkit loads it: a fresh interpreter importing transformers only."""
    code = f"""
import json, sys, torch
sys.modules['frkit'] = None  # frkit cannot be imported here
from transformers import AutoModelForSequenceClassification, AutoTokenizer
model = AutoModelForSequenceClassification.from_pretrained({str(out_dir)!r}).eval()
tok = AutoTokenizer.from_pretrained({str(out_dir)!r})
a, b = json.load(sys.stdin)
with torch.no_grad():
    enc = tok(a, b, truncation=True, padding=True, return_tensors='pt')
    print(json.dumps(model(**enc).logits.tolist()))
"""
    done = subprocess.run(
        [sys.executable, "-c", code],
        input=json.dumps([table["text_a"].tolist(), table["text_b"].tolist()]),
        capture_output=True,
        text=True,
        check=True,
        cwd=out_dir.parent,
    )
    return np.array(json.loads(done.stdout.strip().splitlines()[-1]))


def check_export(run_dir, marketplaces, name, out_dir):
    info = export(run_dir, name, out_dir)
    test = marketplaces[name].test
    ex = prepare(run_dir, name)
    ours = frkit_logits(ex.frkit_model, ex.tokenizer, test, ex.head, ex.cfg.max_length)
    theirs = plain_hf_logits(out_dir, test)
    diff = np.abs(ours - theirs).max()
    assert diff <= 1e-5, diff
    # AUC identical to the one the run recorded for this marketplace after its last step
    row = json.loads((Path(run_dir) / "progress.json").read_text())["steps"][-1]["auc_row"]
    names = list(ex.record.params["marketplaces"])
    auc = roc_auc_score(test["label"], theirs[:, 1] - theirs[:, 0])
    assert auc == pytest.approx(row[names.index(name)], abs=1e-12)
    assert info["max_abs_logit_diff"] <= 1e-5
    return info, theirs


@pytest.mark.parametrize("method", ["sequential", "ewc"])
def test_full_model_method_exports_with_frkit_logits(tmp_path, tiny_params, method):
    run_dir, markets = train(tiny_params, method)
    info, _ = check_export(run_dir, markets, "en", tmp_path / "export_en")  # en: the older marketplace's head
    config = json.loads((tmp_path / "export_en" / "config.json").read_text())
    assert config["architectures"] == ["BertForSequenceClassification"]
    assert config["id2label"] == {"0": "not relevant", "1": "relevant"}
    assert {p.name for p in (tmp_path / "export_en").iterdir()} >= {
        "README.md",
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "frkit_export.json",
    }
    card = (tmp_path / "export_en" / "README.md").read_text()
    for needed in (f"`{method}`", "en -> es", "kit revision", "| en | es |", "max_length: 32"):
        assert needed in card, needed
    assert not info["merged"]


@pytest.mark.parametrize("method", ["lora", "fr_lora", "fr_dora"])
def test_lora_and_dora_methods_export_merged(tmp_path, tiny_params, method):
    run_dir, markets = train(tiny_params, method)
    for name in ("en", "es"):  # each marketplace's own adapter and head
        info, _ = check_export(run_dir, markets, name, tmp_path / f"export_{name}")
        assert info["merged"]
    from safetensors import safe_open

    with safe_open(str(tmp_path / "export_es" / "model.safetensors"), "pt") as f:
        keys = list(f.keys())
    assert not [k for k in keys if "lora" in k], "peft layers left in the weights"


def test_sentence_transformers_cross_encoder_loads_it(tmp_path, tiny_params):
    st = pytest.importorskip("sentence_transformers", reason="sentence-transformers not installed (test extra)")
    run_dir, markets = train(tiny_params, "fr_lora")
    _, theirs = check_export(run_dir, markets, "es", tmp_path / "out")
    test = markets["es"].test
    encoder = st.CrossEncoder(str(tmp_path / "out"), device="cpu")
    got = np.asarray(encoder.predict(list(zip(test["text_a"], test["text_b"])), batch_size=8))
    assert got.shape == (len(test), 2)
    assert np.abs(got - theirs).max() <= 1e-5


def test_onnx_export_matches_onnxruntime(tmp_path, tiny_params):
    pytest.importorskip("onnx", reason="onnx not installed (pip install -e '.[onnx]')")
    ort = pytest.importorskip("onnxruntime", reason="onnxruntime not installed (pip install -e '.[onnx]')")
    run_dir, markets = train(tiny_params, "lora")
    out = tmp_path / "out"
    assert main(["export", str(run_dir), str(out), "--marketplace", "es", "--onnx"]) == 0
    info = json.loads((out / "frkit_export.json").read_text())
    assert (out / "onnx" / "model.onnx").is_file()
    from transformers import AutoTokenizer

    from frkit.export import onnx_logits

    test = markets["es"].test
    hf = plain_hf_logits(out, test)
    got = onnx_logits(out / "onnx" / "model.onnx", AutoTokenizer.from_pretrained(out), test)
    assert np.abs(got - hf).max() <= 1e-4
    assert info["onnx"]["onnxruntime_max_abs_logit_diff"] <= 1e-4
    assert ort.get_device()  # the session ran on onnxruntime


@pytest.mark.parametrize("method", sorted(REFUSED))
def test_non_plain_methods_are_refused_before_anything_is_loaded(tmp_path, method):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "params.yaml").write_text(f"method: {method}\nmarketplaces: [en, es]\n")
    with pytest.raises(FrkitInputError, match=f"method '{method}' cannot be exported") as err:
        export(run_dir, "en", tmp_path / "out")
    assert "\n" not in str(err.value)
    assert not (tmp_path / "out").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["run"]  # no temp folder left either


def test_cli_refusals_are_one_line(tmp_path, tiny_params, capsys):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "params.yaml").write_text("method: hat\nmarketplaces: [en, es]\n")
    assert main(["export", str(run_dir), str(tmp_path / "out"), "--marketplace", "en"]) == 2
    assert capsys.readouterr().err.count("\n") == 1
    (run_dir / "params.yaml").write_text("method: sequential\npooling: mean\nmarketplaces: [en, es]\n")
    with pytest.raises(FrkitInputError, match="pooling 'mean'"):
        export(run_dir, "en", tmp_path / "out")
    (run_dir / "params.yaml").write_text("method: sequential\nmarketplaces: [en, es]\n")
    with pytest.raises(FrkitInputError, match="'ja' is not one of the run's marketplaces"):
        export(run_dir, "ja", tmp_path / "out")


def test_existing_output_is_kept_unless_overwrite_and_never_half_written(tmp_path, tiny_params, monkeypatch):
    run_dir, markets = train(tiny_params, "sequential")
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(FrkitInputError, match="exists and is not empty"):
        export(run_dir, "es", out)
    assert (out / "keep.txt").read_text() == "mine"
    # a failure while writing (here: the parity check) leaves the old folder as it was and no temp folder
    import frkit.export.folder as ex  # where export() reads it (patching the package's re-export would not reach it)

    monkeypatch.setattr(ex, "PARITY_TOLERANCE", -1.0)
    with pytest.raises(FrkitInputError, match="logits differ"):
        export(run_dir, "es", out, overwrite=True)
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []
    monkeypatch.undo()
    export(run_dir, "es", out, overwrite=True)
    assert not (out / "keep.txt").exists() and (out / "model.safetensors").is_file()


def test_the_head_maps_through_the_pooler_exactly():
    """The pooler trick itself: torch's fp32 tanh is the identity on EPS * h for |h| <= 256 (hidden states of a
    LayerNorm-ed encoder), and within 1e-7 relative beyond."""
    import torch

    h = torch.linspace(-256, 256, 200_001)
    assert torch.equal(torch.tanh(h * EPS), h * EPS)
    wide = torch.linspace(-1000, 1000, 200_001) * EPS
    assert ((torch.tanh(wide) - wide).abs() <= 1e-6 * wide.abs()).all()
