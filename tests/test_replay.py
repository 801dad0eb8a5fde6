"""Experience Replay: the buffer's size (a fraction, or the old count) and balance, and replayed batches train the
encoder with their own head."""

import json
import math

import pytest
import torch

from frkit.config import make_config, read_params
from frkit.methods import METHODS
from frkit.methods.base import MethodContext
from frkit.methods.replay import ESCI_SMALL_TRAIN_ROWS, PAPER_REPLAY_FRACTION, buffer_rows
from frkit.models.encoder import load_tokenizer
from frkit.records import params_changes, with_legacy_values
from frkit.runner import load_configured_marketplaces, run


def _method(tiny_params, **kw):
    cfg = make_config(tiny_params(method="replay", epochs=1, **kw))
    ms = load_configured_marketplaces(cfg)
    ctx = MethodContext(cfg, cfg.model_name_or_path, load_tokenizer(cfg.model_name_or_path), show_progress=False)
    return METHODS["replay"](cfg, ctx), ms


def test_buffer_is_a_stratified_seeded_sample_of_each_older_marketplace(tiny_params):
    method, ms = _method(tiny_params, replay_fraction=None, replay_samples=10)
    memory = method.memory(ms)
    assert list(memory) == ["en", "es"]  # the newest marketplace is not in its own buffer
    for name, rows in memory.items():
        train = next(m.train for m in ms if m.name == name)
        assert len(rows) == 10 and set(rows["id"]) <= set(train["id"])
        assert abs(rows["label"].mean() - train["label"].mean()) <= 0.1  # label balance kept
    again = method.memory(ms)
    assert all(again[k]["id"].tolist() == memory[k]["id"].tolist() for k in memory)  # rebuilt identically on resume


def test_replayed_batches_use_their_own_head(tiny_params, monkeypatch):
    method, ms = _method(tiny_params, replay_fraction=None, replay_samples=12, batch_size=4)
    method.learn(0, ms[0], ms[:1])
    en_head = method.model.heads["en"].weight.detach().clone()
    heads_used = []
    real = method.model.forward

    def spy(*args, head, **kwargs):
        heads_used.append(head)
        return real(*args, head=head, **kwargs)

    monkeypatch.setattr(method.model, "forward", spy)
    log = method.learn(1, ms[1], ms[:2])
    assert log["replayed_rows"] == {"en": 12}
    assert heads_used.count("en") == math.ceil(12 / 4) * log["epochs_run"]  # every buffered batch, once an epoch
    assert "es" in heads_used
    assert not torch.equal(en_head, method.model.heads["en"].weight)  # the old head trains on its replayed rows


def test_buffer_rows_is_a_fraction_rounded_and_at_least_one():
    assert buffer_rows(400, 0.5, 7) == 200  # the 50% variant of params/stsb.yaml's 400 rows
    assert buffer_rows(400, PAPER_REPLAY_FRACTION, 7) == 15  # the paper's proportion there
    assert buffer_rows(10, 0.01, 7) == 1  # a buffered marketplace keeps a row
    assert buffer_rows(400, None, 7) == 7  # null: the fixed count, what the kit did before replay_fraction


def test_paper_fraction_derivation():
    # FR-LoRA Tables 1-2's "Buffer = 10000" over the Shopping Queries reduced training sets (us, es, jp)
    assert sum(ESCI_SMALL_TRAIN_ROWS.values()) == 781_638
    assert PAPER_REPLAY_FRACTION == pytest.approx(10_000 / (781_638 / 3), abs=5e-5) and PAPER_REPLAY_FRACTION == 0.0384
    assert make_config({"method": "replay"}).replay_fraction == PAPER_REPLAY_FRACTION  # the default


def test_buffer_keeps_the_fraction_of_each_old_marketplace_and_half_is_the_old_200_of_400(tiny_params):
    method, ms = _method(tiny_params, replay_fraction=0.25)
    for name, rows in method.memory(ms).items():
        train = next(m.train for m in ms if m.name == name)
        assert len(rows) == round(0.25 * len(train)) and set(rows["id"]) <= set(train["id"])
    half, _ = _method(tiny_params, replay_fraction=0.5)
    n = round(0.5 * len(ms[0].train))
    old, _ = _method(tiny_params, replay_fraction=None, replay_samples=n)
    new_rows, old_rows = half.memory(ms), old.memory(ms)
    assert all(new_rows[k]["id"].tolist() == old_rows[k]["id"].tolist() for k in old_rows)  # the very same rows


def test_replay_fraction_through_the_runner(tiny_params):
    cfg = make_config(tiny_params(method="replay", epochs=1, marketplaces=["en", "es"], replay_fraction=0.1))
    result = run(cfg, show_progress=False)
    log = json.loads((result.run_dir / "progress.json").read_text())["steps"][1]
    train_en = len(load_configured_marketplaces(cfg)[0].train)
    assert log["replayed_rows"] == {"en": round(0.1 * train_en)}


def test_an_old_run_without_the_key_is_read_as_the_old_buffer():
    saved = {"method": "replay", "replay_samples": 200}  # a run folder's params from before replay_fraction
    assert with_legacy_values(saved)["replay_fraction"] is None
    now = make_config(read_params("params/stsb.yaml"), method="replay").model_dump()
    assert now["replay_fraction"] is None  # params/stsb.yaml keeps the committed comparison's 200 rows
    assert "replay_fraction" not in params_changes({k: v for k, v in now.items() if k != "replay_fraction"}, now)
