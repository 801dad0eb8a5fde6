"""`frkit pack`: one archive with the model and the data; a run pointed at the unpacked copy gives the same AUCs."""

import tarfile

import numpy as np
import pytest
import yaml

from frkit.cli import main
from frkit.config import make_config
from frkit.errors import FrkitInputError
from frkit.pack import pack_bundle
from frkit.runner import run


def test_unpacked_bundle_reproduces_the_run(tmp_path, tiny_params):
    params = tiny_params(method="sequential", epochs=1)
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(params))
    bundle = tmp_path / "b.tar.xz"
    assert main(["pack", str(tmp_path / "p.yaml"), str(bundle)]) == 0
    with tarfile.open(bundle) as tar:
        names = tar.getnames()
        assert "model/config.json" in names and any(n.startswith("data/en/") for n in names)
        tar.extractall(tmp_path / "unpacked", filter="data")
    keys = pack_bundle(tmp_path / "p.yaml", tmp_path / "again.tar.xz")
    moved = {k: v.replace("DIR", str(tmp_path / "unpacked")) if isinstance(v, str) else v for k, v in keys.items()}
    original = run(make_config(params), show_progress=False)
    copy = run(make_config({**params, **moved, "run_name": "from_bundle"}), show_progress=False)
    np.testing.assert_allclose(
        np.array(copy.metrics["auc_matrix"], dtype=float),
        np.array(original.metrics["auc_matrix"], dtype=float),
        atol=1e-6,
    )
    assert not list(tmp_path.glob("*.partial"))


def test_pack_refuses_a_missing_data_folder_before_work(tmp_path, tiny_params):
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(tiny_params(data_path=str(tmp_path / "nowhere"))))
    with pytest.raises(FrkitInputError, match=r"key 'data_path'.*nowhere"):
        pack_bundle(tmp_path / "p.yaml", tmp_path / "b.tar.xz")
    assert not (tmp_path / "b.tar.xz").exists()
