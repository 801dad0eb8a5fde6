"""Cost of FR-LoRA's core math on a BERT of the paper's size (MiniLM-L12: hidden 384, 12 layers, 12
heads, FFN 1536; random weights, 30k vocabulary; sequence length 64).

    python benchmarks/bench_fisher.py                 # cuda if available (N = 256), else cpu (N = 32)
    python benchmarks/bench_fisher.py --device cpu --n 16 --repeats 3

Prints medians of ``--repeats`` timed runs after one warm-up, and four ratios with their goals:
exact Fisher (Eq. 3) over N samples / one training epoch over the same N (batch 32, AdamW) <= 2.0;
exact Fisher / per-sample backward loop <= 0.1; EWC step / plain step <= 1.10; FR-LoRA step (LoRA r=8
on q/k/v + Eq. 4) / plain LoRA step <= 1.10.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from peft import LoraConfig, get_peft_model
from torch import nn
from transformers import BertConfig, BertModel

from frkit.core.fisher import diagonal_fisher
from frkit.core.lora_delta import effective_delta_w
from frkit.core.penalties import ewc_penalty, fr_inverse_fisher, fr_penalty_precomputed


class Encoder(nn.Module):
    """encoder + one head on [CLS], the kit's cross-encoder in miniature (kept local: a benchmark
    should not move when the model wrapper does)."""

    def __init__(self, encoder: nn.Module, hidden: int):
        super().__init__()
        self.encoder = encoder
        self.head = nn.Linear(hidden, 2)

    def forward(self, input_ids, attention_mask, **_):
        return self.head(self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state[:, 0])


def forward(model, batch):
    return model(**batch)


def make_model(device, vocab: int) -> Encoder:
    cfg = BertConfig(
        vocab_size=vocab,
        hidden_size=384,
        num_hidden_layers=12,
        num_attention_heads=12,
        intermediate_size=1536,
        max_position_embeddings=512,
    )
    return Encoder(BertModel(cfg, add_pooling_layer=False), 384).to(device)


def make_data(n: int, seq_len: int, vocab: int, device, batch_size: int) -> list[dict]:
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(1, vocab, (n, seq_len), generator=g)
    lengths = torch.randint(seq_len // 2, seq_len + 1, (n,), generator=g)
    mask = (torch.arange(seq_len)[None] < lengths[:, None]).long()
    labels = torch.randint(0, 2, (n,), generator=g)
    batches = []
    for i in range(0, n, batch_size):
        batches.append(
            {
                "input_ids": (ids * mask)[i : i + batch_size].to(device),
                "attention_mask": mask[i : i + batch_size].to(device),
                "labels": labels[i : i + batch_size].to(device),
            }
        )
    return batches


def timed(fn, device, repeats: int) -> float:
    """Median seconds of ``repeats`` runs after one warm-up run."""

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    fn()
    sync()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def train_epoch(model, batches, opt, penalty=None):
    model.train()
    for batch in batches:
        logits = forward(model, batch)
        loss = nn.functional.cross_entropy(logits, batch["labels"])
        if penalty is not None:
            loss = loss + penalty()
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)


def per_sample_loop(model, batches, names):
    """What the Fisher replaces: one backward of log p(y|x) per sample, squared, summed."""
    model.eval()
    params = dict(model.named_parameters())
    total = {n: torch.zeros_like(params[n]) for n in names}
    for batch in batches:
        for b in range(len(batch["labels"])):
            one = {k: v[b : b + 1] for k, v in batch.items()}
            logp = torch.log_softmax(forward(model, one), -1)[0, one["labels"][0]]
            for n, g in zip(names, torch.autograd.grad(logp, [params[n] for n in names])):
                total[n].add_(g.square())
    return total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--n", type=int, default=None, help="samples (default 256 on cuda, 32 on cpu)")
    ap.add_argument("--seq-len", type=int, default=64)
    ap.add_argument("--vocab", type=int, default=30_000)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--chunk-size", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--steps", type=int, default=10, help="training steps per timed step measurement")
    args = ap.parse_args()
    device = torch.device(args.device)
    n = args.n or (256 if device.type == "cuda" else 32)
    torch.manual_seed(0)
    model = make_model(device, args.vocab)
    data = make_data(n, args.seq_len, args.vocab, device, args.batch_size)
    names = [k for k, _ in model.named_parameters()]
    rows = []

    # --- Fisher vs a training epoch vs the per-sample loop -------------------------------------------
    def fisher():
        return diagonal_fisher(model, data, forward, names, chunk_size=args.chunk_size)

    opt = torch.optim.AdamW(model.parameters(), lr=1e-5)
    t_fisher = timed(fisher, device, args.repeats)
    t_epoch = timed(lambda: train_epoch(model, data, opt), device, args.repeats)
    t_loop = timed(lambda: per_sample_loop(model, data, names), device, max(1, args.repeats // 2))
    rows += [
        ("exact Fisher, N samples", t_fisher),
        ("training epoch, N samples", t_epoch),
        ("per-sample loop, N samples", t_loop),
    ]

    # --- EWC step vs plain step ---------------------------------------------------------------------
    enc_params = dict(model.encoder.named_parameters())
    fisher_enc = {k: torch.rand_like(p) for k, p in enc_params.items()}
    anchor = {k: p.detach().clone() for k, p in enc_params.items()}
    steps = [data[i % len(data)] for i in range(args.steps)]
    t_plain = timed(lambda: train_epoch(model, steps, opt), device, args.repeats) / args.steps
    t_ewc = (
        timed(
            lambda: train_epoch(model, steps, opt, lambda: ewc_penalty(enc_params, anchor, fisher_enc, 1.0)),
            device,
            args.repeats,
        )
        / args.steps
    )
    rows += [("plain step", t_plain), ("EWC step (Eq. 2)", t_ewc)]

    # --- FR-LoRA step vs plain LoRA step ------------------------------------------------------------
    model.encoder = get_peft_model(
        model.encoder, LoraConfig(r=8, lora_alpha=16, target_modules=["query", "key", "value"])
    )
    lora_params = [p for p in model.parameters() if p.requires_grad]
    lora_opt = torch.optim.AdamW(lora_params, lr=1e-4)
    inv = fr_inverse_fisher(
        {k: torch.rand(384, 384, device=device) for k in effective_delta_w(model.encoder, "default")}, 1e-8
    )
    t_lora = timed(lambda: train_epoch(model, steps, lora_opt), device, args.repeats) / args.steps
    t_fr = (
        timed(
            lambda: train_epoch(
                model,
                steps,
                lora_opt,
                lambda: fr_penalty_precomputed(effective_delta_w(model.encoder, "default"), inv, 1e-4),
            ),
            device,
            args.repeats,
        )
        / args.steps
    )
    rows += [("plain LoRA step", t_lora), ("FR-LoRA step (Eq. 4)", t_fr)]

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu x{torch.get_num_threads()} threads"
    print(
        f"device: {name}; N = {n}, seq_len = {args.seq_len}, batch = {args.batch_size}, "
        f"chunk = {args.chunk_size}, median of {args.repeats}"
    )
    for label, t in rows:
        print(f"  {label:<30} {t * 1e3:10.1f} ms")
    print(f"  {'ratio':<42} {'value':>7}  goal")
    for label, value, goal in [
        ("exact Fisher / training epoch", t_fisher / t_epoch, "<= 2.0"),
        ("exact Fisher / per-sample loop", t_fisher / t_loop, "<= 0.1"),
        ("EWC step / plain step", t_ewc / t_plain, "<= 1.10"),
        ("FR-LoRA step / plain LoRA step", t_fr / t_lora, "<= 1.10"),
    ]:
        print(f"  {label:<42} {value:7.3f}  {goal}")


if __name__ == "__main__":
    main()
