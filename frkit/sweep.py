"""Sweeps: methods / variants x seeds x marketplace orders on one base params file, summarised like the papers' tables.

A sweep file (``params/sweeps/*.yaml``)::

    base: ../stsb.yaml               # a params file (relative to the sweep file or the project root)
    name: cpu_stsb                   # run folders: <output_dir>/<name>/<label>/<order>/seed<k>
    seeds: [0, 1, 2]
    orders: [[en, es, ja]]           # marketplace sequences (default: the base's), or {random: 4, seed: 0}
    baseline: independent            # the "1x" row
    results: results/cpu_stsb        # finished runs' small files are copied here (default results/<name>)
    overrides: {epochs: 1}           # for every run
    anchors: ...                     # free: a place for YAML anchors (&name) that runs refer to
    resources: {num_cpus: 1, num_gpus: 0}   # per run, for --executor ray (a run entry may give its own)
    runs:
      independent: {method: independent}
      fr_lora+lr_decay: {method: fr_lora, lr_decay: 0.5, orders: [[en, es, ja], [ja, es, en]]}  # its own orders

Every (run, order, seed) is validated before anything trains. Runs go seed-major, then order, so a stopped
sweep already holds a complete comparison for its first seed. A run whose results are already in the results
folder is skipped, so a sweep spans sessions: commit the results folder as runs finish. ``jobs > 1`` trains
several runs at once in separate processes (measure: on 2 CPU cores two one-thread runs beat one two-thread
run by ~1.2x; a small encoder leaves most of a GPU idle). The summary (``summary.md``, ``summary.csv``) is
built from the results folder alone, so ``--summary-only`` re-checks every figure from committed files.
``executor="ray"`` sends each run to a Ray cluster as a task instead (``frkit/sweep_ray.py``).
"""
from __future__ import annotations

import itertools
import json
import logging
import multiprocessing
import os
import shutil
import signal
import traceback
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

import yaml

from frkit import atomic
from frkit.config import BaseRunConfig, make_config, read_params
from frkit.errors import FrkitInputError
from frkit.paths import resolve

SWEEP_KEYS = {"base", "name", "seeds", "orders", "baseline", "results", "overrides", "anchors", "resources", "runs"}
EXECUTORS = ("local", "ray")
RESULT_FILES = ("params.yaml", "environment.json", "metrics.json", "auc_matrix.csv", "progress.json")


@dataclass(frozen=True)
class RunKey:
    label: str
    order: tuple[str, ...]
    seed: int

    @property
    def order_tag(self) -> str:
        return "-".join(self.order)

    def folder(self, root: Path) -> Path:
        return root / self.label / self.order_tag / f"seed{self.seed}"

    def __str__(self) -> str:
        return f"{self.label} [{self.order_tag}] seed {self.seed}"


@dataclass
class Sweep:
    path: Path
    name: str
    base: Path
    seeds: list[int]
    orders: list[tuple[str, ...]]
    baseline: str
    results_dir: Path
    labels: list[str]
    configs: dict[RunKey, BaseRunConfig] = field(default_factory=dict)
    resources: dict[RunKey, dict] = field(default_factory=dict)  # {num_cpus, num_gpus} per run (--executor ray)

    def keys(self, label: str | None = None) -> list[RunKey]:
        return [k for k in self.configs if label is None or k.label == label]

    def result_folder(self, key: RunKey) -> Path:
        return key.folder(self.results_dir)


def _orders(spec, marketplaces: list[str], where: str) -> list[tuple[str, ...]]:
    """A list of sequences, or {random: n, seed: s}: n distinct seeded permutations of the base marketplaces."""
    if spec is None:
        return [tuple(marketplaces)]
    if isinstance(spec, dict):
        unknown = set(spec) - {"random", "seed"}
        n = spec.get("random")
        if unknown or not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise FrkitInputError(f"{where}: orders {spec!r}: expected a list of marketplace sequences or "
                                  "{random: <n >= 1>, seed: <int>}")
        total = int(np.prod(range(1, len(marketplaces) + 1)))
        if n > total:
            raise FrkitInputError(f"{where}: orders: {n} random orders asked for, but {len(marketplaces)} marketplaces "
                                  f"have only {total}")
        rng = np.random.default_rng(spec.get("seed", 0))
        picked: list[tuple[str, ...]] = []
        while len(picked) < n:
            order = tuple(marketplaces[i] for i in rng.permutation(len(marketplaces)))
            if order not in picked:
                picked.append(order)
        return picked
    if not isinstance(spec, list) or not spec:
        raise FrkitInputError(f"{where}: orders must be a non-empty list of marketplace sequences, got {spec!r}")
    out = []
    for entry in spec:
        if not isinstance(entry, list) or not all(isinstance(m, str) for m in entry):
            raise FrkitInputError(f"{where}: orders entry {entry!r} is not a list of marketplace names; "
                                  f"known names: {marketplaces}")
        unknown = [m for m in entry if m not in marketplaces]
        repeated = sorted({m for m in entry if entry.count(m) > 1})
        if unknown or repeated or len(entry) != len(marketplaces):
            problem = (f"unknown marketplace(s) {unknown}" if unknown else f"repeated {repeated}" if repeated
                       else f"{len(entry)} marketplaces, expected {len(marketplaces)}")
            raise FrkitInputError(f"{where}: orders entry {entry!r}: {problem}; each order is a sequence of all the "
                                  f"base's marketplaces {marketplaces}, each once")
        out.append(tuple(entry))
    if len(set(out)) < len(out):
        raise FrkitInputError(f"{where}: orders {spec!r} lists an order twice")
    return out


def load_sweep(path: str | Path, overrides: dict | None = None) -> Sweep:
    """Read and validate a sweep file; ``overrides`` (e.g. from the command line) apply to every run."""
    path = Path(path)
    if not path.is_file():
        raise FrkitInputError(f"sweep file {path} does not exist")
    spec = read_params(path)
    unknown = set(spec) - SWEEP_KEYS
    if unknown:
        raise FrkitInputError(f"sweep file {path}: unknown key(s) {sorted(unknown)}; expected {sorted(SWEEP_KEYS)}")
    for key in ("base", "runs"):
        if key not in spec:
            raise FrkitInputError(f"sweep file {path}: missing key {key!r}")
    base = path.parent / spec["base"]
    if not base.is_file():
        base = resolve(spec["base"])
    if not base.is_file():
        raise FrkitInputError(f"sweep file {path}: base params file {spec['base']} does not exist "
                              f"(looked beside the sweep file and in the project root)")
    base_params = read_params(base)
    name = spec.get("name", path.stem)
    seeds = spec.get("seeds", [0])
    if not isinstance(seeds, list) or not seeds or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds):
        raise FrkitInputError(f"sweep file {path}: seeds must be a non-empty list of integers, got {seeds!r}")
    if not isinstance(spec["runs"], dict) or not spec["runs"]:
        raise FrkitInputError(f"sweep file {path}: runs must be a mapping of label: {{key: value}}")
    base_cfg = make_config({**base_params, **spec.get("overrides", {})}, source=f"{path} (base + overrides)")
    default_orders = _orders(spec.get("orders"), base_cfg.marketplaces, f"sweep file {path}")
    sweep = Sweep(path=path, name=name, base=base, seeds=seeds, orders=default_orders,
                  baseline=spec.get("baseline", "independent"), results_dir=resolve(spec.get("results", f"results/{name}")),
                  labels=list(spec["runs"]))
    from frkit.sweep_ray import resources

    default_resources = spec.get("resources") or {}
    if not isinstance(default_resources, dict):
        raise FrkitInputError(f"sweep file {path}: resources must be a mapping {{num_cpus: 1, num_gpus: 0}}")
    for label, run_values in spec["runs"].items():
        run_values = dict(run_values or {})
        where = f"sweep file {path} (run {label!r})"
        own = run_values.pop("resources", None) or {}
        if not isinstance(own, dict):
            raise FrkitInputError(f"{where}: resources must be a mapping {{num_cpus: 1, num_gpus: 0}}")
        need = resources({**default_resources, **own}, where)
        orders = _orders(run_values.pop("orders"), base_cfg.marketplaces, where) if "orders" in run_values else default_orders
        for order, seed in itertools.product(orders, seeds):
            key = RunKey(label, order, seed)
            values = {**base_params, **spec.get("overrides", {}), **run_values, **(overrides or {}),
                      "seed": seed, "marketplaces": list(order), "run_name": f"{name}/{label}/{key.order_tag}/seed{seed}"}
            sweep.configs[key] = make_config(values, source=where)
            sweep.resources[key] = need
    return sweep


def _is_finished(folder: Path) -> bool:
    return (folder / "metrics.json").is_file()


def check_results_match(sweep: Sweep, key: RunKey, cfg: BaseRunConfig) -> None:
    """Results kept for a run must have been made with the run's parameters now: a changed base file or sweep
    entry would otherwise be summarised with numbers from other settings."""
    from frkit.artifacts import RESUME_FREE_KEYS, LEGACY_VALUES
    from frkit.config import default_params

    folder = sweep.result_folder(key)
    saved = yaml.safe_load((folder / "params.yaml").read_text(encoding="utf-8")) if (folder / "params.yaml").is_file() else None
    if saved is None:
        raise FrkitInputError(f"{folder}: results without params.yaml; delete the folder to run {key} again")
    now = cfg.model_dump()
    saved = {**{k: v for k, v in {**default_params(), **LEGACY_VALUES}.items() if k not in saved}, **saved}
    if saved.get("precision") == "auto" and now.get("precision") == "fp32" and _ran_fp32_or_unrecorded(folder):
        saved["precision"] = "fp32"  # what auto resolved to there; see _ran_fp32_or_unrecorded
    changed = sorted(k for k in set(saved) | set(now) if k not in RESUME_FREE_KEYS and saved.get(k) != now.get(k))
    if changed:
        diffs = ", ".join(f"{k}: {saved.get(k)!r} -> {now.get(k)!r}" for k in changed[:6])
        raise FrkitInputError(f"results of {key} in {folder} were made with other parameters ({diffs}); "
                              "delete that folder to run it again, or restore the parameters")


def _ran_fp32_or_unrecorded(folder: Path) -> bool:
    """Whether results made with ``precision: auto`` count for a sweep that now asks for fp32: yes where the run
    recorded fp32, and where it recorded nothing (runs from before frkit recorded it: the summary's precision
    column shows them as ``?``, never as fp32); no where any step ran under bf16 autocast."""
    from frkit.reports.compare import UNRECORDED, run_precision

    try:
        steps = json.loads((folder / "progress.json").read_text(encoding="utf-8")).get("steps", [])
    except (OSError, UnicodeDecodeError, ValueError, AttributeError):
        raise FrkitInputError(f"{folder / 'progress.json'}: not readable; it holds the run's steps: restore it, or "
                              "delete the folder to run it again") from None
    return run_precision(folder, steps) in ("fp32", UNRECORDED)


def export_run(run_dir: Path, target: Path) -> None:
    """Copy a finished run's small files (never checkpoints or tensors) into the results folder, atomically."""
    tmp = target.with_name(target.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for name in RESULT_FILES:
        if (run_dir / name).is_file():
            shutil.copy2(run_dir / name, tmp / name)
    atomic.replace_dir(tmp, target)


def run_sweep(path: str | Path, only: list[str] | None = None, overrides: dict | None = None, jobs: int = 1,
              seeds: list[int] | None = None, orders: list[str] | None = None, executor: str = "local",
              address: str | None = None):
    """Train every (run, order, seed) of the sweep file whose results are not there yet, then summarise.

    ``only`` / ``seeds`` / ``orders`` (order tags such as ``en-es-ja``) pick a part of the sweep. ``executor``:
    ``"local"`` (processes here, ``jobs`` at once) or ``"ray"`` (a task per run on the Ray cluster at ``address``;
    none: a local Ray instance)."""
    from frkit.runner import run

    if jobs < 1:
        raise FrkitInputError(f"--jobs {jobs}: expected a whole number >= 1")
    if executor not in EXECUTORS:
        raise FrkitInputError(f"--executor {executor!r}: expected one of {list(EXECUTORS)}")
    if address is not None and executor != "ray":
        raise FrkitInputError(f"--address {address}: only with --executor ray")
    sweep = load_sweep(path, overrides)
    if executor == "ray":
        from frkit.sweep_ray import connect

        connect(address)  # Ray installed and a cluster there, or the command that fixes it, before any run
    known_orders = sorted({k.order_tag for k in sweep.configs})
    for given, known, flag in ((only, sweep.labels, "--only"), (seeds, sweep.seeds, "--seeds"),
                               (orders, known_orders, "--orders")):
        unknown = sorted(set(given or []) - set(known))
        if unknown:
            raise FrkitInputError(f"sweep file {path}: {flag} {unknown} not among its {known}")
    # seed-major, then order: a stopped sweep already holds a complete comparison for its first seed and order
    rank = {(s, o): i for i, (s, o) in enumerate(itertools.product(sweep.seeds, _all_orders(sweep)))}
    todo = [(key, cfg) for key, cfg in sweep.configs.items()
            if (not only or key.label in only) and (not seeds or key.seed in seeds) and (not orders or key.order_tag in orders)]
    todo.sort(key=lambda item: rank[(item[0].seed, item[0].order)])
    pending = []
    for key, cfg in todo:
        if _is_finished(sweep.result_folder(key)):
            check_results_match(sweep, key, cfg)
            continue  # committed results of these very parameters: nothing to train
        if _is_finished(cfg.run_dir):
            export_run(cfg.run_dir, sweep.result_folder(key))  # finished earlier, not yet exported
            continue
        pending.append((key, cfg))
    print(f"== {sweep.name}: {len(todo) - len(pending)} of {len(todo)} runs already have results; "
          f"{len(pending)} to train", flush=True)
    if executor == "ray":
        from frkit.sweep_ray import run_on_ray

        run_on_ray(sweep, pending, address, export_run)
    elif jobs <= 1:
        for key, cfg in pending:
            print(f"== {key}", flush=True)
            run(cfg)
            export_run(cfg.run_dir, sweep.result_folder(key))
    else:
        _run_parallel(sweep, pending, jobs)
    return summarize_sweep(sweep)


def _all_orders(sweep: Sweep) -> list[tuple[str, ...]]:
    return list(dict.fromkeys(k.order for k in sweep.configs))


def _run_parallel(sweep: Sweep, todo: list, jobs: int) -> None:
    """``jobs`` runs at a time, each in its own fresh process (spawn: safe with CUDA). A run that fails, or whose
    process dies (killed, out of memory), fails alone: unlike a process pool, which breaks for every queued run
    when one of its processes dies, the other runs go on."""
    threads = max(1, (os.cpu_count() or 1) // jobs)
    failed = []
    ctx = multiprocessing.get_context("spawn")
    pool = ThreadPoolExecutor(max_workers=jobs)  # threads only wait on the run processes
    try:
        futures = {pool.submit(_run_in_process, ctx, key, cfg, threads): (key, cfg) for key, cfg in todo}
        for key, cfg in todo:
            print(f"== {key}: log in {_log_path(cfg)}", flush=True)
        for future in as_completed(futures):
            key, cfg = futures[future]
            error = future.result()
            if not error:
                export_run(cfg.run_dir, sweep.result_folder(key))
            reason = f"failed: {error.strip().splitlines()[-1]}" if error else "done"
            print(f"== {key}: {reason}", flush=True)
            if error:
                failed.append(f"{key}:\n{error}")
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)  # Ctrl-C: start no queued run (the running ones got it too)
        raise
    pool.shutdown()
    if failed:
        raise RuntimeError("sweep runs failed (finished runs are kept):\n" + "\n".join(failed))


def _run_in_process(ctx, key, cfg, threads: int) -> str | None:
    """One run in a spawned process: None when it finished, else its traceback or how its process died."""
    receive, send = ctx.Pipe(duplex=False)
    process = ctx.Process(target=_process_main, args=(cfg.model_dump(), threads, str(_log_path(cfg)), send),
                          name=f"frkit {key}", daemon=False)
    process.start()
    send.close()  # the child holds the only sending end now: its death reads as end-of-file here
    try:
        error = receive.recv()
    except EOFError:
        process.join()
        code = process.exitcode
        if code is not None and code < 0:
            how = f"its process died (killed by {signal.Signals(-code).name}) before reporting: killed, or out of memory?"
        else:
            how = f"its process exited with code {code} before reporting (its error went to the sweep's stderr)."
        return f"{how} Its finished marketplaces are kept in {cfg.run_dir}; run the sweep again to resume it\n"
    finally:
        receive.close()
    process.join()
    return error


def _process_main(values: dict, threads: int, log_path: str, send) -> None:
    """Entry point of a run's process: the worker body, its outcome sent back through the pipe."""
    send.send(_run_in_worker(values, threads, log_path))
    send.close()


def _log_path(cfg) -> Path:
    """Beside the run folder, not in it: a run started afresh (resume: false) moves its old folder aside."""
    return cfg.run_dir.with_name(f"{cfg.run_dir.name}.log")


def _run_in_worker(values: dict, threads: int, log_path: str) -> str | None:
    """Worker body: rebuild the config, log to the run's log file, return the traceback text on failure. The
    process's pid goes beside the log (``seed0.pid``): who runs it, for ``kill`` or a debugger."""
    import torch

    from frkit.runner import run

    torch.set_num_threads(threads)
    cfg = make_config(values)
    Path(log_path).parent.mkdir(parents=True, exist_ok=True)
    atomic.write_text(Path(log_path).with_suffix(".pid"), f"{os.getpid()}\n")
    handler = logging.FileHandler(log_path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s: %(message)s"))
    logging.getLogger().addHandler(handler)
    logging.getLogger().setLevel(logging.INFO)
    try:
        run(cfg, show_progress=False)
        return None
    except BaseException:  # noqa: BLE001 - reported to the parent, which decides
        error = traceback.format_exc()
        logging.getLogger(__name__).error("run failed:\n%s", error)  # kept in the run's log
        return error
    finally:
        logging.getLogger().removeHandler(handler)
        handler.close()


def summarize_sweep(sweep: Sweep, write: bool = True):
    """The comparison tables of the sweep's results folder (``frkit.reports.compare``), written beside them."""
    from frkit.reports.compare import collect, write_summary

    results = collect(sweep)
    if write:
        text = write_summary(sweep, results)
        print(text)
    return results


__all__ = ["load_sweep", "run_sweep", "summarize_sweep", "export_run", "Sweep", "RunKey"]
