"""Batches from several tables in one seeded shuffled stream, each batch tagged with its source.

Attention Distillation trains on batches of the new language (task loss) and batches translated into
older languages (distillation loss); the loss function reads ``batch["source"]`` to tell them apart.
"""

from __future__ import annotations

import random

import torch


class TaggedBatches:
    """Iterates over every batch of every loader once per epoch, in a seeded shuffled order.

    ``loaders``: {tag: DataLoader}. Each yielded batch is the loader's dict plus ``source`` (the tag),
    moved to ``device``. The order changes every epoch but is the same for a given seed.
    """

    def __init__(self, loaders: dict, seed: int, device: torch.device | str = "cpu"):
        self.loaders = loaders
        self.seed = seed
        self.device = torch.device(device)
        self.epoch = 0

    def __len__(self) -> int:
        return sum(len(loader) for loader in self.loaders.values())

    def __iter__(self):
        order = [tag for tag, loader in self.loaders.items() for _ in range(len(loader))]
        random.Random(self.seed + self.epoch).shuffle(order)
        self.epoch += 1
        iterators = {tag: iter(loader) for tag, loader in self.loaders.items()}
        for tag in order:
            batch = {k: v.to(self.device) for k, v in next(iterators[tag]).items()}
            batch["source"] = tag
            yield batch
