"""The small protocol every continual-learning method follows, and what the runner hands it.

learn(step, marketplace, seen)  -- train on this marketplace (its data alone; only ``joint`` reads ``seen``)
model_for(name) -> (model, head) -- the model and head that score marketplace ``name``
save(folder) / load(folder)     -- everything needed to resume after this marketplace
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd
import torch
from pydantic import BaseModel
from safetensors.torch import load_file
from torch import nn

from frkit import atomic, distributed
from frkit.data.batching import TableLoaders
from frkit.data.marketplace import Marketplace
from frkit.data.mixed import TaggedBatches
from frkit.models.cross_encoder import CrossEncoder, fresh_cross_encoder, fresh_encoder
from frkit.models.encoder import load_encoder
from frkit.train import FitResult, LossFn, TrainSettings, cross_entropy_loss, fit, predict_scores, roc_auc


@dataclass
class MethodContext:
    """What the runner gives a method: configuration, tokenizer and a way to get a fresh base encoder.

    ``base_encoder`` and ``loaders``: the runner passes those it loaded and made itself (the base encoder is loaded
    before the run folder is written, so a broken weight file is named before anything is written); left out, they
    are made here on first use."""

    cfg: object
    model_source: Path
    tokenizer: object
    show_progress: bool = True
    base_encoder: nn.Module | None = field(default=None, repr=False)
    loaders: TableLoaders | None = field(default=None, repr=False)

    def __post_init__(self):
        if self.loaders is None:
            self.loaders = TableLoaders.from_config(
                self.cfg, self.tokenizer, shard=(distributed.rank(), distributed.world_size())
            )

    @property
    def device(self) -> torch.device:
        return distributed.device()

    def load_base(self) -> nn.Module:
        """The base encoder, loaded from disk once."""
        if self.base_encoder is None:
            self.base_encoder = load_encoder(self.model_source)
        return self.base_encoder

    def new_encoder(self) -> nn.Module:
        """A fresh copy of the base encoder (loaded from disk once, then copied in memory)."""
        return fresh_encoder(self.load_base(), self.device)

    def new_model(self) -> CrossEncoder:
        return fresh_cross_encoder(self.load_base(), self.cfg.pooling, self.device)

    def loader(self, table: pd.DataFrame, train: bool, seed: int = 0):
        return self.loaders(table, train, seed)


def count_trainable(params) -> int:
    return int(sum(p.numel() for p in params))


def save_module(module: nn.Module, path: Path) -> None:
    atomic.save_tensors(path, module.state_dict())


def load_module(module: nn.Module, path: Path) -> None:
    state = load_file(str(path), device=str(next(module.parameters()).device))
    module.load_state_dict(state)


class Method:
    """Base class: subclasses set ``name``, implement learn/model_for/save/load."""

    name: ClassVar[str]
    option_groups: ClassVar[tuple[type[BaseModel], ...]] = ()
    # the ``head_init`` settings this method honours (issue 30) and, for the others, why it refuses them
    head_inits: ClassVar[tuple[str, ...]] = ("fresh", "previous", "shared")
    head_init_refusal: ClassVar[str] = ""
    # what `frkit tune` varies for this family (issue 29): the learning rate of the part it trains, and its
    # regularisation strength where it has one
    tuned_lr: ClassVar[str] = "lr"
    tuned_strength: ClassVar[str | None] = None

    def __init__(self, cfg, ctx: MethodContext):
        self.cfg = cfg
        self.ctx = ctx
        self.learned: list[str] = []  # marketplace names in the order learned
        self.trainable_params: int = 0  # of the last learn() (Table 1's last column)

    @classmethod
    def check_options(cls, cfg) -> list[str]:
        """Problems across option keys (e.g. a rank above another key's rank), each naming its key; checked by
        ``make_config`` before anything runs. Single keys are checked by their pydantic fields. A subclass that
        adds checks extends ``super().check_options(cfg)``."""
        if cfg.head_init in cls.head_inits:
            return []
        return [
            f"key 'head_init': method {cls.name!r} cannot take {cfg.head_init!r} "
            f"(it takes {list(cls.head_inits)}): {cls.head_init_refusal}"
        ]

    @classmethod
    def looks_up_translations(cls, cfg) -> bool:
        """Whether the method trains on translations looked up in the marketplaces' parallel corpora, whose texts
        the trimmed vocabulary must then cover too (``frkit/models/source.py``)."""
        return False

    # -- protocol ---------------------------------------------------------------------------------
    def learn(self, step: int, marketplace: Marketplace, seen: list[Marketplace]) -> dict:
        raise NotImplementedError

    def model_for(self, name: str) -> tuple[nn.Module, str]:
        raise NotImplementedError

    def save(self, folder: Path) -> None:
        atomic.write_json(
            folder / "method.json", {"learned": self.learned, "trainable_params": self.trainable_params}, indent=None
        )

    def load(self, folder: Path) -> None:
        meta = json.loads((folder / "method.json").read_text())
        self.learned, self.trainable_params = meta["learned"], meta["trainable_params"]

    def artifacts(self) -> dict[str, dict[str, torch.Tensor]]:
        """Tensors worth keeping for analysis after this marketplace (e.g. its Fisher), kept for every step.

        The runner writes each entry to ``<run>/artifacts/step_<k>_<name>/<key>.safetensors``.
        """
        return {}

    # -- shared helpers -----------------------------------------------------------------------------
    def add_head(self, model: CrossEncoder, name: str, rebuild: bool = False) -> nn.Module:
        """Marketplace ``name``'s head on ``model``, as ``head_init`` says: ``fresh`` (a new random head, the kit's
        behaviour before the key), ``previous`` (a copy of the last learned marketplace's head: the task is the same
        in every marketplace, so the new head starts from a relevance direction the encoder already serves) or
        ``shared`` (``name`` scores through the one head every marketplace trains). ``rebuild``: re-creating the
        structure before a checkpoint is loaded, where only sharing matters (the weights come from the file)."""
        init = self.cfg.head_init
        if init == "shared":
            return model.add_head(name, share=True)
        if init == "previous" and self.learned and not rebuild:
            return model.add_head(name, init_from=self.learned[-1])
        return model.add_head(name)

    def scoring_name(self, name: str) -> str:
        """Marketplaces not learned yet are scored with the latest marketplace's head (forward transfer)."""
        return name if name in self.learned else self.learned[-1]

    def predict(self, table: pd.DataFrame, name: str) -> np.ndarray:
        model, head = self.model_for(self.scoring_name(name))
        return predict_scores(model, self.ctx.loader(table, train=False), head, self.cfg.precision)

    def validation_auc(self, model: nn.Module, table: pd.DataFrame, head: str):
        loader = self.ctx.loader(table, train=False)
        return lambda: roc_auc(table["label"], predict_scores(model, loader, head, self.cfg.precision))

    def mixed_batches(self, tables: dict[str, pd.DataFrame], step: int) -> TaggedBatches:
        """Training batches of several tables in one seeded shuffled stream, each tagged ``batch["source"]`` with its
        table's key (a replay memory beside the new data, translated rows beside the new language): table i's loader
        is seeded ``seed + step + i``, the stream's order ``seed + step``. Pass it to :meth:`train` as ``batches``."""
        loaders = {
            tag: self.ctx.loader(rows, train=True, seed=self.cfg.seed + step + i)
            for i, (tag, rows) in enumerate(tables.items())
        }
        return TaggedBatches(loaders, self.cfg.seed + step, self.ctx.device)

    def train(
        self,
        model: nn.Module,
        params,
        marketplace: Marketplace,
        head: str,
        lr: float,
        step: int,
        loss_fn: LossFn | None = None,
        train_table: pd.DataFrame | None = None,
        validation_table: pd.DataFrame | None = None,
        on_step=None,
        batches: Iterable[dict] | None = None,
        stage: str | None = None,
        **settings_overrides,
    ) -> FitResult:
        """Run the one training loop on a marketplace's train split, early-stopping on its validation split.

        ``params``: parameters or AdamW parameter groups (each with its own ``lr``). ``batches``: training batches
        to use instead of the train split's loader (:meth:`mixed_batches`: memory rows mixed with the new ones).
        ``stage`` names a phase of a method that trains in several (progress bars and logs).
        ``on_step(step, loss)`` runs after every optimiser step (HAT: the slope schedule and the embedding clamp).
        """
        params = list(params) if not isinstance(params, list) else params
        flat = [p for g in params for p in g["params"]] if params and isinstance(params[0], dict) else params
        self.trainable_params = count_trainable(flat)
        if batches is None:
            train_table = marketplace.train if train_table is None else train_table
            batches = self.ctx.loader(train_table, train=True, seed=self.cfg.seed + step)
        elif train_table is not None:
            raise ValueError("train: pass batches or train_table, not both")
        validation_table = marketplace.validation if validation_table is None else validation_table
        settings = TrainSettings.from_config(self.cfg, lr, show_progress=self.ctx.show_progress, **settings_overrides)
        return fit(
            model,
            params,
            batches,
            loss_fn or cross_entropy_loss(head),
            self.validation_auc(model, validation_table, head),
            settings,
            desc=f"{self.name}:{marketplace.name}" + (f":{stage}" if stage else ""),
            on_step=on_step,
        )


def fit_log(result: FitResult) -> dict:
    return {
        "best_val_auc": result.best_val_auc,
        "best_epoch": result.best_epoch,
        "epochs_run": result.epochs_run,
        "steps": result.steps,
        "warmup_steps": result.warmup_steps,
        "history": result.history,
        "curve": result.curve,
    }
