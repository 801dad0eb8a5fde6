"""Progressive Prefix: Progressive Prompts (Razdaibiedina et al. 2023) with prefix tuning's key/value prefixes.

for each marketplace t (frozen base, ``frkit/models/prefix_stack.py``):
  1. a new prefix P_t (``prefix_tokens`` key/value positions in every layer, as peft's prefix tuning; with
     ``prefix_projection`` produced by Li & Liang's MLP) and a new head t
  2. train P_t and head t on D_t with the older prefixes P_1..P_{t-1} frozen and concatenated with it in
     every layer: the attention of each layer sees keys/values [P_1; ...; P_t; x]
  3. freeze P_t; with the MLP, keep only the prefix it produces (the paper keeps the prompt, not its MLP)
Marketplace k is scored with P_1..P_k, exactly the prefixes it was trained with, and its own head, so a learned
marketplace's scores never change (the paper's "no forgetting": its released code scores task k right after
learning it, with the prompts learned up to then); marketplaces not learned yet are scored with every learned
prefix and the latest head.

Where this departs from the paper, and why:
  * The paper prepends soft prompt *tokens* to the input embeddings; FR-LoRA's row is "Progressive Prefix", and
    the kit's prefix is peft's prefix tuning (a key/value prefix per layer), so the prompts here are
    per-layer prefixes. With one marketplace the model is peft's prefix tuning (logits equal, tested).
  * Concatenation order: the paper writes [P_t; ...; P_1; x]; key/value positions carry no position embedding
    and attention does not depend on their order, so [P_1; ...; P_t] computes the same.
  * The tokens are numbered from P = |P_1| + ... + |P_k| (what peft does for BERT with one prefix: it is a cache
    of length P), so marketplace k always sees the same positions it was trained with.
  * The paper's optional residual MLP reparameterisation (prompt + MLP(prompt)) is replaced by peft's
    ``prefix_projection`` MLP (no residual; off by default, as in peft); a new prefix starts from peft's random
    initialisation (the paper's prompts start from random vocabulary embeddings, which a key/value prefix has not).
  * peft's prompt learning drops ``token_type_ids``; this one passes them to the encoder like every other
    method of the kit (the offline e5 tokenizer has none, so the benchmark is not affected).
"""

from __future__ import annotations

from pathlib import Path

from safetensors.torch import load_file

from frkit import atomic
from frkit.errors import FrkitInputError
from frkit.methods.base import Method, fit_log
from frkit.methods.options import PrefixOptions
from frkit.methods.registry import register
from frkit.models.cross_encoder import CrossEncoder
from frkit.models.peft_adapters import freeze_all_but
from frkit.models.prefix_stack import PrefixedEncoder


@register
class ProgressivePrefix(Method):
    name = "progressive_prefix"
    option_groups = (PrefixOptions,)
    tuned_lr = "adapter_lr"

    def __init__(self, cfg, ctx):
        super().__init__(cfg, ctx)
        encoder = PrefixedEncoder(ctx.new_encoder())
        for p in encoder.model.parameters():
            p.requires_grad_(False)
        self.model = CrossEncoder(encoder, encoder.config.hidden_size, cfg.pooling)
        longest = cfg.prefix_tokens * len(cfg.marketplaces) + cfg.max_length
        positions = getattr(encoder.config, "max_position_embeddings", longest)
        if longest > positions:  # the tokens are numbered after every prefix
            raise FrkitInputError(
                f"key 'prefix_tokens': {cfg.prefix_tokens} positions x {len(cfg.marketplaces)} marketplaces + "
                f"max_length {cfg.max_length} = {longest} exceeds the model's {positions} positions"
            )

    @property
    def encoder(self) -> PrefixedEncoder:
        return self.model.encoder

    def prefixes_for(self, name: str) -> list[str]:
        """The prefixes marketplace ``name`` was trained with: its own and every older one, in learning order."""
        return self.learned[: self.learned.index(name) + 1]

    def learn(self, step, marketplace, seen):
        name, c = marketplace.name, self.cfg
        prefix = self.encoder.add_prefix(name, c.prefix_tokens, c.prefix_projection, c.prefix_projection_hidden)
        self.add_head(self.model, name)
        self.encoder.active = self.learned + [name]
        params = list(prefix.parameters()) + list(self.model.heads[name].parameters())
        freeze_all_but(self.model, params)
        result = self.train(self.model, params, marketplace, name, c.adapter_lr, step)
        prefix.fold()
        self.learned.append(name)
        return fit_log(result)

    def model_for(self, name):
        self.encoder.active = self.prefixes_for(name)
        return self.model, name

    def save(self, folder: Path):
        super().save(folder)
        atomic.save_tensors(folder / "prefixes.safetensors", {n: p() for n, p in self.encoder.prefixes.items()})
        atomic.save_tensors(folder / "heads.safetensors", self.model.heads.state_dict())

    def load(self, folder: Path):
        super().load(folder)
        device = str(self.ctx.device)
        tables = load_file(str(folder / "prefixes.safetensors"), device=device)
        for name in self.learned:
            prefix = self.encoder.add_prefix(name, tables[name].shape[0])  # the folded table
            prefix.embedding.weight.data.copy_(tables[name])
            prefix.embedding.weight.requires_grad_(False)
            self.add_head(self.model, name, rebuild=True)
        self.model.heads.load_state_dict(load_file(str(folder / "heads.safetensors"), device=device))
