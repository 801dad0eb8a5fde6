"""Experience Replay: the buffer's size and balance, and replayed batches train the encoder with their own head."""
import math

import torch

from frkit.config import make_config
from frkit.methods import METHODS
from frkit.methods.base import MethodContext
from frkit.models.encoder import load_tokenizer
from frkit.runner import load_configured_marketplaces


def _method(tiny_params, **kw):
    cfg = make_config(tiny_params(method="replay", epochs=1, **kw))
    ms = load_configured_marketplaces(cfg)
    ctx = MethodContext(cfg, cfg.model_name_or_path, load_tokenizer(cfg.model_name_or_path), show_progress=False)
    return METHODS["replay"](cfg, ctx), ms


def test_buffer_is_a_stratified_seeded_sample_of_each_older_marketplace(tiny_params):
    method, ms = _method(tiny_params, replay_samples=10)
    memory = method.memory(ms)
    assert list(memory) == ["en", "es"]  # the newest marketplace is not in its own buffer
    for name, rows in memory.items():
        train = next(m.train for m in ms if m.name == name)
        assert len(rows) == 10 and set(rows["id"]) <= set(train["id"])
        assert abs(rows["label"].mean() - train["label"].mean()) <= 0.1  # label balance kept
    again = method.memory(ms)
    assert all(again[k]["id"].tolist() == memory[k]["id"].tolist() for k in memory)  # rebuilt identically on resume


def test_replayed_batches_use_their_own_head(tiny_params, monkeypatch):
    method, ms = _method(tiny_params, replay_samples=12, batch_size=4)
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
