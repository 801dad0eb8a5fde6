"""Length-grouped batches: every row once per epoch, reproducible by seed, scores back in table order."""

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import make_pairs

from frkit.data.batching import LengthBucketBatches, SortedBatches, make_loader
from frkit.models.cross_encoder import CrossEncoder
from frkit.train import predict_scores


def test_bucketed_epoch_holds_every_row_once_and_replays_by_seed():
    rng = np.random.default_rng(0)
    lengths = rng.integers(5, 80, size=1003).tolist()
    sampler = LengthBucketBatches(lengths, batch_size=16, seed=7, bucket_batches=10)
    epochs = [list(sampler) for _ in range(3)]
    for batches in epochs:
        rows = [i for b in batches for i in b]
        assert sorted(rows) == list(range(1003))  # every row exactly once
        assert len(batches) == len(sampler)
        assert all(1 <= len(b) <= 16 for b in batches)
    assert epochs[0] != epochs[1]  # a new order every epoch
    again = LengthBucketBatches(lengths, batch_size=16, seed=7, bucket_batches=10)
    assert list(again) == epochs[0] and list(again) == epochs[1]  # a resumed run replays the same batches
    # grouped by length: far less padding than random batches of the same size
    padded = sum(len(b) * max(lengths[i] for i in b) for b in epochs[0])
    perm = rng.permutation(1003)
    random_padded = sum(16 * max(lengths[i] for i in perm[s : s + 16]) for s in range(0, 1003, 16))
    assert padded < 0.8 * random_padded


def test_sorted_batches_longest_first():
    lengths = [3, 9, 1, 9, 4]
    assert list(SortedBatches(lengths, 2)) == [[1, 3], [4, 0], [2]]


@pytest.mark.parametrize("length_batching", [True, False])
def test_scores_come_back_in_table_order(tiny_model_dir, length_batching):
    from frkit.models.encoder import load_encoder, load_tokenizer

    tok = load_tokenizer(tiny_model_dir)
    rows = make_pairs("en", 37, seed=3)
    # pairs of very different lengths, so sorting really reorders them
    table = pd.DataFrame(
        [(i, " ".join([a] * (1 + int(i) % 4)), b, y) for i, a, b, y in rows],
        columns=["id", "text_a", "text_b", "label"],
    )
    torch.manual_seed(0)
    encoder = load_encoder(tiny_model_dir)
    model = CrossEncoder(encoder, encoder.config.hidden_size)
    model.add_head("h")
    plain = make_loader(table, tok, 64, 5, shuffle=False, length_batching=False)
    loader = make_loader(table, tok, 64, 5, shuffle=False, length_batching=length_batching)
    expected = torch.cat([torch.softmax(model(**b, head="h"), -1)[:, 1] for b in plain]).detach().numpy()
    np.testing.assert_allclose(predict_scores(model, loader, "h", "fp32"), expected, rtol=1e-5, atol=1e-6)
