"""Shared fixtures: a tiny random BERT with a tiny WordPiece tokenizer, and tiny PAWS-X-layout data.

Everything is made here, from configs and seeded random numbers: no network, no real weights.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import threading
import time
import warnings
import zlib
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from tokenizers import Tokenizer, models, pre_tokenizers, processors
from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

from frkit.records.checksums import write_manifest

LANGS = ("en", "es", "ja")
WORDS = {lang: [f"{lang}{i}" for i in range(40)] for lang in LANGS}
SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def tiny_bert_config(vocab_size: int) -> BertConfig:
    return BertConfig(
        vocab_size=vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )


def tiny_tokenizer(vocab: list[str]) -> PreTrainedTokenizerFast:
    """A word-level tokenizer with BERT's pair template ([CLS] a [SEP] b [SEP], segment ids 0/1)."""
    ids = {w: i for i, w in enumerate(vocab)}
    tok = Tokenizer(models.WordLevel(ids, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", ids["[CLS]"]), ("[SEP]", ids["[SEP]"])],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
    )


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("tiny_model")
    vocab = SPECIAL + [w for lang in LANGS for w in WORDS[lang]]
    tiny_tokenizer(vocab).save_pretrained(folder)
    torch.manual_seed(0)
    BertModel(tiny_bert_config(len(vocab)), add_pooling_layer=False).save_pretrained(folder)
    return folder


def make_pairs(lang: str, n: int, seed: int, id_offset: int = 0) -> list[tuple[str, str, str, int]]:
    """Paraphrase-like pairs: label 1 = same words reordered, label 0 = mostly other words."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        a = rng.sample(WORDS[lang], 5)
        label = i % 2
        b = rng.sample(a, 5) if label else rng.sample(WORDS[lang], 4) + [a[0]]
        rows.append((str(id_offset + i), " ".join(a), " ".join(b), label))
    return rows


def write_pawsx(root: Path, n_train: int = 120, n_test: int = 32, langs=LANGS) -> Path:
    """x-final/<lang>/{dev_2k,test_2k}.tsv in the release's layout; ids parallel across languages."""
    for lang in langs:
        d = root / lang
        d.mkdir(parents=True, exist_ok=True)
        for fname, n, offset in (("dev_2k.tsv", n_train, 0), ("test_2k.tsv", n_test, 10_000)):
            lines = ["id\tsentence1\tsentence2\tlabel"]
            seed = zlib.crc32(f"{lang}/{fname}".encode()) % 1000  # not hash(): salted per process
            lines += [f"{i}\t{a}\t{b}\t{y}" for i, a, b, y in make_pairs(lang, n, seed=seed, id_offset=offset)]
            (d / fname).write_text("\n".join(lines) + "\n")
    return root


@pytest.fixture(scope="session")
def tiny_pawsx(tmp_path_factory) -> Path:
    return write_pawsx(tmp_path_factory.mktemp("pawsx") / "x-final")


def tiny_run_params(outputs, model_dir, data_dir, /, **overrides) -> dict:
    """Flat params for a seconds-long run of any method on the tiny model and data (``overrides`` win, ``output_dir``
    among them: the first three are positional-only for that)."""
    params = dict(
        run_name="tiny",
        output_dir=str(outputs),
        seed=0,
        data_source="pawsx",
        data_path=str(data_dir),
        marketplaces=["en", "es", "ja"],
        model_name_or_path=str(model_dir),
        trim_vocab=False,
        max_length=32,
        epochs=2,
        batch_size=8,
        eval_batch_size=32,
        patience=1,
        lr=1e-3,
        adapter_lr=1e-2,
        lora_rank=2,
        lora_alpha=4,
        prefix_tokens=3,
    )
    params.update(overrides)
    return params


@pytest.fixture
def tiny_params(tmp_path, tiny_model_dir, tiny_pawsx):
    """Flat params for a seconds-long run of any method on the tiny model and data."""

    def make(**overrides):
        return tiny_run_params(tmp_path / "outputs", tiny_model_dir, tiny_pawsx, **overrides)

    return make


# Each notebook cell of the tests gets this long at most: a hung kernel fails the test naming the cell, well within
# pytest-timeout's limit, instead of stalling the suite (the tiny runs take seconds).
NOTEBOOK_CELL_TIMEOUT = 240


# A notebook test slower than this warns with where its time went (pytest prints warnings at the end of the CI log):
# tiny notebooks take ~12 s, and one took 254 s once in a clean-clone CI run with no record of which part was slow.
SLOW_NOTEBOOK_SECONDS = 60


def run_notebook_bounded(notebook, params_file=None, out_dir=None, **parameters):
    from frkit.notebook import run_notebook  # papermill and nbconvert load only for the notebook tests

    start = time.monotonic()
    out_nb, html = run_notebook(notebook, params_file, out_dir, execution_timeout=NOTEBOOK_CELL_TIMEOUT, **parameters)
    wall = time.monotonic() - start
    if wall > SLOW_NOTEBOOK_SECONDS:
        warnings.warn(f"{Path(notebook).name} took {wall:.0f} s: {notebook_time_breakdown(out_nb, wall)}", stacklevel=2)
    return out_nb, html


def notebook_time_breakdown(out_nb, wall: float) -> str:
    """Where an executed notebook's time went, from papermill's metadata: kernel start-up (papermill's start to the
    first cell's), the slowest cells, and what came after the kernel (HTML rendering)."""
    nb = json.loads(Path(out_nb).read_text())
    meta = nb["metadata"].get("papermill", {})
    cells = [(i, c["metadata"].get("papermill", {})) for i, c in enumerate(nb["cells"]) if c["cell_type"] == "code"]
    parts = []
    first = next((m["start_time"] for _, m in cells if m.get("start_time")), None)
    if meta.get("start_time") and first:
        startup = datetime.fromisoformat(first) - datetime.fromisoformat(meta["start_time"])
        parts.append(f"kernel start-up {startup.total_seconds():.1f} s")
    slowest = sorted(((m.get("duration") or 0.0, i) for i, m in cells), reverse=True)[:3]
    parts += [f"cell {i} {d:.1f} s" for d, i in slowest]
    if meta.get("duration") is not None:
        parts.append(f"outside papermill's record (kernel shutdown, HTML) {wall - meta['duration']:.1f} s")
    return "; ".join(parts)


def write_result(
    results: Path,
    label: str,
    seed: int,
    finals: dict,
    forgetting: float = -0.01,
    order=("en", "es", "ja"),
    trainable: int = 1000,
    seconds: float = 10.0,
    params: dict | None = None,
    precision: str | None = None,
    started: str | None = None,
    auc_matrix: list | None = None,
) -> Path:
    """A finished run's results files, written by hand: only what the summary, the claims and the figures read
    (environment.json only with ``started``, as runs made before it was recorded have none), and their sha256
    manifest, as ``frkit sweep`` exports them (a test that edits a file afterwards writes the manifest again)."""
    folder = results / label / "-".join(order) / f"seed{seed}"
    folder.mkdir(parents=True)
    (folder / "params.yaml").write_text(yaml.safe_dump({"seed": seed, "marketplaces": list(order), **(params or {})}))
    names = list(order)
    metrics = {
        "marketplaces": names,
        "final_auc": finals,
        "average_auc": float(np.mean(list(finals.values()))),
        "forgetting": forgetting,
        "backward_transfer": forgetting,
        "forward_transfer": 0.1,
        "trainable_params": {n: trainable for n in names},
        "auc_matrix": auc_matrix or [[0.8] * 3] * 3,  # each marketplace learned (just-learned AUC >= 0.70)
    }
    (folder / "metrics.json").write_text(json.dumps(metrics))
    steps = [
        {
            "step": i,
            "marketplace": n,
            "learn_seconds": seconds,
            "eval_seconds": 1.0,
            "cpu_seconds": 2 * seconds,
            **({"precision": precision} if precision else {}),
        }
        for i, n in enumerate(names)
    ]
    (folder / "progress.json").write_text(json.dumps({"steps": steps, "init_aucs": [0.5] * 3}))
    if started:
        (folder / "environment.json").write_text(json.dumps({"started": started, "sessions": [{"started": started}]}))
    write_manifest(folder)
    return folder


@contextmanager
def kill_a_run_once(outputs: Path, pattern: str, when, timeout: float, poll: float):
    """While the block runs, watch ``outputs`` for a run whose progress.json (``pattern``, a glob) holds a number of
    finished marketplaces ``when(n)`` accepts, and SIGKILL that run's process once, as the out-of-memory killer
    would (the pid lies beside the run's log, where the sweep writes it). Yields a dict that then holds the run's
    folder (``run_dir``) and its finished marketplaces (``steps``); empty if no run was seen in time."""
    killed = {}

    def watch():
        deadline = time.time() + timeout
        while time.time() < deadline and not killed:
            for progress in outputs.glob(pattern):
                run_dir = progress.parent
                pid_file = run_dir.with_name(f"{run_dir.name}.pid")
                try:
                    steps = len(json.loads(progress.read_text())["steps"])
                except (OSError, ValueError, KeyError):  # half-written: look again
                    continue
                if when(steps) and pid_file.exists():
                    os.kill(int(pid_file.read_text()), signal.SIGKILL)
                    killed.update(run_dir=run_dir, steps=steps)
                    return
            time.sleep(poll)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        yield killed
    finally:
        watcher.join(timeout=5)


def build_notebook_project(root: Path, model_dir: Path, data_dir: Path) -> Path:
    """A project as a user has it (pyproject.toml, params/demo.yaml, notebooks/, results/), on the tiny model and
    data: every notebook of the repository opens there and runs as committed, in seconds."""
    repo = Path(__file__).resolve().parents[1]
    (root / "params" / "sweeps").mkdir(parents=True)
    (root / "pyproject.toml").write_text('[project]\nname = "frkit-notebook-fixture"\n')
    demo = tiny_run_params(
        "outputs", model_dir, data_dir, run_name="demo", method="sequential", epochs=1, eval_every_steps=2
    )
    (root / "params" / "demo.yaml").write_text(yaml.safe_dump(demo))
    shutil.copytree(repo / "notebooks", root / "notebooks")
    labels = [
        "independent",
        "sequential",
        "joint",
        "lora",
        "replay",
        "ewc",
        "fr_lora",
        "fr_lora_beta0",
        "fr_dora",
        "adapter",
        "adapter_fusion",
        "attention_distillation",
        "attention_distillation_t0",
        "attention_distillation_t01",
        "attention_distillation_t05",
    ]
    sweep = {
        "base": "../demo.yaml",
        "name": "cpu_stsb",
        "seeds": [0, 1, 2],
        "results": "results/cpu_stsb",
        "runs": {label: {"method": "sequential"} for label in labels},
    }
    (root / "params" / "sweeps" / "cpu_stsb.yaml").write_text(yaml.safe_dump(sweep))
    rng = np.random.default_rng(0)
    for i, label in enumerate(labels):
        for seed in range(3):
            finals = dict(zip(["en", "es", "ja"], (0.7 + 0.005 * i + rng.normal(0, 0.01, 3)).round(4).tolist()))
            write_result(
                root / "results" / "cpu_stsb",
                label,
                seed,
                finals,
                forgetting=-0.002 * i,
                trainable=10_000 * (i + 1),
                seconds=10 + i,
            )
    strength = {
        "base": "../demo.yaml",
        "name": "cpu_stsb_ewc",
        "seeds": [0],
        "results": "results/cpu_stsb_ewc",
        "runs": {
            **{f"ewc_mean_{lam}": {"method": "ewc", "ewc_lambda": lam} for lam in (1, 100, 10000)},
            **{f"fr_lora_beta{b}": {"method": "fr_lora", "beta": b} for b in (0.0, 0.01, 1.0)},
        },
    }
    (root / "params" / "sweeps" / "cpu_stsb_ewc.yaml").write_text(yaml.safe_dump(strength))
    for label, run in strength["runs"].items():
        write_result(root / "results" / "cpu_stsb_ewc", label, 0, {"en": 0.7, "es": 0.71, "ja": 0.72}, params=run)
    return root


@pytest.fixture(scope="session")
def notebook_project(tmp_path_factory, tiny_model_dir, tiny_pawsx) -> Path:
    return build_notebook_project(tmp_path_factory.mktemp("nbproject"), tiny_model_dir, tiny_pawsx)
