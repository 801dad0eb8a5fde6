"""Precision: bf16 only where the hardware has it (detected), and the papers' math in fp32 under any autocast."""

import warnings

import numpy as np
import pytest
import torch

import frkit.precision as precision
from frkit.config import make_config
from frkit.core.fisher import diagonal_fisher
from frkit.core.penalties import fr_penalty
from frkit.errors import FrkitInputError
from frkit.runner import run


@pytest.fixture
def fast_bf16_cpu(monkeypatch):
    """Pretend the CPU has AVX512-BF16: bf16 autocast is correct everywhere, only slow without it."""
    monkeypatch.setattr(precision, "cpu_flags", lambda: frozenset({"avx2", "avx512_bf16"}))


@pytest.fixture
def plain_cpu(monkeypatch):
    monkeypatch.setattr(precision, "cpu_flags", lambda: frozenset({"avx2", "fma"}))


def test_auto_follows_the_cpu_flags(fast_bf16_cpu):
    assert precision.resolve_precision("auto", "cpu") == "bf16"
    assert precision.resolve_precision("fp32", "cpu") == "fp32"
    assert precision.resolve_precision("bf16", "cpu") == "bf16"


def test_forced_bf16_without_support_fails_saying_why(plain_cpu):
    assert precision.resolve_precision("auto", "cpu") == "fp32"
    with pytest.raises(
        FrkitInputError, match=r"key 'precision': bf16 was asked for, but .* neither AMX-BF16 nor AVX512-BF16"
    ):
        precision.resolve_precision("bf16", "cpu")


def test_forced_bf16_fails_before_the_run_folder_exists(plain_cpu, tiny_params, tmp_path):
    cfg = make_config(tiny_params(method="sequential", precision="bf16"))
    with pytest.raises(FrkitInputError, match="precision"):
        run(cfg, show_progress=False)
    assert not cfg.run_dir.exists()


def _tiny_classifier():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Tanh(), torch.nn.Linear(16, 2))


def test_fisher_and_penalty_stay_fp32_inside_bf16_autocast():
    model = _tiny_classifier()
    batch = {"x": torch.randn(24, 8), "labels": torch.arange(24) % 2}
    forward = lambda m, b: m(b["x"])  # noqa: E731
    reference = diagonal_fisher(model, [batch], forward)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no fall-back from the hooks engine ("hooks cannot see every use of ...")
        with torch.autocast("cpu", dtype=torch.bfloat16):
            under_autocast = diagonal_fisher(model, [batch], forward)
    for name, f in reference.items():
        assert under_autocast[name].dtype == torch.float32
        torch.testing.assert_close(under_autocast[name], f, rtol=1e-5, atol=1e-9)
    delta = {"w": torch.randn(4, 4, requires_grad=True)}
    fisher = {"w": torch.rand(4, 4)}
    with torch.autocast("cpu", dtype=torch.bfloat16):
        inside = fr_penalty(delta, fisher, beta=1e-2, eps=1e-8)
    outside = fr_penalty(delta, fisher, beta=1e-2, eps=1e-8)
    assert inside.dtype == torch.float32
    torch.testing.assert_close(inside, outside, rtol=1e-6, atol=0)


@pytest.mark.parametrize("method", ["sequential", "fr_lora"])
def test_bf16_run_matches_fp32_within_tolerance(fast_bf16_cpu, tiny_params, method):
    """The same tiny run in fp32 and in bf16 autocast: AUCs within 0.1 (bf16 rounds every matmul of a few
    dozen updates), and the Fisher saved by FR-LoRA is fp32 and within 10% of the fp32 run's."""
    results = {}
    for p in ("fp32", "bf16"):
        cfg = make_config(tiny_params(method=method, precision=p, run_name=f"{method}_{p}", epochs=2))
        results[p] = run(cfg, show_progress=False)
    np.testing.assert_allclose(results["bf16"].auc_matrix, results["fp32"].auc_matrix, atol=0.1)
    assert np.isfinite(results["bf16"].auc_matrix[np.tril_indices(3)]).all()
    if method == "fr_lora":
        from frkit.records import RunFolder

        f32, b16 = (RunFolder(results[p].run_dir).load_artifact(0, "en", "fisher_qkv") for p in ("fp32", "bf16"))
        for name in f32:
            assert b16[name].dtype == torch.float32
            rel = (b16[name] - f32[name]).norm() / f32[name].norm()
            assert rel < 0.1, name
