"""The one training loop every method uses.

AdamW, cosine or constant schedule with warm-up, epochs with early stopping on validation ROC-AUC,
gradient clipping, bf16 autocast where the device runs it fast (``frkit/precision.py``), a learning curve
(train loss and validation AUC every ``eval_every_steps``), on accelerate's device placement
(``frkit/distributed.py``). A method
supplies *what* to optimise and *which loss*; this file owns *how*.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np
import torch
from sklearn.metrics import roc_auc_score
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm
from transformers import get_constant_schedule_with_warmup, get_cosine_schedule_with_warmup

from frkit import distributed
from frkit.distributed import ShardedBatches, gather_rows
from frkit.precision import autocast, full_precision, resolved_precision

LossFn = Callable[[nn.Module, dict], torch.Tensor]
log = logging.getLogger(__name__)


def cross_entropy_loss(head: str) -> LossFn:
    """The task loss L_task: cross-entropy of the marketplace's head."""

    def loss(model: nn.Module, batch: dict) -> torch.Tensor:
        logits = model(**batch, head=head)
        return nn.functional.cross_entropy(logits.float(), batch["labels"])

    return loss


@torch.no_grad()
def predict_scores(model: nn.Module, loader: DataLoader, head: str, precision: str = "auto") -> np.ndarray:
    """P(relevant) for every row of the loader's table, in the table's order.

    Batches may come in any order (length-sorted evaluation): each carries ``row``, the row's position in
    the table, and the scores are put back by it. A sharded loader (a data-parallel launch) scores this
    process's share of the rows; the shares are gathered (``frkit.distributed.gather_rows``), so every
    process returns the whole table's scores.
    """
    sharded = isinstance(getattr(loader, "batch_sampler", None), ShardedBatches)
    device = distributed.device()
    precision = resolved_precision(precision)
    was_training = model.training
    model.eval()
    rows, scores = [], []
    for batch in loader:
        batch = {k: v.to(device) for k, v in batch.items()}
        with autocast(device, precision):
            logits = model(**batch, head=head)
        with full_precision():
            scores.append(torch.softmax(logits.float(), -1)[:, 1].cpu())
        rows.append(batch["row"].cpu() if "row" in batch else None)
    model.train(was_training)
    if sharded:
        flat = torch.cat(scores).numpy() if scores else np.zeros(0, dtype=np.float32)
        mine = torch.cat(rows).numpy() if scores else np.zeros(0, dtype=np.int64)
        return gather_rows(mine, flat, len(loader.dataset))
    if not scores:
        return np.zeros(0)
    flat = torch.cat(scores).numpy()
    if any(r is None for r in rows):
        return flat
    out = np.empty_like(flat)
    out[torch.cat(rows).numpy()] = flat
    return out


def roc_auc(labels: Iterable[int], scores: np.ndarray) -> float:
    labels = np.asarray(list(labels))
    if len(np.unique(labels)) < 2:
        raise ValueError(f"ROC-AUC needs both labels; got only {np.unique(labels).tolist()} in {len(labels)} rows")
    return float(roc_auc_score(labels, scores))


@dataclass
class FitResult:
    best_val_auc: float
    best_epoch: int
    epochs_run: int
    steps: int
    history: list[dict] = field(default_factory=list)  # per epoch: train loss, validation AUC
    curve: list[dict] = field(default_factory=list)  # every eval_every_steps: train loss since, validation AUC
    warmup_steps: int = 0


@dataclass
class TrainSettings:
    """The loop's knobs; methods build it from the run config (``TrainSettings.from_config``)."""

    lr: float
    epochs: int = 3
    weight_decay: float = 0.01
    schedule: str = "cosine"
    warmup_ratio: float = 0.1
    warmup_steps: int | None = None  # overrides warmup_ratio when set (FR-LoRA Stage II: 1000 steps) ...
    max_warmup_ratio: float = 0.1  # ... but never more than this share of the run's steps, so warm-up ends
    patience: int = 2
    min_delta: float = 0.0  # validation AUC gains of at most this count as none for patience
    max_grad_norm: float | None = 1.0
    precision: str = "auto"
    max_steps_per_epoch: int | None = None
    eval_every_steps: int | None = None  # learning curve: validation AUC every N steps (None: per epoch only)
    show_progress: bool = True

    @classmethod
    def from_config(cls, cfg, lr: float, **overrides) -> TrainSettings:
        values = dict(
            lr=lr,
            epochs=cfg.epochs,
            weight_decay=cfg.weight_decay,
            schedule=cfg.schedule,
            warmup_ratio=cfg.warmup_ratio,
            patience=cfg.patience,
            min_delta=cfg.min_delta,
            max_grad_norm=cfg.max_grad_norm,
            precision=cfg.precision,
            max_steps_per_epoch=cfg.max_steps_per_epoch,
            eval_every_steps=cfg.eval_every_steps,
        )
        values.update(overrides)
        return cls(**values)


def warmup_steps(settings: TrainSettings, total_steps: int, desc: str = "train") -> int:
    """``warmup_ratio`` of the steps, or the fixed ``warmup_steps`` capped at ``max_warmup_ratio`` of them.

    The cap is what keeps a short run from never leaving warm-up: FR-LoRA's 1000 Stage II warm-up steps
    are kept whole from 10,000 steps on (with the 0.1 default), and shortened below that.
    """
    if settings.warmup_steps is None:
        return int(settings.warmup_ratio * total_steps)
    cap = int(settings.max_warmup_ratio * total_steps)
    if settings.warmup_steps > cap:
        log.info(
            "%s: warm-up shortened from %d to %d steps (%.0f%% of the %d steps this run has)",
            desc,
            settings.warmup_steps,
            cap,
            100 * settings.max_warmup_ratio,
            total_steps,
        )
        return cap
    return settings.warmup_steps


def _make_scheduler(optimizer, settings: TrainSettings, total_steps: int, warmup: int):
    if settings.schedule == "cosine":
        return get_cosine_schedule_with_warmup(optimizer, warmup, total_steps)
    return get_constant_schedule_with_warmup(optimizer, warmup)


def fit(
    model: nn.Module,
    params: list[nn.Parameter] | list[dict],
    train_loader: Iterable[dict],
    loss_fn: LossFn,
    validate: Callable[[], float],
    settings: TrainSettings,
    desc: str = "train",
    on_step: Callable[[int, float], None] | None = None,
) -> FitResult:
    """Train ``params`` of ``model`` on ``train_loader`` with ``loss_fn``; keep the best epoch by ``validate()``.

    ``params`` may be plain parameters or AdamW parameter groups (each with its own ``lr``).
    ``validate`` returns validation ROC-AUC; the trainable weights of the best epoch are restored at the end.
    ``history`` holds one entry per epoch and, with ``eval_every_steps``, the learning curve (``curve``).
    ``on_step(step, loss)`` is called after every optimiser step (progress logging, stop requests).
    """
    accelerator = distributed.get_accelerator()
    device = distributed.device()
    precision = resolved_precision(settings.precision)
    groups = params if params and isinstance(params[0], dict) else [{"params": list(params)}]
    trainable = [p for g in groups for p in g["params"]]
    if not trainable:
        raise ValueError(f"{desc}: nothing to train (no parameters passed to fit)")
    # fused: one kernel for all parameters (torch >= 2.4 on CPU and CUDA) instead of a Python loop over every tensor
    optimizer = torch.optim.AdamW(
        groups, lr=settings.lr, weight_decay=settings.weight_decay, fused=_fused_ok(trainable)
    )
    steps_per_epoch = len(train_loader)
    if settings.max_steps_per_epoch:
        steps_per_epoch = min(steps_per_epoch, settings.max_steps_per_epoch)
    total = steps_per_epoch * settings.epochs
    warmup = warmup_steps(settings, total, desc)
    scheduler = _make_scheduler(optimizer, settings, total, warmup)
    data_parallel = distributed.world_size() > 1
    if data_parallel:  # gradients averaged by hand after each backward (frkit/distributed.py), not by DDP: the loss
        # functions read the model's attributes and add penalties outside its forward, which DDP's wrapper hides or
        # counts twice; accelerate's scheduler wrapper would also step N times per step (steps here are per process)
        model_p = model
    else:
        model_p, optimizer, scheduler = accelerator.prepare(model, optimizer, scheduler)

    best = FitResult(best_val_auc=-math.inf, best_epoch=-1, epochs_run=0, steps=0)
    best.warmup_steps = warmup
    best_state = [p.detach().clone() for p in trainable]
    bad_epochs, reference = 0, -math.inf
    step = 0
    for epoch in range(settings.epochs):
        model_p.train()
        running, since_eval, window = 0.0, 0, 0.0
        bar = tqdm(
            train_loader,
            total=steps_per_epoch,
            desc=f"{desc} epoch {epoch + 1}/{settings.epochs}",
            disable=not settings.show_progress or not accelerator.is_local_main_process,
            leave=False,
        )
        for i, batch in enumerate(bar):
            if i >= steps_per_epoch:
                break
            batch = {k: (v.to(device) if isinstance(v, torch.Tensor) else v) for k, v in batch.items()}
            with autocast(device, precision):
                loss = loss_fn(model_p, batch)
            accelerator.backward(loss)
            if data_parallel:
                distributed.average_gradients(trainable)  # the global batch's gradient on every process
            if settings.max_grad_norm:
                accelerator.clip_grad_norm_(trainable, settings.max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            value = distributed.mean_over_processes(loss.item())  # the global batch's loss in the logs
            running += value
            window += value
            since_eval += 1
            bar.set_postfix(loss=f"{running / (i + 1):.4f}")
            if settings.eval_every_steps and step % settings.eval_every_steps == 0:
                best.curve.append(
                    {
                        "step": step,
                        "epoch": epoch + 1,
                        "train_loss": window / since_eval,
                        "val_auc": _checked(validate(), desc, step),
                    }
                )
                model_p.train()
                window, since_eval = 0.0, 0
            if on_step is not None:
                on_step(step, value)
        val_auc = _checked(validate(), desc, step)
        best.history.append(
            {"epoch": epoch + 1, "step": step, "train_loss": running / max(1, steps_per_epoch), "val_auc": val_auc}
        )
        best.epochs_run = epoch + 1
        log.info(
            "%s epoch %d/%d: train loss %.4f, validation AUC %.4f",
            desc,
            epoch + 1,
            settings.epochs,
            best.history[-1]["train_loss"],
            val_auc,
        )  # the record of runs trained without a progress bar
        # patience counts epochs since the last gain of more than min_delta over the reference (the best AUC when
        # that gain was made); the weights kept are the best epoch's whatever its gain
        if val_auc > reference + settings.min_delta:
            reference, bad_epochs = val_auc, 0
        else:
            bad_epochs += 1
        if val_auc > best.best_val_auc:
            best.best_val_auc, best.best_epoch = val_auc, epoch + 1
            best_state = [p.detach().clone() for p in trainable]
        if settings.patience and bad_epochs >= settings.patience:
            break
    with torch.no_grad():  # restore the best epoch's weights
        for p, saved in zip(trainable, best_state):
            p.copy_(saved)
    best.steps = step
    optimizer.zero_grad(set_to_none=True)
    accelerator.free_memory()
    return best


def _checked(val_auc: float, desc: str, step: int) -> float:
    """A validation AUC that is not a number would make the loop keep the untrained weights: stop instead."""
    if not math.isfinite(val_auc):
        raise RuntimeError(
            f"{desc}: validation ROC-AUC is {val_auc} after step {step}; the validation split "
            "must hold both labels (frkit checks this when loading data)"
        )
    return val_auc


def _fused_ok(params: list[nn.Parameter]) -> bool:
    """AdamW's fused kernel takes floating-point parameters on CPU or CUDA, all on one device type."""
    kinds = {p.device.type for p in params}
    return len(kinds) == 1 and kinds <= {"cpu", "cuda"} and all(p.is_floating_point() for p in params)
