"""``params_changes``: the one rule by which resume, sweep and recheck compare a run's saved parameters with the ones
asked for now (frkit/records/params.py)."""

from __future__ import annotations

from frkit.records import LEGACY_VALUES, RESUME_FREE_KEYS, describe_changes, params_changes, with_legacy_values


def now(**params) -> dict:
    """Params as a run asks for them now: every key, the legacy-valued ones too (a config dump has them all)."""
    return {**LEGACY_VALUES, **params}


def test_equal_params_have_no_changes():
    assert params_changes({"lr": 0.001, "seed": 0}, now(lr=0.001, seed=0)) == {}


def test_a_changed_value_is_named_with_both_values_in_key_order():
    changes = params_changes({"seed": 0, "lr": 0.001, "epochs": 2}, now(seed=1, lr=0.5, epochs=2))
    assert changes == {"lr": (0.001, 0.5), "seed": (0, 1)}
    assert list(changes) == ["lr", "seed"]
    assert describe_changes(changes) == "lr: 0.001 -> 0.5, seed: 0 -> 1"
    assert describe_changes(changes, limit=1) == "lr: 0.001 -> 0.5"


def test_a_key_on_one_side_only_is_a_change():
    assert params_changes({"lr": 1}, now(lr=1, new="x")) == {"new": (None, "x")}
    assert params_changes({"lr": 1, "gone": 3}, now(lr=1)) == {"gone": (3, None)}
    assert params_changes({"lr": 1}, {"lr": 1}) == {
        k: (v, None) for k, v in sorted(LEGACY_VALUES.items()) if v is not None
    }
    assert describe_changes({"new": (None, "x")}) == "new: None -> 'x'"


def test_resume_free_keys_never_count():
    assert {"resume", "output_dir", "run_name"} <= RESUME_FREE_KEYS
    saved = {"lr": 1, "resume": True, "output_dir": "a", "run_name": "r"}
    assert params_changes(saved, now(lr=1, resume=False, output_dir="b")) == {}
    assert params_changes({"lr": 1}, now(lr=1, run_name="x"), {"run_name": "tiny"}) == {}


def test_a_key_the_saved_params_lack_is_filled_with_its_default():
    defaults = {"lr": 0.001, "weight_decay": 0.01}
    assert params_changes({"lr": 0.001}, now(lr=0.001, weight_decay=0.01), defaults) == {}
    assert params_changes({"lr": 0.001}, now(lr=0.001, weight_decay=0.5), defaults) == {"weight_decay": (0.01, 0.5)}
    # without defaults, the missing key is a change
    assert params_changes({"lr": 0.001}, now(lr=0.001, weight_decay=0.01)) == {"weight_decay": (None, 0.01)}
    # a saved value wins over the default
    changes = params_changes({"weight_decay": 0.2}, now(lr=0.001, weight_decay=0.01), defaults)
    assert changes == {"weight_decay": (0.2, 0.01)}


def test_a_legacy_value_wins_over_the_default_for_a_key_the_saved_params_lack():
    assert {"parallel_pairs": "shared", "length_batching": False}.items() <= LEGACY_VALUES.items()
    defaults = {"parallel_pairs": "disjoint", "length_batching": True, "lr": 0.001}
    old_run = {"lr": 0.001}  # made before parallel_pairs and length_batching existed
    now_default = now(lr=0.001, parallel_pairs="disjoint", length_batching=True)
    assert params_changes(old_run, now_default, defaults) == {
        "length_batching": (False, True),
        "parallel_pairs": ("shared", "disjoint"),
    }
    assert params_changes(old_run, now(lr=0.001), defaults) == {}
    # recorded: the saved value counts, not the legacy one
    assert (
        params_changes({**old_run, "parallel_pairs": "disjoint"}, now(lr=0.001, parallel_pairs="disjoint"), defaults)
        == {}
    )


def test_with_legacy_values_fills_only_missing_keys():
    assert with_legacy_values({"lr": 1}) == {"lr": 1, **LEGACY_VALUES}
    assert with_legacy_values({"length_batching": True})["length_batching"] is True
    assert with_legacy_values({}, {"lr": 2, "parallel_pairs": "disjoint"}) == {"lr": 2, **LEGACY_VALUES}


def test_run_folder_check_uses_the_same_rule(tmp_path):
    import pytest
    import yaml

    from frkit.errors import FrkitInputError
    from frkit.records import RunFolder

    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"lr": 0.001, "seed": 0, "run_name": "a"}))
    folder = RunFolder(tmp_path)
    folder.check(now(lr=0.001, seed=0, run_name="b"), resume=True)
    with pytest.raises(FrkitInputError, match=r"other parameters \(lr: 0\.001 -> 0\.5, weight_decay: 0\.01 -> 0\.2\)"):
        folder.check(now(lr=0.5, seed=0, weight_decay=0.2), resume=True, defaults={"weight_decay": 0.01})
