"""Zero extra inference latency (FR-LoRA 5.6.4): merged adapter vs base model vs unmerged adapter.

Prints median inference time per batch and the ratios merged/base (goal 0.97-1.03) and
merged/unmerged. Real e5-small geometry (12 layers, hidden 384) with random weights; LoRA r=64 on q/k/v.

    python benchmarks/bench_merge.py [--batch 64] [--length 64] [--repeats 20] [--device cuda]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from transformers import BertConfig, BertModel

from frkit.models.cross_encoder import CrossEncoder
from frkit.models.merge import merged_cross_encoder
from frkit.models.peft_adapters import add_adapter, lora_config


def timed(models: dict, ids, mask, head, repeats, device) -> dict[str, float]:
    """Median time per model; the models take turns in every round so load changes hit all alike."""
    times = {k: [] for k in models}
    with torch.inference_mode():
        for i in range(repeats + 3):
            for key, model in models.items():
                if device.type == "cuda":
                    torch.cuda.synchronize()
                t0 = time.perf_counter()
                model(ids, mask, head=head)
                if device.type == "cuda":
                    torch.cuda.synchronize()
                if i >= 3:  # warm-up rounds
                    times[key].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--length", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = ap.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=20000, hidden_size=384, num_hidden_layers=12, num_attention_heads=12, intermediate_size=1536
    )
    base = CrossEncoder(BertModel(config, add_pooling_layer=False), 384).to(device)
    base.add_head("m")
    adapted = CrossEncoder(BertModel(config, add_pooling_layer=False), 384).to(device)
    adapted.load_state_dict(base.state_dict(), strict=False)
    adapted.encoder = add_adapter(adapted.encoder, "m", lora_config(64, 16, 0.0, ["query", "key", "value"]))
    adapted.add_head("m")
    with torch.no_grad():
        for n, p in adapted.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.01)
    merged = merged_cross_encoder(adapted, "m")
    for m in (base, adapted, merged):
        m.eval()
    ids = torch.randint(5, 20000, (args.batch, args.length), device=device)
    mask = torch.ones_like(ids)
    t = timed({"base": base, "unmerged": adapted, "merged": merged}, ids, mask, "m", args.repeats, device)
    t_base, t_unmerged, t_merged = t["base"], t["unmerged"], t["merged"]
    print(f"device {device}, batch {args.batch} x {args.length} tokens, median of {args.repeats}")
    print(f"base      {t_base * 1e3:8.2f} ms")
    print(f"unmerged  {t_unmerged * 1e3:8.2f} ms  (LoRA r=64 on q/k/v)")
    print(f"merged    {t_merged * 1e3:8.2f} ms")
    print(f"merged / base     = {t_merged / t_base:.3f}   (goal 0.97-1.03)")
    print(f"merged / unmerged = {t_merged / t_unmerged:.3f}")


if __name__ == "__main__":
    main()
