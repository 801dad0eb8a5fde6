"""Experience Replay (Rolnick et al. 2019), FR-LoRA Table 1's replay baseline.

Sequential fine-tuning of one encoder, a head per marketplace, plus a memory: after a marketplace is
learned, ``replay_fraction`` of its training rows (stratified by label, seeded) stay in the buffer. Training
on marketplace t draws batches from D_t and from each buffered marketplace in one shuffled stream; a
buffered batch is scored with its own marketplace's head, so the old heads keep training with the encoder.
Early stopping watches marketplace t's validation split only, as for every other method.

The buffer is a pure function of (older marketplace, seed), so it is rebuilt from ``seen`` on resume and never
written to disk; of an older marketplace the method reads only those rows.

How much to keep (issue 29): FR-LoRA's Tables 1-2 run ER with "Buffer = 10000" and give no data sizes. Its public
benchmark is the Aicrowd (KDD Cup 2022) Shopping Queries data, us / es / jp; the reduced (Task 1, the kit's
``small_version``) training sets hold 419,653 / 152,891 / 209,094 judgements (Reddy et al. 2022, Table 2), 260,546 a
marketplace on average. A buffer of 10,000 rows per old marketplace is then 10,000 / 260,546 = 3.84% of its training
data (2.4% of us, 6.5% of es, 4.8% of jp), so ``replay_fraction`` defaults to 0.0384. Assumed where the paper is
silent: the buffer is counted per old marketplace (read as one buffer shared by the older two, it would be half
that at the third marketplace), and the reduced version (the larger Task 2 set, 661,091 train rows a marketplace on
average, would give 1.5%). ``replay_fraction: 0.5`` is the 50% variant (200 of 400 rows on params/stsb.yaml);
``replay_fraction: null`` keeps ``replay_samples`` rows, what the kit did before the key (the committed
results/cpu_stsb runs: 200 rows each).
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from frkit.data.split import subsample
from frkit.methods.base import fit_log
from frkit.methods.registry import register
from frkit.methods.sequential import Sequential
from frkit.train import cross_entropy_loss

PAPER_BUFFER = 10_000  # FR-LoRA Tables 1-2: "ER (Buffer = 10000)"
# the Shopping Queries reduced version's training judgements per marketplace (Reddy et al. 2022, Table 2)
ESCI_SMALL_TRAIN_ROWS = {"us": 419_653, "es": 152_891, "jp": 209_094}
# buffer / average training rows of a marketplace: 10,000 / 260,546 = 0.0384 (see the module docstring)
PAPER_REPLAY_FRACTION = round(PAPER_BUFFER / (sum(ESCI_SMALL_TRAIN_ROWS.values()) / len(ESCI_SMALL_TRAIN_ROWS)), 4)


class ReplayOptions(BaseModel):
    """Experience Replay's memory: a fraction of each learned marketplace's training rows, or a fixed count."""

    # share of each old marketplace's training rows kept (the paper's proportion; null: replay_samples rows)
    replay_fraction: float | None = Field(PAPER_REPLAY_FRACTION, gt=0, le=1)
    replay_samples: int = Field(200, ge=1)  # rows kept per learned marketplace, used only with replay_fraction: null


def buffer_rows(train_rows: int, fraction: float | None, samples: int) -> int:
    """Rows of an old marketplace's ``train_rows`` that stay in the memory: ``round(fraction x train_rows)``, at least
    one (a buffered marketplace always keeps a row), or ``samples`` when ``fraction`` is None."""
    if fraction is None:
        return samples
    return max(1, round(fraction * train_rows))


def replay_loss(model, batch):
    """Cross-entropy with the head of the marketplace the batch came from."""
    return cross_entropy_loss(batch["source"])(model, batch)


@register
class ExperienceReplay(Sequential):
    name = "replay"
    option_groups = (ReplayOptions,)

    def memory(self, seen) -> dict:
        """{older marketplace: its buffered rows}: a stratified, seeded sample of each learned marketplace."""
        c = self.cfg
        return {
            m.name: subsample(
                [m.train], buffer_rows(len(m.train), c.replay_fraction, c.replay_samples), c.seed, parallel=False
            )[0]
            for m in seen[:-1]
        }

    def learn(self, step, marketplace, seen):
        name = marketplace.name
        self.add_head(self.model, name)
        tables = {name: marketplace.train, **self.memory(seen)}
        heads = {id(h): h for h in (self.model.heads[t] for t in tables)}  # once each: a shared head is one module
        params = list(self.model.encoder.parameters()) + [p for h in heads.values() for p in h.parameters()]
        result = self.train(
            self.model,
            params,
            marketplace,
            name,
            self.cfg.lr,
            step,
            loss_fn=replay_loss,
            batches=self.mixed_batches(tables, step),
        )
        self.learned.append(name)
        return {**fit_log(result), "replayed_rows": {t: len(rows) for t, rows in tables.items() if t != name}}
