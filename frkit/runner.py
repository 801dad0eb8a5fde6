"""The continual-learning loop.

for each marketplace k, in the configured order:
    method.learn(marketplace k)              -- from its own data alone
    R[k, t] = ROC-AUC on every test set t    -- seen ones, and unseen ones if evaluate_unseen
    save the method's state and R[k]         -- a stopped run resumes here
then metrics (average, forgetting, BWT, FWT) go to metrics.json and auc_matrix.csv.
"""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from transformers import set_seed

from frkit.artifacts import RunFolder
from frkit.config import BaseRunConfig, default_params
from frkit.data import load_marketplaces
from frkit.data.marketplace import Marketplace
from frkit import distributed
from frkit.fingerprint import differences, fingerprint
from frkit.methods import METHODS
from frkit.methods.base import MethodContext
from frkit.metrics import auc_matrix_frame, summarize
from frkit.models.encoder import load_tokenizer
from frkit.models.offline_e5 import resolve_model_source
from frkit.models.source import prepare_model_source
from frkit.resume import restore
from frkit.train import predict_scores, resolved_precision, roc_auc

log = logging.getLogger(__name__)


@dataclass
class RunResult:
    run_dir: Path
    metrics: dict
    auc_matrix: np.ndarray


def load_configured_marketplaces(cfg: BaseRunConfig) -> list[Marketplace]:
    """Load and validate every marketplace: bad data fails here, before any model is touched."""
    return load_marketplaces(
        cfg.data_source, cfg.data_dir if cfg.data_dir is not None else cfg.data_path, cfg.marketplaces,
        train_file=cfg.train_file, validation_fraction=cfg.validation_fraction, small_version=cfg.small_version,
        tables=cfg.tables, columns=cfg.columns, max_train=cfg.max_train, max_validation=cfg.max_validation,
        max_test=cfg.max_test, seed=cfg.seed, parallel_pairs=cfg.parallel_pairs, stsb_threshold=cfg.stsb_threshold,
    )


_INIT_AUCS: dict[tuple, float] = {}  # per process: the runs of a sweep share b_t when seed, model and test set agree


def _init_aucs(ctx: MethodContext, cfg, marketplaces: list[Marketplace]) -> list[float]:
    """b_t for forward transfer: the base encoder with a freshly initialised (seeded) head.

    It depends on the seed, the encoder, the test set and how it is read, not on the method: a sweep's
    worker process computes it once per seed and data, not once per method."""
    out = []
    for m in marketplaces:
        key = (str(ctx.model_source), cfg.seed, cfg.pooling, cfg.max_length, cfg.precision, m.name,
               tuple(m.test["id"]), tuple(m.test["label"]), tuple(m.test["text_a"]), tuple(m.test["text_b"]))
        if key not in _INIT_AUCS:
            set_seed(cfg.seed)
            model = ctx.new_model()
            model.add_head("init")
            _INIT_AUCS[key] = roc_auc(m.test["label"], predict_scores(model, ctx.loader(m.test, train=False), "init",
                                                                    cfg.precision))
        out.append(_INIT_AUCS[key])
    return out


def run(cfg: BaseRunConfig, show_progress: bool = True) -> RunResult:
    """Run (or resume) the configured sequence; returns the metrics and the AUC matrix."""
    method_cls = METHODS[cfg.method]
    folder = RunFolder(cfg.run_dir)
    params, defaults = cfg.model_dump(), default_params()
    # every input is checked before anything is written: the output folder and an existing run's records, the
    # data, the precision this machine can run, the model (files, tokenizer, weights), the data and model against
    # what an existing run started with; only then is the run folder made (a failed check leaves no folder behind)
    # In a data-parallel launch (frkit/distributed.py) every process checks and loads; the processes must agree on
    # the parameters and the data/model fingerprint; only the main process writes the folder, the others wait.
    distributed.agree("parameters", params)
    folder.check(params, resume=cfg.resume, defaults=defaults)
    marketplaces = load_configured_marketplaces(cfg)
    precision = resolved_precision(cfg.precision)  # auto: bf16 or fp32 by this machine; recorded per step
    with distributed.main_first():  # a trimmed vocabulary is written once, to the cache
        model_source = prepare_model_source(cfg, marketplaces)
    tokenizer = load_tokenizer(model_source)
    ctx = MethodContext(cfg, model_source, tokenizer, show_progress=show_progress)
    ctx.load_base()
    prints = fingerprint(marketplaces, resolve_model_source(cfg.model_name_or_path))
    distributed.agree("data or model", prints, differences)
    distributed.barrier()  # every process has checked the folder before the main one writes it
    if distributed.is_main():
        folder.open(params, resume=cfg.resume, defaults=defaults, fingerprint=prints)
    distributed.barrier()

    def new_method():
        set_seed(cfg.seed)
        return method_cls(cfg, ctx)

    names = [m.name for m in marketplaces]
    K = len(marketplaces)
    done = len(folder.progress()["steps"])
    if done == K:
        method = None  # finished: the metrics come from progress.json alone
    elif done:
        with distributed.main_first():  # the main process sets a damaged checkpoint aside; the others load after it
            method, done = restore(folder, new_method)  # the last sound checkpoint (frkit/resume.py)
    else:
        method = new_method()
    progress = folder.progress()
    R = np.full((K, K), np.nan)
    for s in progress["steps"]:
        R[s["step"]] = [np.nan if x is None else x for x in s["auc_row"]]
    init_aucs = progress.get("init_aucs")
    if cfg.evaluate_unseen and init_aucs is None:
        wall, cpu = time.time(), time.process_time()
        init_aucs = _init_aucs(ctx, cfg, marketplaces)  # every process: the scores are sharded and gathered
        if distributed.is_main():
            folder.save_init_aucs(init_aucs, {"init_seconds": time.time() - wall,
                                              "init_cpu_seconds": time.process_time() - cpu})

    for k in range(done, K):
        marketplace = marketplaces[k]
        set_seed(cfg.seed + k)  # per-step seeding: a resumed run replays exactly what it would have done
        started, cpu = time.time(), time.process_time()  # CPU seconds (all threads): a cost that pauses do not inflate
        learn_log = method.learn(k, marketplace, marketplaces[: k + 1])
        learn_s = time.time() - started
        for t, other in enumerate(marketplaces):
            if t <= k or cfg.evaluate_unseen:
                R[k, t] = roc_auc(other.test["label"], method.predict(other.test, other.name))
        row = [None if np.isnan(x) else float(x) for x in R[k]]
        if distributed.is_main():
            folder.save_artifacts(k, marketplace.name, method.artifacts())  # before the step is recorded
            folder.save_step(k, marketplace.name, row, {**learn_log, "learn_seconds": learn_s,
                                                         "eval_seconds": time.time() - started - learn_s,
                                                         "cpu_seconds": time.process_time() - cpu,
                                                         "precision": precision,
                                                         **({"processes": distributed.world_size()}
                                                            if distributed.world_size() > 1 else {})}, method)
        distributed.barrier()  # the step is recorded before any process goes on
        log.info("after %s: %s", marketplace.name, dict(zip(names, row)))
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    metrics = summarize(R, names, init_aucs)
    metrics["method"] = cfg.method
    metrics["trainable_params"] = {s["marketplace"]: s["trainable_params"] for s in folder.progress()["steps"]}
    if distributed.is_main():
        folder.write_metrics(metrics, auc_matrix_frame(R, names))
    distributed.barrier()
    return RunResult(folder.path, metrics, R)
