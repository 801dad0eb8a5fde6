"""The continual-learning loop.

for each marketplace k, in the configured order:
    method.learn(marketplace k)              -- from its own data alone
    R[k, t] = ROC-AUC on every test set t    -- seen ones, and unseen ones if evaluate_unseen
    save the method's state and R[k]         -- a stopped run resumes here
then metrics (average, forgetting, BWT, FWT) go to metrics.json and auc_matrix.csv.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from transformers import set_seed

from frkit import atomic, distributed
from frkit.config import BaseRunConfig, default_params
from frkit.data import load_marketplaces
from frkit.data.batching import TableLoaders
from frkit.data.marketplace import Marketplace
from frkit.methods import METHODS
from frkit.methods.base import MethodContext
from frkit.metrics import auc_matrix_frame, summarize
from frkit.models.cross_encoder import fresh_cross_encoder
from frkit.models.encoder import load_encoder, load_tokenizer
from frkit.models.source import prepare_model_source, resolve_model_source
from frkit.paths import cache_root, resolve
from frkit.precision import cpu_model, resolved_precision
from frkit.records import RunFolder, restore
from frkit.records.fingerprint import differences, fingerprint
from frkit.tracking import RunTracking
from frkit.train import predict_scores, roc_auc

log = logging.getLogger(__name__)


@dataclass
class RunResult:
    run_dir: Path
    metrics: dict
    auc_matrix: np.ndarray


def load_configured_marketplaces(cfg: BaseRunConfig) -> list[Marketplace]:
    """Load and validate every marketplace: bad data fails here, before any model is touched."""
    return load_marketplaces(
        cfg.data_source,
        cfg.data_dir if cfg.data_dir is not None else cfg.data_path,
        cfg.marketplaces,
        train_file=cfg.train_file,
        validation_fraction=cfg.validation_fraction,
        small_version=cfg.small_version,
        tables=cfg.tables,
        columns=cfg.columns,
        max_train=cfg.max_train,
        max_validation=cfg.max_validation,
        max_test=cfg.max_test,
        seed=cfg.seed,
        parallel_pairs=cfg.parallel_pairs,
        stsb_threshold=cfg.stsb_threshold,
        source_paths={k: resolve(v) for k, v in cfg.source_paths.items()} if cfg.source_paths else None,
    )


_INIT_AUCS: dict[str, float] = {}  # per process: the runs of a sweep share b_t when seed, model and test set agree


def _init_key(cfg, model_source, m: Marketplace) -> str:
    """What b_t of marketplace ``m`` depends on, hashed: the encoder, seed, pooling, how the test set is read, the
    precision it is computed in and the CPU / GPU that computes it (fp32 differs in the last digits across CPUs),
    and the test set itself."""
    device = torch.cuda.get_device_name() if distributed.device().type == "cuda" else cpu_model()
    digest = hashlib.sha256(
        json.dumps(
            [
                str(model_source),
                cfg.seed,
                cfg.pooling,
                cfg.max_length,
                resolved_precision(cfg.precision),
                cfg.eval_batch_size,
                cfg.length_batching,
                device,
                torch.__version__,
                m.name,
            ]
        ).encode()
    )
    for column in ("id", "label", "text_a", "text_b"):
        digest.update(json.dumps([str(x) for x in m.test[column]]).encode("utf-8", "surrogatepass"))
    return digest.hexdigest()


def _init_aucs(cfg, base_encoder, loaders: TableLoaders, model_source, marketplaces: list[Marketplace]) -> list[float]:
    """b_t for forward transfer: the base encoder with a freshly initialised (seeded) head.

    It depends on the seed, the encoder, the test set and how it is read, not on the method: it is computed once
    per seed and data and kept, in this process and on disk (``<cache>/init_aucs/``), so the other runs of a sweep,
    each in a process of its own, read it instead of scoring every test set again (on whole test sets that was a
    quarter of a run's evaluation)."""
    out = []
    for m in marketplaces:
        key = _init_key(cfg, model_source, m)
        stored = cache_root() / "init_aucs" / f"{key}.json"
        if key not in _INIT_AUCS and stored.is_file():
            try:
                _INIT_AUCS[key] = float(json.loads(stored.read_text())["auc"])
            except (OSError, ValueError, KeyError, TypeError):
                pass  # unreadable: computed again and rewritten
        if key not in _INIT_AUCS:
            set_seed(cfg.seed)
            model = fresh_cross_encoder(base_encoder, cfg.pooling, distributed.device())
            model.add_head("init")
            scores = predict_scores(model, loaders(m.test, train=False), "init", cfg.precision)
            _INIT_AUCS[key] = roc_auc(m.test["label"], scores)
            if distributed.is_main():
                stored.parent.mkdir(parents=True, exist_ok=True)
                atomic.write_json(stored, {"auc": _INIT_AUCS[key], "marketplace": m.name, "seed": cfg.seed})
        out.append(_INIT_AUCS[key])
    return out


def run(cfg: BaseRunConfig, show_progress: bool = True) -> RunResult:
    """Run (or resume) the configured sequence; returns the metrics and the AUC matrix.

    First the run folder is made (a folder that cannot be made or written is refused, naming output_dir) and
    locked: a second process on it is refused at once (frkit/records/lock.py); the lock is dropped when the run
    ends, however it ends, and a refused run leaves no folder behind."""
    folder = RunFolder(cfg.run_dir)
    # the tracker is checked before any data or model loads (W&B without a key fails here) and closed however the
    # run ends, before the lock is dropped (frkit/tracking/)
    with (
        folder.locked(take=distributed.is_main(), share=distributed.broadcast_object),
        RunTracking(cfg.report_to) as tracking,
    ):
        return _run(cfg, folder, show_progress, tracking)


def _run(cfg: BaseRunConfig, folder: RunFolder, show_progress: bool, tracking: RunTracking) -> RunResult:
    method_cls = METHODS[cfg.method]
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
        model_source = prepare_model_source(cfg, marketplaces, METHODS[cfg.method].looks_up_translations(cfg))
    tokenizer = load_tokenizer(model_source)
    base_encoder = load_encoder(model_source)  # before the run folder is written: a broken weight file is named first
    loaders = TableLoaders.from_config(cfg, tokenizer, shard=(distributed.rank(), distributed.world_size()))
    ctx = MethodContext(
        cfg, model_source, tokenizer, show_progress=show_progress, base_encoder=base_encoder, loaders=loaders
    )
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
    progress = folder.progress()  # read once: the steps kept below and this call's own steps are what it holds
    done = len(progress["steps"])
    if done == K:
        method = None  # finished: the metrics come from progress.json alone
    elif done:
        with distributed.main_first():  # the main process sets a damaged checkpoint aside; the others load after it
            method, done = restore(folder, new_method)  # the last sound checkpoint (frkit/records/resume.py)
    else:
        method = new_method()
    steps = progress["steps"][:done]  # restore() forgets the steps after the last sound checkpoint
    if distributed.is_main() and done < K:  # one writer per run; a resumed run logs the steps it trains now
        tracking.open(folder.path, cfg.run_name, params, names)
    R = np.full((K, K), np.nan)
    for s in steps:
        R[s["step"]] = [np.nan if x is None else x for x in s["auc_row"]]
    trainable = {s["marketplace"]: s["trainable_params"] for s in steps}
    validation_row = steps[-1].get("validation_auc_row") if steps else None  # the latest step's, for frkit tune
    init_aucs = progress.get("init_aucs")
    if cfg.evaluate_unseen and init_aucs is None:
        wall, cpu = time.time(), time.process_time()
        init_aucs = _init_aucs(
            cfg, base_encoder, loaders, model_source, marketplaces
        )  # every process: the scores are sharded and gathered
        if distributed.is_main():
            folder.save_init_aucs(
                init_aucs, {"init_seconds": time.time() - wall, "init_cpu_seconds": time.process_time() - cpu}
            )

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
        if cfg.evaluate_validation:  # what frkit tune selects on: every seen marketplace's validation AUC, never test
            learn_log["validation_auc_row"] = validation_row = [
                float(roc_auc(m.validation["label"], method.predict(m.validation, m.name))) if t <= k else None
                for t, m in enumerate(marketplaces)
            ]
        trainable[marketplace.name] = method.trainable_params
        if distributed.is_main():
            folder.save_artifacts(k, marketplace.name, method.artifacts())  # before the step is recorded
            folder.save_step(
                k,
                marketplace.name,
                row,
                {
                    **learn_log,
                    "learn_seconds": learn_s,
                    "eval_seconds": time.time() - started - learn_s,
                    "cpu_seconds": time.process_time() - cpu,
                    "precision": precision,
                    **({"processes": distributed.world_size()} if distributed.world_size() > 1 else {}),
                },
                method,
            )
            tracking.step(k, marketplace.name, learn_log, row)
        distributed.barrier()  # the step is recorded before any process goes on
        log.info("after %s: %s", marketplace.name, dict(zip(names, row)))
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    metrics = summarize(R, names, init_aucs)
    metrics["method"] = cfg.method
    metrics["trainable_params"] = trainable
    if cfg.evaluate_validation:
        seen = [x for x in validation_row or [] if x is not None]
        metrics["average_validation_auc"] = float(np.mean(seen)) if seen else None
    if distributed.is_main():
        folder.write_metrics(metrics, auc_matrix_frame(R, names))
        tracking.final(metrics)
    distributed.barrier()
    return RunResult(folder.path, metrics, R)
