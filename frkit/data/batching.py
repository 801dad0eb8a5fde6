"""Tokenise pair tables and batch them with dynamic padding."""
from __future__ import annotations

import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset
from transformers import DataCollatorWithPadding


class PairDataset(Dataset):
    """(text_a, text_b, label) rows tokenised once as pairs, truncated to ``max_length``."""

    def __init__(self, table: pd.DataFrame, tokenizer, max_length: int):
        enc = tokenizer(
            table["text_a"].tolist(), table["text_b"].tolist(), truncation=True, max_length=max_length
        )
        self.features = [{k: enc[k][i] for k in enc.keys()} for i in range(len(table))]
        for feat, label in zip(self.features, table["label"].astype(int).tolist()):
            feat["labels"] = label

    def __len__(self) -> int:
        return len(self.features)

    def __getitem__(self, i: int) -> dict:
        return self.features[i]


def make_loader(table: pd.DataFrame, tokenizer, max_length: int, batch_size: int, shuffle: bool, seed: int = 0) -> DataLoader:
    generator = torch.Generator().manual_seed(seed) if shuffle else None  # seeded: resumed runs replay the same order
    return DataLoader(
        PairDataset(table, tokenizer, max_length),
        batch_size=batch_size,
        shuffle=shuffle,
        generator=generator,
        collate_fn=DataCollatorWithPadding(tokenizer),
    )
