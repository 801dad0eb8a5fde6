"""Put Pfeiffer adapters and AdapterFusion into every FFN output block of a frozen HF encoder.

Placement (AdapterHub's Pfeiffer / ``SeqBnConfig``: original_ln_before, residual_before_ln,
original_ln_after), inside ``layer[i].output`` whose original forward is
``LayerNorm(dropout(dense(x)) + input_tensor)``:

    f   = dropout(dense(x))                 FFN output (before the residual and LayerNorm)
    h   = LayerNorm(f + input_tensor)       the sub-layer's usual output: adapter input, fusion query
    a   = U(ReLU(D(h))) + f                 one adapter            (or AdapterFusion, Eq. 1-4, over
                                                                    the updates U(ReLU(D_t(h))), + f)
    out = LayerNorm(a + input_tensor)       the frozen LayerNorm again, on the frozen residual

So the adapter's update enters before the block's residual + LayerNorm; with a zero update the
block returns exactly its original output. Differences from AdapterHub: none in placement; our
fusion anneals temperature only in training mode, and a single active adapter reports all-ones
"scores" [b, s, 1] (a fusion over one adapter), so a one-adapter teacher (M_1) fits Eq. 9.

The adapters live inside the encoder's own modules (``...layer.3.output.adapters.en.down.weight``)
and the replaced block keeps ``dense``/``dropout``/``LayerNorm`` under their names, so base keys
of ``encoder.state_dict()`` are unchanged and ``.to(device)`` moves everything.
``AdapterStack`` is a plain controller over those blocks, not a module.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import nn

from frkit import atomic
from frkit.models.adapters.bottleneck import BottleneckAdapter
from frkit.models.adapters.fusion import AdapterFusion

# "...layer.<i>.output" is BertOutput / RobertaOutput / XLMRobertaOutput; "...attention.output" is not matched
OUTPUT_BLOCK = re.compile(r"(?:^|\.)layer\.(\d+)\.output$")
NAME = re.compile(r"^[A-Za-z0-9_\-]+$")  # ModuleDict keys and file names: no dots


class AdaptedOutput(nn.Module):
    """A drop-in for ``BertOutput`` that runs the active adapter, or fusion over the active adapters."""

    def __init__(self, base: nn.Module):
        super().__init__()
        self.dense, self.dropout, self.LayerNorm = base.dense, base.dropout, base.LayerNorm
        self.adapters = nn.ModuleDict()
        self.fusions = nn.ModuleDict()
        self.active: tuple[str, ...] = ()
        self.fusion: str | None = None
        self.capture = False
        self._single_scores: torch.Tensor | None = None
        self.train(base.training)  # a new Module starts in training mode; follow the block it replaces

    def forward(self, hidden_states: torch.Tensor, input_tensor: torch.Tensor) -> torch.Tensor:
        f = self.dropout(self.dense(hidden_states))
        if not self.active:
            return self.LayerNorm(f + input_tensor)
        h = self.LayerNorm(f + input_tensor)
        if self.fusion is None:
            a = self.adapters[self.active[0]](h) + f
            self._single_scores = h.new_ones(h.shape[:2] + (1,)) if self.capture else None
        else:
            fusion = self.fusions[self.fusion]
            fusion.softmax.capture = self.capture
            updates = torch.stack([self.adapters[n](h) for n in self.active], dim=2)  # [b, s, n, h]
            a = fusion(h, updates, f)
        return self.LayerNorm(a + input_tensor)

    def scores(self) -> torch.Tensor | None:
        """s_{l,j} of the last captured forward, [batch, seq, n_active] (None if not captured)."""
        if self.fusion is None:
            return self._single_scores
        return self.fusions[self.fusion].softmax.scores


class AdapterStack:
    """Adapters per language and fusion layers on a frozen encoder (``CrossEncoder.encoder``).

    ``AdapterStack(encoder)`` wraps every ``layer[i].output`` block (idempotent: a second stack on
    the same encoder reuses the blocks) and freezes every parameter the encoder has at that time.
    """

    def __init__(
        self,
        encoder: nn.Module,
        reduction_factor: float = 16,
        adapter_init: str = "bert",
        adapter_dropout: float = 0.0,
        fusion_dropout: float | None = None,
        fusion_temperature: float = 1.0,
        anneal_temperature: bool = False,
        fusion_value: bool = True,
    ):
        self.encoder = encoder
        self.layers: dict[int, AdaptedOutput] = {}
        for name, module in list(encoder.named_modules()):
            match = OUTPUT_BLOCK.search(name)
            if match is None or not all(hasattr(module, a) for a in ("dense", "dropout", "LayerNorm")):
                continue
            if not isinstance(module, AdaptedOutput):
                parent_name, _, child = name.rpartition(".")
                module = AdaptedOutput(module)
                setattr(encoder.get_submodule(parent_name), child, module)
            self.layers[int(match.group(1))] = module
        if not self.layers:
            raise ValueError(
                "no '...layer.<i>.output' block with dense/dropout/LayerNorm found: "
                "expected a BERT-architecture encoder (BertModel, XLM-R, e5)"
            )
        for p in encoder.parameters():
            p.requires_grad_(False)
        first = next(iter(self.layers.values()))
        self.hidden_size = first.dense.out_features
        if fusion_dropout is None:  # AdapterHub: the encoder's attention dropout
            fusion_dropout = getattr(getattr(encoder, "config", None), "attention_probs_dropout_prob", 0.1)
        self.config = dict(
            reduction_factor=reduction_factor,
            adapter_init=adapter_init,
            adapter_dropout=adapter_dropout,
            fusion_dropout=fusion_dropout,
            fusion_temperature=fusion_temperature,
            anneal_temperature=anneal_temperature,
            fusion_value=fusion_value,
        )
        self.fusion_adapters: dict[str, tuple[str, ...]] = {
            name: tuple(names) for name, names in getattr(first, "fusion_adapters", {}).items()
        }
        first.fusion_adapters = self.fusion_adapters  # remembered on the module for a second stack

    # ---------------------------------------------------------------- building
    @property
    def adapter_names(self) -> list[str]:
        return list(next(iter(self.layers.values())).adapters)

    def add_adapter(self, name: str) -> None:
        """A fresh Pfeiffer adapter ``name`` in every layer (trainable; everything else untouched)."""
        self._check_new(name, self.adapter_names, "adapter")
        c = self.config
        for layer in self.layers.values():
            adapter = BottleneckAdapter(
                self.hidden_size, c["reduction_factor"], c["adapter_init"], c["adapter_dropout"]
            )
            layer.adapters[name] = self._place(adapter, layer)

    def add_fusion(self, name: str, adapter_names: Iterable[str]) -> None:
        """A freshly (randomly) initialised fusion layer ``name`` over ``adapter_names``, in this order."""
        adapter_names = tuple(adapter_names)
        self._check_new(name, self.fusion_adapters, "fusion")
        self._check_known(adapter_names)
        c = self.config
        for layer in self.layers.values():
            fusion = AdapterFusion(
                self.hidden_size,
                c["fusion_dropout"],
                c["fusion_temperature"],
                c["anneal_temperature"],
                c["fusion_value"],
            )
            layer.fusions[name] = self._place(fusion, layer)
        self.fusion_adapters[name] = adapter_names

    def delete_adapter(self, name: str) -> None:
        users = [f for f, names in self.fusion_adapters.items() if name in names]
        if users:
            raise ValueError(f"adapter {name!r} is used by fusion(s) {users}; delete those first")
        for layer in self.layers.values():
            del layer.adapters[name]
            if name in layer.active:
                layer.active, layer.fusion = (), None

    def delete_fusion(self, name: str) -> None:
        for layer in self.layers.values():
            del layer.fusions[name]
            if layer.fusion == name:
                layer.active, layer.fusion = (), None
        del self.fusion_adapters[name]

    # ---------------------------------------------------------------- activation
    def set_active(self, adapters: Iterable[str] | None = None, fusion: str | None = None) -> None:
        """One adapter alone = a plain adapter; several need ``fusion`` (a fusion over exactly them).

        ``set_active(fusion="f")`` activates f's adapters; ``set_active([])`` = the bare encoder.
        """
        adapters = tuple(self.fusion_adapters[fusion] if adapters is None and fusion is not None else adapters or ())
        self._check_known(adapters)
        if fusion is None and len(adapters) > 1:
            raise ValueError(f"{len(adapters)} adapters {list(adapters)} active without a fusion: name one")
        if fusion is not None:
            if fusion not in self.fusion_adapters:
                raise KeyError(f"unknown fusion {fusion!r}; known: {list(self.fusion_adapters)}")
            if self.fusion_adapters[fusion] != adapters:
                raise ValueError(
                    f"fusion {fusion!r} is over {list(self.fusion_adapters[fusion])}, not {list(adapters)}"
                )
        for layer in self.layers.values():
            layer.active, layer.fusion = adapters, fusion

    @property
    def active(self) -> tuple[tuple[str, ...], str | None]:
        layer = next(iter(self.layers.values()))
        return layer.active, layer.fusion

    @contextmanager
    def using(self, adapters: Iterable[str] | None = None, fusion: str | None = None) -> Iterator[None]:
        """Temporarily activate another setup (e.g. the teacher M_{t-1}), restoring the current one."""
        before = self.active
        self.set_active(adapters, fusion)
        try:
            yield
        finally:
            self.set_active(*before)

    # ---------------------------------------------------------------- scores
    def capture_scores(self, flag: bool = True) -> None:
        for layer in self.layers.values():
            layer.capture = flag
            if not flag:
                layer._single_scores = None
                for fusion in layer.fusions.values():
                    fusion.softmax.capture, fusion.softmax.scores = False, None

    @contextmanager
    def capturing(self) -> Iterator[None]:
        self.capture_scores(True)
        try:
            yield
        finally:
            self.capture_scores(False)

    def attention_scores(self) -> dict[int, torch.Tensor]:
        """{layer index: s_{l,j} [batch, seq, n_active]} of the last forward run while capturing.

        Tensors are the fusion's own softmax outputs, graph included (a loss on them trains Q, K).
        """
        scores = {i: layer.scores() for i, layer in self.layers.items()}
        missing = [i for i, s in scores.items() if s is None]
        if missing:
            raise RuntimeError(
                f"no captured scores in layers {missing}: run the forward inside "
                "`with stack.capturing():` (or capture_scores(True)) with an adapter active"
            )
        return scores

    @contextmanager
    def teacher(self, adapters: Iterable[str] | None = None, fusion: str | None = None) -> Iterator[None]:
        """M_{t-1} as the AD teacher: that setup, eval mode (dropout off), no grad, capturing.

        Read ``attention_scores()`` inside the block; train/eval modes and the active setup are restored.
        """
        modes = {m: m.training for m in self.encoder.modules()}
        self.encoder.eval()
        try:
            with torch.no_grad(), self.using(adapters, fusion), self.capturing():
                yield
        finally:
            for m, mode in modes.items():
                m.training = mode

    # ---------------------------------------------------------------- training
    def adapter_parameters(self, name: str) -> list[nn.Parameter]:
        self._check_known([name])
        return [p for layer in self.layers.values() for p in layer.adapters[name].parameters()]

    def fusion_parameters(self, name: str) -> list[nn.Parameter]:
        if name not in self.fusion_adapters:
            raise KeyError(f"unknown fusion {name!r}; known: {list(self.fusion_adapters)}")
        return [p for layer in self.layers.values() for p in layer.fusions[name].parameters()]

    def freeze_all_but(self, adapters: Iterable[str] = (), fusions: Iterable[str] = ()) -> None:
        """Only the named adapters and fusions train; the base and everything else are frozen.

        Stage 1 (Eq. 6): ``freeze_all_but(adapters=[new])``; stage 2 (Eq. 7, 11):
        ``freeze_all_but(fusions=[f_t])``; the ``adapter_fusion`` baseline: both lists at once.
        """
        keep = [p for a in adapters for p in self.adapter_parameters(a)]
        keep += [p for f in fusions for p in self.fusion_parameters(f)]
        keep_ids = {id(p) for p in keep}
        for p in self.encoder.parameters():
            p.requires_grad_(id(p) in keep_ids)

    def trainable_parameters(self) -> int:
        return sum(p.numel() for p in self.encoder.parameters() if p.requires_grad)

    def parameter_counts(self) -> dict[str, int]:
        """Sizes: ``base``, ``adapter:<name>`` and ``fusion:<name>`` (all layers)."""
        counts = {f"adapter:{a}": sum(p.numel() for p in self.adapter_parameters(a)) for a in self.adapter_names}
        counts |= {f"fusion:{f}": sum(p.numel() for p in self.fusion_parameters(f)) for f in self.fusion_adapters}
        counts["base"] = sum(p.numel() for p in self.encoder.parameters()) - sum(counts.values())
        return counts

    def fusion_regularization(self, name: str) -> torch.Tensor:
        """AdapterHub's 0.01 · Σ_l ||I - V_l||^2 for fusion ``name`` (add it to the fusion-stage loss)."""
        self.fusion_parameters(name)  # validates the name
        return sum(layer.fusions[name].value_regularization() for layer in self.layers.values())

    # ---------------------------------------------------------------- state
    def adapter_state_dict(self, name: str) -> dict[str, torch.Tensor]:
        """``{"<layer>.<param>": tensor}`` for adapter ``name`` (flat, safetensors-ready)."""
        self._check_known([name])
        return {
            f"{i}.{k}": v.detach().clone()
            for i, layer in self.layers.items()
            for k, v in layer.adapters[name].state_dict().items()
        }

    def load_adapter_state_dict(self, name: str, state: dict[str, torch.Tensor]) -> None:
        """Load into adapter ``name``, creating it first if this stack does not have it."""
        if name not in self.adapter_names:
            self.add_adapter(name)
        for i, layer in self.layers.items():
            layer.adapters[name].load_state_dict(_layer_slice(state, i))

    def fusion_state_dict(self, name: str) -> dict[str, torch.Tensor]:
        self.fusion_parameters(name)
        return {
            f"{i}.{k}": v.detach().clone()
            for i, layer in self.layers.items()
            for k, v in layer.fusions[name].state_dict().items()
        }

    def load_fusion_state_dict(
        self, name: str, state: dict[str, torch.Tensor], adapter_names: Iterable[str] | None = None
    ) -> None:
        """Load into fusion ``name``; a fusion this stack lacks is created over ``adapter_names``."""
        if name not in self.fusion_adapters:
            if adapter_names is None:
                raise ValueError(f"fusion {name!r} does not exist here: pass adapter_names to create it")
            self.add_fusion(name, adapter_names)
        for i, layer in self.layers.items():
            layer.fusions[name].load_state_dict(_layer_slice(state, i))

    def save(self, folder: str | Path) -> None:
        """``adapters.json`` (config, adapter names, fusions) + one safetensors file per adapter/fusion."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        for a in self.adapter_names:
            atomic.save_tensors(folder / f"adapter.{a}.safetensors", self.adapter_state_dict(a))
        for f in self.fusion_adapters:
            atomic.save_tensors(folder / f"fusion.{f}.safetensors", self.fusion_state_dict(f))
        meta = {
            "config": self.config,
            "adapters": self.adapter_names,
            "fusions": {f: list(n) for f, n in self.fusion_adapters.items()},
        }
        atomic.write_json(folder / "adapters.json", meta, indent=1)

    @classmethod
    def load(cls, encoder: nn.Module, folder: str | Path) -> AdapterStack:
        """The stack ``save`` wrote, on ``encoder`` (same architecture); nothing is active afterwards."""
        folder = Path(folder)
        meta = json.loads((folder / "adapters.json").read_text())
        stack = cls(encoder, **meta["config"])
        device = next(iter(stack.layers.values())).dense.weight.device

        def read(file: str) -> dict[str, torch.Tensor]:
            return load_file(str(folder / file), device=str(device))

        for a in meta["adapters"]:
            stack.load_adapter_state_dict(a, read(f"adapter.{a}.safetensors"))
        for f, names in meta["fusions"].items():
            stack.load_fusion_state_dict(f, read(f"fusion.{f}.safetensors"), names)
        return stack

    # ---------------------------------------------------------------- helpers
    def _place(self, module: nn.Module, layer: AdaptedOutput) -> nn.Module:
        w = layer.dense.weight
        return module.to(device=w.device, dtype=w.dtype).train(layer.training)

    def _check_new(self, name: str, existing, what: str) -> None:
        if not NAME.match(name):
            raise ValueError(f"{what} name {name!r}: use letters, digits, '_' or '-' (no dots)")
        if name in existing:
            raise ValueError(f"{what} {name!r} already exists")

    def _check_known(self, names: Iterable[str]) -> None:
        unknown = [n for n in names if n not in self.adapter_names]
        if unknown:
            raise KeyError(f"unknown adapter(s) {unknown}; known: {self.adapter_names}")


def _layer_slice(state: dict[str, torch.Tensor], layer: int) -> dict[str, torch.Tensor]:
    prefix = f"{layer}."
    return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
