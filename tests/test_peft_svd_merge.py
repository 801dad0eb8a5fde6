"""peft's svd merge scales each adapter's Delta W once (issue 29, item 7).

peft before 0.21 multiplied the already scaled Delta W = s B A by the adapter's scaling s = alpha / r a second time
(``weight * target.scaling[adapter]`` on ``get_delta_weight``), so an svd merge of adapters whose alpha differs from
their rank was the SVD of sum w_i s_i^2 B_i A_i. pyproject.toml pins peft to the versions this test passes on; the
test builds a one-layer model, merges two adapters with ``add_weighted_adapter(combination_type="svd")`` and compares
the merged Delta W with a brute-force SVD of sum w_i s_i B_i A_i computed here from the factors and the configs. It
also runs the same merge with the double scaling patched in, to show that the comparison catches it.
"""

import torch
from peft import LoraConfig, get_peft_model

RANK = 2
ALPHAS = {"a": 8.0, "b": 2.0}  # scalings alpha / r = 4 and 1: a second scaling changes the merge
WEIGHTS = [0.7, 0.4]


class Tiny(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(8, 6)

    def forward(self, x):
        return self.lin(x)


def _two_adapter_model():
    torch.manual_seed(0)
    model = get_peft_model(Tiny(), LoraConfig(r=RANK, lora_alpha=ALPHAS["a"], target_modules=["lin"]), adapter_name="a")
    model.add_adapter("b", LoraConfig(r=RANK, lora_alpha=ALPHAS["b"], target_modules=["lin"]))
    layer = model.base_model.model.lin
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name in ALPHAS:  # B starts at zero in peft: random factors so that every Delta W is non-zero
            layer.lora_A[name].weight.copy_(torch.randn(layer.lora_A[name].weight.shape, generator=g))
            layer.lora_B[name].weight.copy_(torch.randn(layer.lora_B[name].weight.shape, generator=g))
    return model, layer


def _by_hand_delta(layer, name):
    """s B A with s = alpha / r from the config, not from peft's get_delta_weight."""
    return ALPHAS[name] / RANK * (layer.lora_B[name].weight @ layer.lora_A[name].weight).double()


def _rank_k(matrix, k):
    u, s, vh = torch.linalg.svd(matrix)
    return (u[:, :k] * s[:k]) @ vh[:k]


def _merge_error(model, layer):
    """Largest absolute gap between peft's merged Delta W and the rank-r SVD of sum w_i s_i B_i A_i; also the gap
    between that reference and the double-scaled one (sum w_i s_i^2 B_i A_i), the size of the bug."""
    model.add_weighted_adapter(list(ALPHAS), WEIGHTS, "merged", combination_type="svd", svd_rank=RANK)
    merged = layer.scaling["merged"] * (layer.lora_B["merged"].weight @ layer.lora_A["merged"].weight).double()
    summed = sum(w * _by_hand_delta(layer, n) for n, w in zip(ALPHAS, WEIGHTS))
    doubled = sum(w * ALPHAS[n] / RANK * _by_hand_delta(layer, n) for n, w in zip(ALPHAS, WEIGHTS))
    expected = _rank_k(summed, RANK)
    return float((merged - expected).abs().max()), float((_rank_k(doubled, RANK) - expected).abs().max())


def test_svd_merge_is_the_svd_of_the_once_scaled_weighted_sum():
    model, layer = _two_adapter_model()
    error, bug_size = _merge_error(model, layer)
    assert error < 1e-4
    assert bug_size > 1.0  # a double scaling would move the merge far beyond the tolerance


def test_the_comparison_fails_on_a_double_scaled_merge(monkeypatch):
    """peft < 0.21's bug, patched in: every Delta W the merge reads is scaled a second time."""
    model, layer = _two_adapter_model()
    cls = type(layer)
    once = cls.get_delta_weight

    def twice(self, adapter):
        return once(self, adapter) * self.scaling[adapter]

    monkeypatch.setattr(cls, "get_delta_weight", twice)
    error, _ = _merge_error(model, layer)
    assert error > 1.0, "a double-scaled svd merge must fail the comparison above"


def test_installed_peft_is_in_the_pinned_range():
    """The range of pyproject.toml: the versions these tests were run on (0.21.0 and 0.22.0 pass, 0.20.0 fails)."""
    import peft
    from packaging.version import Version

    assert Version("0.21") <= Version(peft.__version__) < Version("0.23"), peft.__version__
