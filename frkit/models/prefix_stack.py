"""Key/value prefixes of several marketplaces, concatenated in every self-attention layer of a BERT encoder.

peft's prefix tuning holds one active prefix; Progressive Prefix needs the frozen prefixes of older
marketplaces and the trainable one of the current marketplace in the same forward. This module does what
peft does for one prefix, for any number of them, without the cache API:

  * :class:`PrefixTable` is one marketplace's prefix, peft's ``PrefixEncoder`` with the same parameters and
    layout (``embedding.weight`` [n, 2 * layers * hidden], or ``prefix_projection``'s two-layer MLP), so peft's
    weights load into it unchanged; ``fold()`` replaces the MLP by the table it produces, as peft saves it.
  * :class:`PrefixedSelfAttention` is a drop-in for ``BertSelfAttention`` (same ``query``/``key``/``value``
    children, so the base's parameter names do not change) that prepends the prefix keys and values of its
    layer before attention: keys [b, heads, P + s, d] against queries [b, heads, s, d].
  * :class:`PrefixedEncoder` wraps the encoder: it concatenates the active prefixes (P = sum of their lengths),
    hands each layer its slice, prepends P ones to the 2-D attention mask (every query attends every prefix
    position; padded tokens stay masked) and numbers the tokens' positions from P, as peft does for BERT (its
    prefix enters as a cache of length P, and BERT starts the position ids after the cache).

So with one active prefix the encoder computes exactly what peft's prefix tuning computes (tested to 1e-5),
and with several it computes what peft would with their concatenation as one prefix.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import torch
from torch import Tensor, nn
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
from transformers.models.bert.modeling_bert import eager_attention_forward

SELF_ATTENTION = re.compile(r"(?:^|\.)layer\.(\d+)\.attention\.self$")


class PrefixTable(nn.Module):
    """One prefix of ``tokens`` positions: per layer a key and a value vector per position (peft's PrefixEncoder).

    ``projection``: the reparameterisation of prefix tuning (Li & Liang 2021; peft ``prefix_projection``):
    embedding [n, hidden] -> Linear(hidden, projection_hidden) -> tanh -> Linear(projection_hidden, 2 L hidden).
    """

    def __init__(
        self, tokens: int, num_layers: int, hidden: int, projection: bool = False, projection_hidden: int | None = None
    ):
        super().__init__()
        self.tokens, self.num_layers, self.hidden = tokens, num_layers, hidden
        width = num_layers * 2 * hidden
        if projection:
            inner = projection_hidden or hidden
            self.embedding = nn.Embedding(tokens, hidden)
            self.transform = nn.Sequential(nn.Linear(hidden, inner), nn.Tanh(), nn.Linear(inner, width))
        else:
            self.embedding = nn.Embedding(tokens, width)
            self.transform = None

    def forward(self) -> Tensor:
        """The prefix as peft lays it out: [tokens, 2 * layers * hidden], per token (layer 0 key, layer 0 value,
        layer 1 key, ...), each hidden = heads x head_dim."""
        table = self.embedding.weight
        return table if self.transform is None else self.transform(table)

    @torch.no_grad()
    def fold(self) -> None:
        """Replace the MLP by the table it produces (peft saves a projected prefix this way; Progressive Prompts
        keeps only the prompt once a task is learned) and freeze it."""
        table = self().detach().clone()
        self.embedding = nn.Embedding.from_pretrained(table, freeze=True)
        self.transform = None


class PrefixedSelfAttention(nn.Module):
    """``BertSelfAttention.forward`` (transformers 5.x) with ``prefix`` = (keys, values) [heads, P, d] prepended.

    The attention mask it receives already spans P + s key positions (:class:`PrefixedEncoder` widened it).
    Encoder self-attention only: no cache, no cross-attention.
    """

    def __init__(self, base: nn.Module):
        super().__init__()
        self.query, self.key, self.value, self.dropout = base.query, base.key, base.value, base.dropout
        self.config = base.config
        self.num_attention_heads = base.num_attention_heads
        self.attention_head_size = base.attention_head_size
        self.all_head_size = base.all_head_size
        self.scaling = base.scaling
        self.is_decoder = False
        self.is_causal = False
        self.layer_idx = getattr(base, "layer_idx", None)
        self.prefix: tuple[Tensor, Tensor] | None = None
        self.train(base.training)

    def forward(
        self,
        hidden_states: Tensor,
        attention_mask: Tensor | None = None,
        cache=None,
        encoder_hidden_states=None,
        **kwargs,
    ) -> tuple[Tensor, Tensor | None]:
        if cache is not None or encoder_hidden_states is not None:
            raise NotImplementedError("prefixed self-attention is for encoders: no cache, no cross-attention")
        input_shape = hidden_states.shape[:-1]
        hidden_shape = (*input_shape, -1, self.attention_head_size)
        query = self.query(hidden_states).view(*hidden_shape).transpose(1, 2)
        key = self.key(hidden_states).view(*hidden_shape).transpose(1, 2)
        value = self.value(hidden_states).view(*hidden_shape).transpose(1, 2)
        if self.prefix is not None:
            pk, pv = self.prefix
            b = hidden_states.shape[0]
            key = torch.cat([pk.to(key.dtype).unsqueeze(0).expand(b, -1, -1, -1), key], dim=2)
            value = torch.cat([pv.to(value.dtype).unsqueeze(0).expand(b, -1, -1, -1), value], dim=2)
        attention: Callable = ALL_ATTENTION_FUNCTIONS.get_interface(
            self.config._attn_implementation, eager_attention_forward
        )
        out, weights = attention(
            self,
            query,
            key,
            value,
            attention_mask,
            dropout=0.0 if not self.training else self.dropout.p,
            scaling=self.scaling,
            **kwargs,
        )
        return out.reshape(*input_shape, -1).contiguous(), weights


class PrefixedEncoder(nn.Module):
    """A BERT-architecture encoder (BertModel, the offline e5) with named prefixes, ``active`` ones concatenated.

    ``model`` is the wrapped encoder, ``prefixes[name]`` a :class:`PrefixTable`; ``active`` the names whose
    prefixes enter the forward, concatenated in that order (attention is invariant to the order of key/value
    positions, which carry no position embedding, so the order only fixes the layout).
    """

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.prefixes = nn.ModuleDict()
        self.active: list[str] = []
        self.layers: list[PrefixedSelfAttention] = []
        found = {}
        for name, module in list(model.named_modules()):
            match = SELF_ATTENTION.search(name)
            if match is None or not all(hasattr(module, a) for a in ("query", "key", "value", "attention_head_size")):
                continue
            if not isinstance(module, PrefixedSelfAttention):
                parent, _, child = name.rpartition(".")
                module = PrefixedSelfAttention(module)
                setattr(model.get_submodule(parent), child, module)
            found[int(match.group(1))] = module
        if not found or sorted(found) != list(range(len(found))):
            raise ValueError(
                "no '...layer.<i>.attention.self' blocks with query/key/value found: "
                "expected a BERT-architecture encoder (BertModel, e5)"
            )
        self.layers = [found[i] for i in range(len(found))]
        first = self.layers[0]
        self.num_heads, self.head_dim = first.num_attention_heads, first.attention_head_size
        self.hidden = first.all_head_size

    @property
    def config(self):
        return self.model.config

    def add_prefix(
        self, name: str, tokens: int, projection: bool = False, projection_hidden: int | None = None
    ) -> PrefixTable:
        table = PrefixTable(tokens, len(self.layers), self.hidden, projection, projection_hidden)
        self.prefixes[name] = table.to(next(self.model.parameters()).device)
        return self.prefixes[name]

    def prefix_length(self, names: list[str] | None = None) -> int:
        return sum(self.prefixes[n].tokens for n in (self.active if names is None else names))

    def layer_prefixes(self) -> list[tuple[Tensor, Tensor]] | None:
        """Per layer (keys, values) [heads, P, d] of the active prefixes, concatenated (None when none is active)."""
        if not self.active:
            return None
        table = torch.cat([self.prefixes[n]() for n in self.active], dim=0)  # [P, 2 L hidden]
        kv = table.view(table.shape[0], 2 * len(self.layers), self.num_heads, self.head_dim).permute(1, 2, 0, 3)
        return [(kv[2 * i], kv[2 * i + 1]) for i in range(len(self.layers))]

    def forward(
        self,
        input_ids: Tensor,
        attention_mask: Tensor | None = None,
        token_type_ids: Tensor | None = None,
        position_ids: Tensor | None = None,
        **kwargs,
    ):
        per_layer = self.layer_prefixes()
        if per_layer is None:
            return self.model(
                input_ids=input_ids,
                attention_mask=attention_mask,
                token_type_ids=token_type_ids,
                position_ids=position_ids,
                **kwargs,
            )
        b, s = input_ids.shape
        p = per_layer[0][0].shape[1]
        if attention_mask is None:
            attention_mask = torch.ones(b, s, dtype=torch.long, device=input_ids.device)
        attention_mask = torch.cat([attention_mask.new_ones(b, p), attention_mask], dim=1)  # prefixes: attended
        if position_ids is None:  # the tokens come after the prefix, as with peft (BERT counts the cache first)
            position_ids = torch.arange(p, p + s, device=input_ids.device).unsqueeze(0).expand(b, s)
        for layer, kv in zip(self.layers, per_layer):
            layer.prefix = kv
        try:
            return self.model(
                input_ids=input_ids,
                attention_mask=attention_mask,
                token_type_ids=token_type_ids,
                position_ids=position_ids,
                **kwargs,
            )
        finally:
            for layer in self.layers:
                layer.prefix = None
