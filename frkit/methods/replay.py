"""Experience Replay (Rolnick et al. 2019), FR-LoRA Table 1's replay baseline.

Sequential fine-tuning of one encoder, a head per marketplace, plus a memory: after a marketplace is
learned, ``replay_samples`` of its training rows (stratified by label, seeded) stay in the buffer. Training
on marketplace t draws batches from D_t and from each buffered marketplace in one shuffled stream; a
buffered batch is scored with its own marketplace's head, so the old heads keep training with the encoder.
Early stopping watches marketplace t's validation split only, as for every other method.

The buffer is a pure function of (older marketplace, seed), so it is rebuilt from ``seen`` on resume and never
written to disk; of an older marketplace the method reads only those rows.
"""
from __future__ import annotations

from pydantic import BaseModel, Field

from frkit.data.split import subsample
from frkit.methods.base import fit_log
from frkit.methods.registry import register
from frkit.methods.sequential import Sequential
from frkit.train import cross_entropy_loss


class ReplayOptions(BaseModel):
    """Experience Replay's memory."""

    replay_samples: int = Field(200, ge=1)  # rows kept per learned marketplace (the paper does not give a size)


def replay_loss(model, batch):
    """Cross-entropy with the head of the marketplace the batch came from."""
    return cross_entropy_loss(batch["source"])(model, batch)


@register
class ExperienceReplay(Sequential):
    name = "replay"
    option_groups = (ReplayOptions,)

    def memory(self, seen) -> dict:
        """{older marketplace: its buffered rows}: a stratified, seeded sample of each learned marketplace."""
        return {m.name: subsample([m.train], self.cfg.replay_samples, self.cfg.seed, parallel=False)[0]
                for m in seen[:-1]}

    def learn(self, step, marketplace, seen):
        name = marketplace.name
        self.model.add_head(name)
        tables = {name: marketplace.train, **self.memory(seen)}
        params = list(self.model.encoder.parameters()) + [p for t in tables for p in self.model.heads[t].parameters()]
        result = self.train(self.model, params, marketplace, name, self.cfg.lr, step, loss_fn=replay_loss,
                            batches=self.mixed_batches(tables, step))
        self.learned.append(name)
        return {**fit_log(result), "replayed_rows": {t: len(rows) for t, rows in tables.items() if t != name}}
