"""MagMax (FR-LoRA Table 1's merging baseline): the merge against a brute-force loop, and the method's scoring model."""

import pytest
import torch

from frkit.config import make_config
from frkit.core.merging import apply_task_vector, max_magnitude, task_vector
from frkit.methods import METHODS
from frkit.methods.base import MethodContext
from frkit.models.encoder import load_tokenizer
from frkit.runner import load_configured_marketplaces


def test_incremental_max_magnitude_equals_the_entrywise_argmax_over_all_tasks():
    g = torch.Generator().manual_seed(0)
    taus = [{"w": torch.randn(4, 5, generator=g), "b": torch.randn(3, generator=g)} for _ in range(4)]
    merged = None
    for tau in taus:
        merged = max_magnitude(merged, tau)
    for key in ("w", "b"):
        flat = [t[key].flatten() for t in taus]
        expected = []
        for i in range(flat[0].numel()):  # brute force: per entry, the first task of largest |value|
            values = [f[i].item() for f in flat]
            best = max(range(len(values)), key=lambda k: (abs(values[k]), -k))
            expected.append(values[best])
        torch.testing.assert_close(merged[key].flatten(), torch.tensor(expected), rtol=0, atol=0)


def test_task_vector_and_its_application_round_trip():
    pre = {"w": torch.randn(3, 3), "ids": torch.arange(3)}
    fine = {"w": pre["w"] + 2.0, "ids": torch.arange(3)}
    tau = task_vector(fine, pre)
    assert set(tau) == {"w"}  # integer buffers carry no update
    out = apply_task_vector(pre, tau, scale=0.5)
    torch.testing.assert_close(out["w"], pre["w"] + 1.0)
    assert torch.equal(out["ids"], pre["ids"])
    with pytest.raises(ValueError, match="differ in keys"):
        task_vector({"w": fine["w"]}, pre)


@pytest.mark.parametrize("finetuning", ["sequential", "independent"])
def test_magmax_scores_with_the_merged_encoder(tiny_params, finetuning):
    cfg = make_config(tiny_params(method="magmax", epochs=1, merge_finetuning=finetuning, magmax_scale=0.5))
    ms = load_configured_marketplaces(cfg)
    ctx = MethodContext(cfg, cfg.model_name_or_path, load_tokenizer(cfg.model_name_or_path), show_progress=False)
    method = METHODS["magmax"](cfg, ctx)
    starts, real_train = [], method.train

    def train(model, *args, **kw):
        starts.append({k: v.clone() for k, v in model.encoder.state_dict().items()})
        return real_train(model, *args, **kw)

    method.train = train
    thetas = []
    for k in range(2):
        method.learn(k, ms[k], ms[: k + 1])
        thetas.append({k: v.clone() for k, v in method.model.encoder.state_dict().items()})
    pre = method.pretrained
    start_of_second = starts[1]["embeddings.word_embeddings.weight"]
    expected_start = (pre if finetuning == "independent" else thetas[0])["embeddings.word_embeddings.weight"]
    torch.testing.assert_close(start_of_second, expected_start, rtol=0, atol=0)
    # scoring encoder = theta_0 + 0.5 * entry-wise max-magnitude of the two task vectors
    key = "encoder.layer.0.attention.self.query.weight"
    t1, t2 = thetas[0][key] - pre[key], thetas[1][key] - pre[key]
    merged = torch.where(t2.abs() > t1.abs(), t2, t1)
    model, head = method.model_for("en")
    assert head == "en" and model.heads is method.model.heads
    torch.testing.assert_close(model.encoder.state_dict()[key], pre[key] + 0.5 * merged, rtol=0, atol=1e-6)


def test_opcm_clean_matches_the_explicit_sum_over_singular_pairs():
    g = torch.Generator().manual_seed(1)
    merged, tau, alpha = torch.randn(4, 6, generator=g), torch.randn(4, 6, generator=g), 0.5
    from frkit.core.merging import opcm_clean

    u, s, vh = torch.linalg.svd(merged, full_matrices=True)
    share = (s.cumsum(0) / s.sum()).tolist()
    split = next(i for i, c in enumerate(share) if c > alpha)
    expected = tau.clone()
    for i in range(4):  # brute force: subtract tau's coefficient on every removed pair u_i v_j^T
        for j in range(6):
            if i == j or (i < split and j < split):
                coefficient = (u[:, i] @ tau @ vh[j]).item()
                expected -= coefficient * torch.outer(u[:, i], vh[j])
    torch.testing.assert_close(opcm_clean(merged, tau, alpha), expected, rtol=1e-5, atol=1e-5)


def test_opcm_step_keeps_the_average_norm_and_adds_other_parameters_plainly():
    from frkit.core.merging import opcm_step, vector_norm

    g = torch.Generator().manual_seed(2)
    taus = [{"w": torch.randn(4, 4, generator=g), "b": torch.randn(4, generator=g) * (k + 1)} for k in range(3)]
    state, merged = {}, None
    for k, tau in enumerate(taus):
        previous, previous_lambda = merged, state.get("lambda")
        merged = opcm_step(merged, tau, state, alpha=0.5, projected={"w"})
        average = sum(vector_norm(t) for t in taus[: k + 1]) / (k + 1)
        assert vector_norm(merged) == pytest.approx(average, rel=1e-5)  # merged vector at the average norm
        if previous is not None:  # bias: lambda_{t-1} * merged + tau, over lambda_t
            torch.testing.assert_close(merged["b"], (previous_lambda * previous["b"] + tau["b"]) / state["lambda"])
    assert state["norms"] == pytest.approx([vector_norm(t) for t in taus])


def test_opcm_method_scores_with_the_merged_encoder_and_resumes_its_state(tiny_params, tmp_path):
    cfg = make_config(tiny_params(method="opcm", epochs=1))
    ms = load_configured_marketplaces(cfg)
    ctx = MethodContext(cfg, cfg.model_name_or_path, load_tokenizer(cfg.model_name_or_path), show_progress=False)
    method = METHODS["opcm"](cfg, ctx)
    for k in range(2):
        method.learn(k, ms[k], ms[: k + 1])
    assert len(method.merge_state["norms"]) == 2 and method.merge_state["lambda"] > 0
    key = "encoder.layer.0.attention.self.query.weight"
    model, _ = method.model_for("en")
    torch.testing.assert_close(model.encoder.state_dict()[key], method.pretrained[key] + method.merged_tau[key])
    method.save(tmp_path)
    again = METHODS["opcm"](cfg, ctx)
    again.load(tmp_path)
    assert again.merge_state == method.merge_state
    torch.testing.assert_close(again.model_for("en")[0].encoder.state_dict()[key], model.encoder.state_dict()[key])
