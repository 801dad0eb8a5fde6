"""Tokenise pair tables and batch them with dynamic padding, grouped by length.

Padding is wasted work: a batch costs as much as its longest pair. Evaluation therefore sorts the rows by
token length before batching (every row carries ``row``, its position in the table, so scores go back
into table order), and training draws *length-bucketed* batches: a seeded shuffle, then within windows
of ``bucket_batches`` batches the rows are sorted by length and cut into batches, and the batches are
shuffled. Every row comes once per epoch, batches stay random in content, and a run with the same seed
draws the same batches (a resumed run replays exactly what it would have done).
"""

from __future__ import annotations

import pandas as pd
import torch
from torch.utils.data import BatchSampler, DataLoader, Dataset, RandomSampler, Sampler, SequentialSampler
from transformers import DataCollatorWithPadding

BUCKET_BATCHES = 50  # batches per sorting window: wide enough to group lengths, narrow enough to stay random


class PairDataset(Dataset):
    """(text_a, text_b, label) rows tokenised once as pairs, truncated to ``max_length``."""

    def __init__(self, table: pd.DataFrame, tokenizer, max_length: int):
        enc = tokenizer(table["text_a"].tolist(), table["text_b"].tolist(), truncation=True, max_length=max_length)
        self.features = [{k: enc[k][i] for k in enc.keys()} for i in range(len(table))]
        for row, (feat, label) in enumerate(zip(self.features, table["label"].astype(int).tolist())):
            feat["labels"] = label
            feat["row"] = row  # position in the table: scores of sorted batches go back by it
        self.lengths = [len(f["input_ids"]) for f in self.features]

    def __len__(self) -> int:
        return len(self.features)

    def __getitem__(self, i: int) -> dict:
        return self.features[i]


class SortedBatches(Sampler[list[int]]):
    """Evaluation: rows sorted by length (longest first, so the largest batch comes first), cut into batches."""

    def __init__(self, lengths: list[int], batch_size: int):
        order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
        self.batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self):
        return iter(self.batches)


class LengthBucketBatches(Sampler[list[int]]):
    """Training: seeded length-bucketed batches, every row once per epoch (module docstring).

    Each ``iter()`` is one epoch; epoch e draws from ``seed + e``, so the order is reproducible.
    """

    def __init__(self, lengths: list[int], batch_size: int, seed: int, bucket_batches: int = BUCKET_BATCHES):
        self.lengths = torch.as_tensor(lengths)
        self.batch_size = batch_size
        self.window = batch_size * bucket_batches
        self.seed = seed
        self.epoch = 0

    def __len__(self) -> int:
        full, rest = divmod(len(self.lengths), self.window)  # full windows hold window / batch_size batches
        return full * (self.window // self.batch_size) + -(-rest // self.batch_size)

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed + self.epoch)
        self.epoch += 1
        perm = torch.randperm(len(self.lengths), generator=g)
        batches = []
        for start in range(0, len(perm), self.window):
            chunk = perm[start : start + self.window]
            chunk = chunk[torch.argsort(self.lengths[chunk], stable=True)]
            batches += [chunk[i : i + self.batch_size].tolist() for i in range(0, len(chunk), self.batch_size)]
        for b in torch.randperm(len(batches), generator=g).tolist():
            yield batches[b]


def make_loader(
    table: pd.DataFrame,
    tokenizer,
    max_length: int,
    batch_size: int,
    shuffle: bool,
    seed: int = 0,
    length_batching: bool = True,
    dataset: PairDataset | None = None,
    shard: tuple[int, int] | None = None,
) -> DataLoader:
    """Batches of ``table``: shuffled (seeded) for training, in order for evaluation; grouped by length unless
    ``length_batching`` is off. ``dataset`` reuses an already tokenised table.

    ``shard=(rank, world)`` (a data-parallel launch): every process draws the same global batches and keeps
    batches rank, rank + world, ... (``frkit.distributed.ShardedBatches``); training pads the last round so
    every process runs the same number of steps, evaluation scores each row once (rows carry ``row``)."""
    dataset = dataset if dataset is not None else PairDataset(table, tokenizer, max_length)
    collate = DataCollatorWithPadding(tokenizer)
    shard = shard if shard is not None and shard[1] > 1 else None
    generator = torch.Generator().manual_seed(seed) if shuffle else None  # seeded: resumed runs replay the order
    if length_batching:
        generator = None  # the length samplers carry their own seed
        sampler = (
            LengthBucketBatches(dataset.lengths, batch_size, seed)
            if shuffle
            else SortedBatches(dataset.lengths, batch_size)
        )
    elif shard is None:
        return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, generator=generator, collate_fn=collate)
    else:  # the global batches one process draws (the DataLoader draws its worker seed from the generator first)
        rows = RandomSampler(dataset, generator=generator) if shuffle else SequentialSampler(dataset)
        sampler = BatchSampler(rows, batch_size, drop_last=False)
    if shard is not None:
        from frkit.distributed import ShardedBatches

        sampler = ShardedBatches(sampler, shard[0], shard[1], pad=shuffle)
    return DataLoader(dataset, batch_sampler=sampler, generator=generator, collate_fn=collate)


class TableLoaders:
    """A run's loaders: ``loaders(table, train, seed)``, each table tokenised once per run (the test sets are scored
    after every marketplace). ``shard=(rank, world)``: a data-parallel launch's share (``make_loader``)."""

    def __init__(
        self,
        tokenizer,
        max_length: int,
        batch_size: int,
        eval_batch_size: int,
        length_batching: bool = True,
        shard: tuple[int, int] | None = None,
    ):
        self.tokenizer, self.max_length = tokenizer, max_length
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size
        self.length_batching, self.shard = length_batching, shard
        self._datasets: dict[int, tuple[pd.DataFrame, PairDataset]] = {}

    @classmethod
    def from_config(cls, cfg, tokenizer, shard: tuple[int, int] | None = None) -> TableLoaders:
        return cls(tokenizer, cfg.max_length, cfg.batch_size, cfg.eval_batch_size, cfg.length_batching, shard)

    def __call__(self, table: pd.DataFrame, train: bool, seed: int = 0) -> DataLoader:
        size = self.batch_size if train else self.eval_batch_size
        return make_loader(
            table,
            self.tokenizer,
            self.max_length,
            size,
            shuffle=train,
            seed=seed,
            length_batching=self.length_batching,
            dataset=self.tokenised(table),
            shard=self.shard,
        )

    def tokenised(self, table: pd.DataFrame) -> PairDataset:
        key = id(table)
        hit = self._datasets.get(key)
        if hit is None or hit[0] is not table:  # ids are reused after a table is freed: check identity
            hit = (table, PairDataset(table, self.tokenizer, self.max_length))
            self._datasets[key] = hit
        return hit[1]
