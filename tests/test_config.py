"""The flat run configuration: defaults, validation messages, params files, notebook parameters cells."""

from pathlib import Path

import nbformat
import pytest

from frkit.config import load_params, make_config
from frkit.errors import FrkitInputError

ROOT = Path(__file__).resolve().parents[1]


def test_unknown_key_is_named_with_a_suggestion():
    with pytest.raises(FrkitInputError, match=r"unknown key 'lora_rnk'; did you mean 'lora_rank'"):
        make_config({"lora_rnk": 4})


def test_bad_value_names_key_and_value():
    with pytest.raises(FrkitInputError, match=r"key 'epochs'.*got 0"):
        make_config({"epochs": 0})
    with pytest.raises(FrkitInputError, match=r"key 'schedule'"):
        make_config({"schedule": "linear"})


def test_unknown_method_lists_the_registered_ones():
    with pytest.raises(FrkitInputError, match=r"unknown method 'nope'.*'lora'"):
        make_config({"method": "nope"})


def test_repeated_marketplace_is_refused():
    with pytest.raises(FrkitInputError, match="repeated"):
        make_config({"marketplaces": ["en", "en"]})


def test_params_file_errors_name_the_file(tmp_path):
    p = tmp_path / "x.yaml"
    p.write_text("lr: fast\n")
    with pytest.raises(FrkitInputError, match=r"(?s)x.yaml.*key 'lr'"):
        load_params(p)
    with pytest.raises(FrkitInputError, match="does not exist"):
        load_params(tmp_path / "missing.yaml")


def test_every_params_file_in_the_repo_is_valid():
    files = sorted((ROOT / "params").glob("*.yaml"))
    assert files
    for f in files:
        load_params(f)


RUN_NOTEBOOKS = [
    "01_data_prep.ipynb",
    "02_train.ipynb",
    "03_fisher_inspection.ipynb",
    "04_attention_scores.ipynb",
    "05_projection_analysis.ipynb",
]


@pytest.mark.parametrize("name", RUN_NOTEBOOKS)
def test_notebook_parameters_are_the_demo_and_a_few_keys(name, monkeypatch):
    """The committed parameters cell names the demo's params file (minutes on a laptop, real data) plus the keys a
    reader varies there: configuration keys, None (the params file's value) but for the method and run a notebook
    reads, never a dump of every default; run from notebooks/ (JupyterLab's kernel folder) it resolves to a valid
    config."""
    from frkit.config import config_class
    from frkit.notebook import config_from_namespace

    nb = nbformat.read(ROOT / "notebooks" / name, as_version=4)
    cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    namespace = {}
    exec(cell.source, namespace)
    values = {k: v for k, v in namespace.items() if not k.startswith("__")}
    assert values["params_file"] == "params/demo.yaml"
    declared = set(values) - {"params_file"}
    assert declared <= set(config_class().model_fields) and len(declared) <= 12  # no dump of every default
    assert all(v is None for k, v in values.items() if k not in ("params_file", "method", "run_name")), values
    monkeypatch.chdir(ROOT / "notebooks")
    monkeypatch.delenv("FRKIT_ROOT", raising=False)
    cfg = config_from_namespace(values)
    assert cfg.run_dir.parent == ROOT / "outputs"  # paths from the project root, not from notebooks/
    assert cfg.data_dir.is_relative_to(ROOT.parent)  # ../shared/data beside the checkout, wherever it lies
    if not cfg.data_dir.resolve().is_dir():
        pytest.skip(f"{cfg.data_dir.resolve()} is not on this machine (the checkout has no ../shared/data beside it)")


def test_notebooks_are_committed_without_outputs():
    for p in (ROOT / "notebooks").glob("*.ipynb"):
        nb = nbformat.read(p, as_version=4)
        assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), p.name


def test_reports_show_paths_from_the_project_root(monkeypatch, tmp_path):
    from frkit.paths import shown

    monkeypatch.setenv("FRKIT_ROOT", str(ROOT))
    assert shown(ROOT / "results" / "cpu_stsb") == "results/cpu_stsb"  # no machine's folders in a shared report
    assert shown(tmp_path / "elsewhere") == (tmp_path / "elsewhere").as_posix()  # outside the project: as given
