"""The one training loop every method uses.

AdamW, cosine or constant schedule with warm-up, epochs with early stopping on validation ROC-AUC,
gradient clipping, bf16 autocast on GPU, built on accelerate so ``accelerate launch`` spreads it over
several GPUs. A method supplies *what* to optimise and *which loss*; this file owns *how*.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Callable, Iterable

import numpy as np
import torch
from accelerate import Accelerator
from sklearn.metrics import roc_auc_score
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm
from transformers import get_constant_schedule_with_warmup, get_cosine_schedule_with_warmup

LossFn = Callable[[nn.Module, dict], torch.Tensor]
log = logging.getLogger(__name__)


@lru_cache(maxsize=None)
def get_accelerator(precision: str = "auto") -> Accelerator:
    """One Accelerator per precision for the whole process (accelerate's state is a singleton)."""
    if precision == "auto":
        precision = "bf16" if torch.cuda.is_available() else "fp32"
    return Accelerator(mixed_precision="bf16" if precision == "bf16" else "no")


def cross_entropy_loss(head: str) -> LossFn:
    """The task loss L_task: cross-entropy of the marketplace's head."""

    def loss(model: nn.Module, batch: dict) -> torch.Tensor:
        logits = model(**batch, head=head)
        return nn.functional.cross_entropy(logits.float(), batch["labels"])

    return loss


@torch.no_grad()
def predict_scores(model: nn.Module, loader: DataLoader, head: str, accelerator: Accelerator | None = None) -> np.ndarray:
    """P(relevant) for every row of ``loader``, in order."""
    accelerator = accelerator or get_accelerator()
    was_training = model.training
    model.eval()
    device = accelerator.device
    scores = []
    for batch in loader:
        batch = {k: v.to(device) for k, v in batch.items()}
        with accelerator.autocast():
            logits = model(**batch, head=head)
        scores.append(torch.softmax(logits.float(), -1)[:, 1].cpu())
    model.train(was_training)
    return torch.cat(scores).numpy() if scores else np.zeros(0)


def roc_auc(labels: Iterable[int], scores: np.ndarray) -> float:
    return float(roc_auc_score(np.asarray(list(labels)), scores))


@dataclass
class FitResult:
    best_val_auc: float
    best_epoch: int
    epochs_run: int
    steps: int
    history: list[dict] = field(default_factory=list)


@dataclass
class TrainSettings:
    """The loop's knobs; methods build it from the run config (``TrainSettings.from_config``)."""

    lr: float
    epochs: int = 3
    weight_decay: float = 0.01
    schedule: str = "cosine"
    warmup_ratio: float = 0.1
    warmup_steps: int | None = None  # overrides warmup_ratio when set (FR-LoRA Stage II: 1000 steps)
    patience: int = 2
    max_grad_norm: float | None = 1.0
    precision: str = "auto"
    max_steps_per_epoch: int | None = None
    show_progress: bool = True

    @classmethod
    def from_config(cls, cfg, lr: float, **overrides) -> "TrainSettings":
        values = dict(
            lr=lr, epochs=cfg.epochs, weight_decay=cfg.weight_decay, schedule=cfg.schedule,
            warmup_ratio=cfg.warmup_ratio, patience=cfg.patience, max_grad_norm=cfg.max_grad_norm,
            precision=cfg.precision, max_steps_per_epoch=cfg.max_steps_per_epoch,
        )
        values.update(overrides)
        return cls(**values)


def _make_scheduler(optimizer, settings: TrainSettings, total_steps: int):
    warmup = settings.warmup_steps if settings.warmup_steps is not None else int(settings.warmup_ratio * total_steps)
    if settings.schedule == "cosine":
        return get_cosine_schedule_with_warmup(optimizer, warmup, total_steps)
    return get_constant_schedule_with_warmup(optimizer, warmup)


def fit(
    model: nn.Module,
    params: list[nn.Parameter] | list[dict],
    train_loader: DataLoader,
    loss_fn: LossFn,
    validate: Callable[[], float],
    settings: TrainSettings,
    desc: str = "train",
    on_step: Callable[[int, float], None] | None = None,
) -> FitResult:
    """Train ``params`` of ``model`` on ``train_loader`` with ``loss_fn``; keep the best epoch by ``validate()``.

    ``params`` may be plain parameters or AdamW parameter groups (each with its own ``lr``).
    ``validate`` returns validation ROC-AUC; the trainable weights of the best epoch are restored at the end.
    ``on_step(step, loss)`` is called after every optimiser step (progress logging, stop requests).
    """
    accelerator = get_accelerator(settings.precision)
    groups = params if params and isinstance(params[0], dict) else [{"params": list(params)}]
    trainable = [p for g in groups for p in g["params"]]
    if not trainable:
        raise ValueError(f"{desc}: nothing to train (no parameters passed to fit)")
    optimizer = torch.optim.AdamW(groups, lr=settings.lr, weight_decay=settings.weight_decay)
    steps_per_epoch = len(train_loader)
    if settings.max_steps_per_epoch:
        steps_per_epoch = min(steps_per_epoch, settings.max_steps_per_epoch)
    scheduler = _make_scheduler(optimizer, settings, steps_per_epoch * settings.epochs)
    model_p, optimizer, loader, scheduler = accelerator.prepare(model, optimizer, train_loader, scheduler)

    best = FitResult(best_val_auc=-math.inf, best_epoch=-1, epochs_run=0, steps=0)
    best_state = [p.detach().clone() for p in trainable]
    bad_epochs = 0
    step = 0
    for epoch in range(settings.epochs):
        model_p.train()
        running = 0.0
        bar = tqdm(loader, total=steps_per_epoch, desc=f"{desc} epoch {epoch + 1}/{settings.epochs}",
                   disable=not settings.show_progress or not accelerator.is_local_main_process, leave=False)
        for i, batch in enumerate(bar):
            if i >= steps_per_epoch:
                break
            with accelerator.autocast():
                loss = loss_fn(model_p, batch)
            accelerator.backward(loss)
            if settings.max_grad_norm:
                accelerator.clip_grad_norm_(trainable, settings.max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            running += loss.item()
            bar.set_postfix(loss=f"{running / (i + 1):.4f}")
            if on_step is not None:
                on_step(step, loss.item())
        val_auc = validate()
        best.history.append({"epoch": epoch + 1, "train_loss": running / max(1, steps_per_epoch), "val_auc": val_auc})
        best.epochs_run = epoch + 1
        log.info("%s epoch %d/%d: train loss %.4f, validation AUC %.4f", desc, epoch + 1, settings.epochs,
                 best.history[-1]["train_loss"], val_auc)  # the record of runs trained without a progress bar
        if val_auc > best.best_val_auc:
            best.best_val_auc, best.best_epoch, bad_epochs = val_auc, epoch + 1, 0
            best_state = [p.detach().clone() for p in trainable]
        else:
            bad_epochs += 1
            if settings.patience and bad_epochs >= settings.patience:
                break
    with torch.no_grad():  # restore the best epoch's weights
        for p, saved in zip(trainable, best_state):
            p.copy_(saved)
    best.steps = step
    optimizer.zero_grad(set_to_none=True)
    accelerator.free_memory()
    return best
