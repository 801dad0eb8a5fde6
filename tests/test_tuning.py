"""Fair tuning (issue 29, item 3): the same budget of settings per family, chosen on validation AUC of seeds the
comparison does not use (never test AUC), written to chosen.yaml and read back by the sweep, rows' own values kept."""

import json

import pytest
import yaml

from frkit.cli import main
from frkit.errors import FrkitInputError
from frkit.records.checksums import write_manifest
from frkit.sweep import load_sweep, run_sweep
from frkit.sweep.tune import choose, settings, tuning_sweep


def write(tmp_path, params, tuning, runs=None):
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(params))
    sweep = {
        "base": "base.yaml",
        "name": "cmp",
        "seeds": [0, 1],
        "results": str(tmp_path / "results"),
        "tuning": {"results": str(tmp_path / "tuning"), **tuning},
        "runs": runs
        or {
            "sequential": {"method": "sequential"},
            "fr_lora": {"method": "fr_lora"},
            "fr_lora_beta0": {"method": "fr_lora", "beta": 0.0},
        },
    }
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(sweep))
    return path


def test_every_family_gets_the_same_budget_centred_on_its_own_values(tmp_path, tiny_params):
    path = write(tmp_path, tiny_params(stage2_lr=0.01, beta=1e-3), {"seeds": [9], "budget": 3})
    sweep = load_sweep(path, tuned=False)
    seq = settings(sweep, "sequential", "sequential")
    assert sorted(s["lr"] for s in seq) == [3.3e-4, 1e-3, 3e-3]  # lr-only: the whole grid fits the budget
    assert seq[0] == {"lr": 1e-3}  # the centre first: the sweep's own value
    fr = settings(sweep, "fr_lora", "fr_lora")
    assert len(fr) == len(seq) == 3 and fr[0] == {"stage2_lr": 0.01, "beta": 1e-3}
    grid = {(lr, b) for lr in (0.0033, 0.01, 0.03) for b in (1e-4, 1e-3, 1e-2)}
    assert {(s["stage2_lr"], s["beta"]) for s in fr} <= grid and len({tuple(s.items()) for s in fr}) == 3
    assert settings(load_sweep(path, tuned=False), "fr_lora", "fr_lora") == fr  # seeded: the same sample each time
    # one tuning sweep run per setting and tuning seed, on the first order, scoring validation
    tuned = tuning_sweep(sweep)
    assert len(tuned.configs) == 6 and {k.seed for k in tuned.configs} == {9}
    assert all(cfg.evaluate_validation for cfg in tuned.configs.values())


@pytest.mark.parametrize(
    "tuning, runs, match",
    [
        ({"seeds": [1]}, None, r"tuning: seeds \[1\] are also the comparison's seeds"),
        ({"seeds": [9], "lr_factors": [0.5, 2]}, None, r"lr_factors must be a list of positive numbers holding 1"),
        ({"seeds": [9], "budget": 0}, None, r"budget must be a whole number >= 1"),
        ({"seeds": [9], "grid": 3}, None, r"tuning: unknown key\(s\) \['grid'\]"),
    ],
)
def test_bad_tuning_blocks_are_named(tmp_path, tiny_params, tuning, runs, match):
    with pytest.raises(FrkitInputError, match=match):
        load_sweep(write(tmp_path, tiny_params(), tuning, runs))


def test_a_representative_that_sets_a_tuned_key_is_refused(tmp_path, tiny_params):
    path = write(tmp_path, tiny_params(), {"seeds": [9]}, {"sequential": {"method": "sequential", "lr": 0.01}})
    with pytest.raises(FrkitInputError, match=r"run 'sequential'.*sets 'lr', which tuning chooses"):
        tuning_sweep(load_sweep(path, tuned=False))


def test_tune_chooses_on_validation_and_the_sweep_reads_it(tmp_path, tiny_params):
    path = write(tmp_path, tiny_params(epochs=1), {"seeds": [9], "budget": 2, "lr_factors": [1, 3]})
    with pytest.raises(FrkitInputError, match=r"run `frkit tune .*sweep.yaml`"):
        run_sweep(path)  # the comparison waits for its tuning
    assert main(["tune", str(path)]) == 0
    sweep, tuned = load_sweep(path, tuned=False), None
    tuned = tuning_sweep(sweep)
    # brute force: the chosen setting of each family has the best mean validation AUC of its tried settings
    scores = {}
    for key in tuned.configs:
        metrics = json.loads((tuned.result_folder(key) / "metrics.json").read_text())
        assert 0 <= metrics["average_validation_auc"] <= 1
        scores[key.label] = metrics["average_validation_auc"]
    chosen = yaml.safe_load((tmp_path / "tuning" / "chosen.yaml").read_text())
    for family, label in (("sequential", "sequential"), ("fr_lora", "fr_lora")):
        tried = {k: v for k, v in scores.items() if k.startswith(label + "@")}
        best = max(tried, key=lambda k: (tried[k], k == list(tried)[0]))
        setting = {kv.split("=")[0]: float(kv.split("=")[1]) for kv in best.split("@")[1].split(",")}
        assert setting == chosen[family]
    # the comparison reads it: every fr_lora row gets the chosen Stage II rate, the ablation keeps beta 0
    cmp = load_sweep(path)
    assert cmp.tuned
    for key, cfg in cmp.configs.items():
        if key.label == "fr_lora":
            assert (cfg.stage2_lr, cfg.beta) == (chosen["fr_lora"]["stage2_lr"], chosen["fr_lora"]["beta"])
        if key.label == "fr_lora_beta0":
            assert cfg.beta == 0.0 and cfg.stage2_lr == chosen["fr_lora"]["stage2_lr"]
        if key.label == "sequential":
            assert cfg.lr == chosen["sequential"]["lr"]
    # test AUC is never read: scrambling every tuning run's test metrics leaves the choice as it was
    for key in tuned.configs:
        folder = tuned.result_folder(key)
        metrics = json.loads((folder / "metrics.json").read_text())
        metrics["average_auc"], metrics["final_auc"] = 1 - metrics["average_auc"], {}
        (folder / "metrics.json").write_text(json.dumps(metrics))
        write_manifest(folder)
    assert choose(sweep, tuned)[0] == chosen
