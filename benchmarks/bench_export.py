"""What an exported model costs at inference (issue 32 item 4, FR-LoRA 5.6.4 outside the kit).

Side by side in one process, models taking turns in every round (median per batch), batch 1 and 64:
  base      frkit's CrossEncoder on the base encoder (no adapter): what serving the base costs
  unmerged  the same with a peft LoRA (r=64 on q/k/v, FR-LoRA 5.1) left unmerged
  exported  `frkit export`'s folder as transformers loads it (LoRA merged; BertForSequenceClassification)
  onnxrt    the folder's onnx/model.onnx in ONNX Runtime (where onnxruntime is installed)
Encoder: multilingual-e5-small's geometry (12 layers, hidden 384, 12 heads, FFN 1536) with random weights and a
20k vocabulary (the embedding table's size does not change latency); or a real model folder with --model.

    python benchmarks/bench_export.py [--length 64] [--repeats 20] [--threads 2]
        [--json results/benchmarks/export_latency.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import torch
import transformers
from transformers import AutoModelForSequenceClassification, BertConfig, BertModel

from frkit.export import export_onnx, to_sequence_classifier
from frkit.models.cross_encoder import CrossEncoder
from frkit.models.merge import merged_cross_encoder
from frkit.models.peft_adapters import add_adapter, lora_config
from frkit.precision import cpu_model
from frkit.records import git_revision


class _Tok:
    """The few tokenizer calls export_onnx makes, for a model without a tokenizer folder."""

    def __call__(self, a, b, padding=True, return_tensors="pt", **_):
        ids = torch.randint(5, 100, (len(a), 6))
        return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "token_type_ids": torch.zeros_like(ids)}


def build(model_dir: str | None):
    torch.manual_seed(0)
    if model_dir:
        from frkit.models.encoder import load_encoder

        encoder = load_encoder(model_dir)
        what = model_dir
    else:
        config = BertConfig(
            vocab_size=20000,
            hidden_size=384,
            num_hidden_layers=12,
            num_attention_heads=12,
            intermediate_size=1536,
            hidden_dropout_prob=0.0,
            attention_probs_dropout_prob=0.0,
        )
        encoder = BertModel(config, add_pooling_layer=False)
        what = "e5-small geometry, random weights"
    hidden = encoder.config.hidden_size
    base = CrossEncoder(encoder, hidden).eval()
    base.add_head("m")
    adapted = CrossEncoder(BertModel(encoder.config, add_pooling_layer=False), hidden)
    adapted.load_state_dict(base.state_dict(), strict=False)
    adapted.encoder = add_adapter(adapted.encoder, "m", lora_config(64, 16, 0.0, ["query", "key", "value"]))
    adapted.add_head("m")
    adapted.heads["m"].load_state_dict(base.heads["m"].state_dict())
    with torch.no_grad():
        for n, p in adapted.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.01)
    merged = merged_cross_encoder(adapted, "m")
    return what, base, adapted.eval(), merged


def timed(calls: dict, repeats: int) -> dict[str, float]:
    times = {k: [] for k in calls}
    with torch.inference_mode():
        for i in range(repeats + 3):
            for key, call in calls.items():
                t0 = time.perf_counter()
                call()
                if i >= 3:  # warm-up rounds
                    times[key].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", help="a local encoder folder (default: e5-small geometry, random weights)")
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 64])
    ap.add_argument("--length", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", help="write the figures here, e.g. results/benchmarks/export_latency.json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    what, base, adapted, merged = build(args.model)
    with tempfile.TemporaryDirectory() as tmp:
        hf = to_sequence_classifier(merged.encoder, merged.heads["m"], "bench")
        hf.save_pretrained(tmp)
        exported = AutoModelForSequenceClassification.from_pretrained(tmp).eval()
        session = None
        try:
            import onnxruntime as ort

            options = ort.SessionOptions()
            options.intra_op_num_threads = args.threads
            export_onnx(exported, _Tok(), Path(tmp) / "onnx" / "model.onnx")
            session = ort.InferenceSession(
                str(Path(tmp) / "onnx" / "model.onnx"), options, providers=["CPUExecutionProvider"]
            )
        except ImportError:
            pass
        rows = []
        for batch in args.batches:
            ids = torch.randint(5, exported.config.vocab_size, (batch, args.length))
            mask, types = torch.ones_like(ids), torch.zeros_like(ids)
            calls = {
                "base": lambda: base(ids, mask, head="m", token_type_ids=types),  # noqa: B023 - timed in this iteration
                "unmerged": lambda: adapted(ids, mask, head="m", token_type_ids=types),  # noqa: B023 - timed in this iteration
                "exported": lambda: exported(input_ids=ids, attention_mask=mask, token_type_ids=types),  # noqa: B023 - timed in this iteration
            }
            if session is not None:
                feed = {"input_ids": ids.numpy(), "attention_mask": mask.numpy(), "token_type_ids": types.numpy()}
                calls["onnxrt"] = lambda: session.run(["logits"], feed)  # noqa: B023 - timed in this iteration
            with torch.inference_mode():
                diff = float(
                    (
                        merged(ids, mask, head="m", token_type_ids=types)
                        - exported(input_ids=ids, attention_mask=mask, token_type_ids=types).logits
                    )
                    .abs()
                    .max()
                )
            t = timed(calls, args.repeats)
            rows.append(
                {
                    "batch": batch,
                    "length": args.length,
                    "ms": {k: v * 1e3 for k, v in t.items()},
                    "exported_over_base": t["exported"] / t["base"],
                    "exported_over_unmerged": t["exported"] / t["unmerged"],
                    **({"onnxrt_over_exported": t["onnxrt"] / t["exported"]} if "onnxrt" in t else {}),
                    "max_abs_logit_diff_exported_vs_frkit_merged": diff,
                }
            )
    env = {
        "model": what,
        "cpu": cpu_model(),
        "threads": args.threads,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
        "onnxruntime": getattr(__import__("onnxruntime"), "__version__", None) if session else None,
        "frkit": git_revision(),
        "measured": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "repeats": args.repeats,
        "lora": "r=64, alpha=16, q/k/v",
    }
    print(f"{what}; {env['cpu']}, {args.threads} threads, torch {torch.__version__}, median of {args.repeats}")
    keys = [k for k in ("base", "unmerged", "exported", "onnxrt") if k in rows[0]["ms"]]
    print(
        "| batch x tokens | " + " | ".join(f"{k} ms" for k in keys) + " | exported/base (goal 0.97-1.03) | "
        "exported/unmerged | onnxrt/exported | max |logit diff| |"
    )
    print("|---|" + "---:|" * (len(keys) + 4))
    for r in rows:
        print(
            f"| {r['batch']} x {r['length']} | "
            + " | ".join(f"{r['ms'][k]:.2f}" for k in keys)
            + f" | {r['exported_over_base']:.3f} | {r['exported_over_unmerged']:.3f} | "
            + (f"{r['onnxrt_over_exported']:.3f}" if "onnxrt_over_exported" in r else "-")
            + f" | {r['max_abs_logit_diff_exported_vs_frkit_merged']:.1e} |"
        )
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"environment": env, "rows": rows}, indent=2) + "\n")
        print(f"written: {args.json}")


if __name__ == "__main__":
    main()
