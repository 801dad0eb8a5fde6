"""Training and evaluation throughput on the real encoder and STS-B, side by side in one run.

    python benchmarks/bench_throughput.py [--train-pairs 512] [--eval-pairs 1379] [--json out.json]

Prints pairs/s for
  * training (frkit's loop, one epoch): fp32 vs bf16 autocast, length-bucketed vs plain shuffled batches;
  * evaluation: fp32 vs bf16, length-sorted vs table-order batches;
  * frkit's sequential training loop vs a plain Hugging Face ``Trainer`` fine-tuning of the same encoder on the
    same pairs with its defaults (batch size matched), the peer a user would otherwise pick.
On a CPU without AMX / AVX512-BF16 bf16 is emulated (many times slower): its rows are then measured on a small
sample (``--bf16-pairs``) so that the figure is still printed, and marked as such. Goals (issue 10): bf16 train
>= 1.6x fp32, bf16 eval >= 3x fp32, frkit >= 1.5x Trainer, length-sorted eval >= 1.3x unsorted.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch

from frkit.config import make_config
from frkit.data import load_marketplaces
from frkit.data.batching import make_loader
from frkit.models.cross_encoder import CrossEncoder
from frkit.models.encoder import load_encoder, load_tokenizer
from frkit.models.source import prepare_model_source
from frkit.precision import bf16_support, cpu_model
from frkit.records import git_revision
from frkit.train import TrainSettings, cross_entropy_loss, fit, predict_scores

ROOT = Path(__file__).resolve().parents[1]


def setup(args):
    cfg = make_config(
        dict(
            data_source="stsb",
            data_path=args.data,
            marketplaces=["en"],
            max_length=args.max_length,
            model_name_or_path=args.model,
            trim_vocab=True,
            parallel_pairs="shared",
        )
    )
    marketplace = load_marketplaces("stsb", cfg.data_dir, ["en"], parallel_pairs="shared")[0]
    source = prepare_model_source(cfg, [marketplace])
    return cfg, marketplace, source, load_tokenizer(source)


def new_model(source, seed=0):
    torch.manual_seed(seed)
    encoder = load_encoder(source)
    model = CrossEncoder(encoder, encoder.config.hidden_size)
    model.add_head("en")
    return model


def bench_train(source, tokenizer, table, precision, length_batching, batch_size, max_length) -> float:
    model = new_model(source)
    loader = make_loader(
        table, tokenizer, max_length, batch_size, shuffle=True, seed=0, length_batching=length_batching
    )
    settings = TrainSettings(lr=5e-5, epochs=1, precision=precision, show_progress=False, patience=0)
    started = time.perf_counter()
    fit(model, list(model.parameters()), loader, cross_entropy_loss("en"), lambda: 0.5, settings)
    return len(table) / (time.perf_counter() - started)


def bench_eval(source, tokenizer, table, precision, length_batching, batch_size, max_length) -> float:
    model = new_model(source)
    loader = make_loader(table, tokenizer, max_length, batch_size, shuffle=False, length_batching=length_batching)
    predict_scores(
        model, make_loader(table.head(batch_size), tokenizer, max_length, batch_size, False), "en", precision
    )  # warm-up
    started = time.perf_counter()
    predict_scores(model, loader, "en", precision)
    return len(table) / (time.perf_counter() - started)


def _length_grouping(arguments, on: bool) -> dict:
    """Trainer's length grouping by its name in this transformers: ``group_by_length=True`` (4.x) or
    ``train_sampling_strategy="group_by_length"`` (5.x)."""
    import inspect

    if not on:
        return {}
    names = inspect.signature(arguments).parameters
    return {"group_by_length": True} if "group_by_length" in names else {"train_sampling_strategy": "group_by_length"}


def bench_hf_trainer(source, tokenizer, table, batch_size, max_length, tuned: bool = False) -> float:
    """transformers' Trainer with its defaults (AdamW, linear schedule, fp32 on CPU, no length grouping), or with
    ``tuned`` the two settings a user would turn on for speed: ``bf16=True`` (autocast; on a CPU without fast bf16
    it is emulated, slow) and length grouping (batches of similar length, as frkit's bucketing)."""
    import datasets
    from transformers import AutoModelForSequenceClassification, DataCollatorWithPadding, Trainer, TrainingArguments

    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(str(source), num_labels=2)
    data = datasets.Dataset.from_pandas(table[["text_a", "text_b", "label"]].reset_index(drop=True))
    data = data.map(
        lambda b: tokenizer(b["text_a"], b["text_b"], truncation=True, max_length=max_length),
        batched=True,
        remove_columns=["text_a", "text_b"],
    ).rename_column("label", "labels")
    out = ROOT / "outputs" / "bench_hf_trainer"
    args = TrainingArguments(
        output_dir=str(out),
        per_device_train_batch_size=batch_size,
        num_train_epochs=1,
        report_to=[],
        save_strategy="no",
        logging_strategy="no",
        disable_tqdm=True,
        bf16=tuned,
        use_cpu=not torch.cuda.is_available(),
        **_length_grouping(TrainingArguments, tuned),
    )
    trainer = Trainer(model=model, args=args, train_dataset=data, data_collator=DataCollatorWithPadding(tokenizer))
    started = time.perf_counter()
    trainer.train()
    return len(table) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="../shared/data/stsb_multi_mt")
    parser.add_argument("--model", default="offline:multilingual-e5-small")
    parser.add_argument("--train-pairs", type=int, default=512)
    parser.add_argument("--eval-pairs", type=int, default=1379)
    parser.add_argument("--bf16-pairs", type=int, default=32, help="sample for bf16 rows where bf16 is emulated")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--eval-batch-size", type=int, default=64)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--json", help="also write the figures here")
    parser.add_argument("--table", metavar="JSON", help="print the markdown table of a written JSON and stop")
    args = parser.parse_args()
    if args.table:
        print(markdown_table(json.loads(Path(args.table).read_text())))
        return
    load_before = os.getloadavg()

    cfg, marketplace, source, tokenizer = setup(args)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    fast_bf16, why = bf16_support(device)
    train = marketplace.train.head(args.train_pairs)
    test = marketplace.test.head(args.eval_pairs)
    small = args.train_pairs if fast_bf16 else args.bf16_pairs
    print(
        f"device: {device} ({why}); threads: {torch.get_num_threads()}; train pairs: {len(train)}, "
        f"eval pairs: {len(test)}, max_length {args.max_length}\n",
        flush=True,
    )
    bs, ebs, ml = args.batch_size, args.eval_batch_size, args.max_length
    rows = []

    def record(what, value, note=""):
        rows.append({"measure": what, "pairs/s": round(value, 1), "note": note})
        print(f"{what:<52} {value:8.1f} pairs/s {note}", flush=True)

    # training
    record("train fp32, length-bucketed (frkit default)", bench_train(source, tokenizer, train, "fp32", True, bs, ml))
    record("train fp32, plain shuffled batches", bench_train(source, tokenizer, train, "fp32", False, bs, ml))
    with _allow_bf16(fast_bf16):
        note = "" if fast_bf16 else f"(emulated bf16, {small} pairs)"
        record(
            "train bf16 autocast, length-bucketed",
            bench_train(source, tokenizer, train.head(small), "bf16", True, bs, ml),
            note,
        )
    record("train HF Trainer, defaults (fp32, batch matched)", bench_hf_trainer(source, tokenizer, train, bs, ml))
    with _allow_bf16(fast_bf16):
        note = "" if fast_bf16 else f"(emulated bf16, {small} pairs)"
        record(
            "train HF Trainer, bf16=True, group_by_length=True",
            bench_hf_trainer(source, tokenizer, train.head(small), bs, ml, tuned=True),
            note,
        )
    # evaluation
    record("eval fp32, length-sorted (frkit default)", bench_eval(source, tokenizer, test, "fp32", True, ebs, ml))
    record("eval fp32, table order", bench_eval(source, tokenizer, test, "fp32", False, ebs, ml))
    with _allow_bf16(fast_bf16):
        note = "" if fast_bf16 else f"(emulated bf16, {4 * small} pairs)"
        test_b = test if fast_bf16 else test.head(4 * small)
        record("eval bf16 autocast, length-sorted", bench_eval(source, tokenizer, test_b, "bf16", True, ebs, ml), note)

    value = {r["measure"]: r["pairs/s"] for r in rows}
    ratios = {
        "bf16 / fp32 train (goal >= 1.6)": value["train bf16 autocast, length-bucketed"]
        / value["train fp32, length-bucketed (frkit default)"],
        "bf16 / fp32 eval (goal >= 3)": value["eval bf16 autocast, length-sorted"]
        / value["eval fp32, length-sorted (frkit default)"],
        "frkit / HF Trainer train (goal >= 1.5)": value["train fp32, length-bucketed (frkit default)"]
        / value["train HF Trainer, defaults (fp32, batch matched)"],
        "frkit bf16 / HF Trainer bf16 + group_by_length": value["train bf16 autocast, length-bucketed"]
        / value["train HF Trainer, bf16=True, group_by_length=True"],
        "length-sorted / table-order eval (goal >= 1.3)": value["eval fp32, length-sorted (frkit default)"]
        / value["eval fp32, table order"],
        "length-bucketed / plain train": value["train fp32, length-bucketed (frkit default)"]
        / value["train fp32, plain shuffled batches"],
    }
    print()
    for k, v in ratios.items():
        print(f"{k:<52} {v:8.2f}x")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(
            json.dumps(
                {
                    "device": str(device),
                    "cpu": cpu_model(),
                    "bf16": why,
                    "threads": torch.get_num_threads(),
                    "torch": torch.__version__,
                    "frkit_revision": git_revision(),
                    "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                    "load_average_1min": {"before": round(load_before[0], 2), "after": round(os.getloadavg()[0], 2)},
                    "args": {k: v for k, v in vars(args).items() if k != "table"},
                    "rows": rows,
                    "ratios": ratios,
                },
                indent=2,
            )
        )


def markdown_table(result: dict) -> str:
    """The README's benchmark table, from a JSON this script wrote."""
    lines = [
        f"{result['cpu']}, {result['threads']} torch threads, torch {result['torch']}, "
        f"frkit {result['frkit_revision']}, "
        f"{result['date']} (1-min load average {result['load_average_1min']['before']} before, "
        f"{result['load_average_1min']['after']} after); bf16: {result['bf16']}.",
        "",
        "| measure | pairs/s | note |",
        "|---|---:|---|",
    ]
    lines += [f"| {r['measure']} | {r['pairs/s']:.1f} | {r['note']} |" for r in result["rows"]]
    lines += ["", "| ratio | value |", "|---|---:|"]
    lines += [f"| {k} | {v:.2f}x |" for k, v in result["ratios"].items()]
    return "\n".join(lines)


class _allow_bf16:
    """On a CPU without fast bf16 frkit refuses precision: bf16; the benchmark measures the emulated figure anyway."""

    def __init__(self, fast: bool):
        self.fast = fast

    def __enter__(self):
        import frkit.precision as precision

        self.saved = precision.cpu_flags
        if not self.fast:
            precision.cpu_flags = lambda: frozenset({"avx512_bf16"})

    def __exit__(self, *exc):
        import frkit.precision as precision

        precision.cpu_flags = self.saved


if __name__ == "__main__":
    main()
