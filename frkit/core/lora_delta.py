"""The effective weight update Delta W of a peft LoRA / DoRA adapter, differentiable (FR-LoRA Eq. 4).

Naming convention (how a Fisher of the plain base model is looked up for each adapted module):
a key is the name the adapted weight has in the SAME module tree with peft removed, i.e. the peft
parameter name with peft's wrapper segments dropped:

    [prefix.]base_model.model.<path>.base_layer.weight             -> [prefix.]<path>.weight
    [prefix.]base_model.model.<path>.lora_A.<adapter>.weight        -> [prefix.]<path>.weight
    [prefix.]base_model.model.<path>.lora_B.<adapter>.weight        -> [prefix.]<path>.weight
    [prefix.]base_model.model.<path>.lora_magnitude_vector.<adapter>.weight -> [prefix.]<path>.weight

So for a cross-encoder ``model.encoder = get_peft_model(BertModel)``, the LoRA on layer 0's query
maps to ``encoder.encoder.layer.0.attention.self.query.weight``, exactly the key that
``diagonal_fisher(model, ...)`` returned for the same cross-encoder before peft wrapped it; on the
bare PeftModel it maps to ``encoder.layer.0.attention.self.query.weight``.

peft is duck-typed (``lora_A``/``lora_B``/``scaling``/``get_base_layer``), so core imports no HF code.
"""

from __future__ import annotations

import re

import torch
from torch import Tensor, nn

from frkit.core.fp32 import full_precision

_PEFT_WRAPPER = re.compile(r"(^|\.)base_model\.model\.")
_ADAPTER_PARAM = re.compile(
    r"\.(?:lora_A|lora_magnitude_vector)\.[^.]+\.weight$"  # -> the adapted weight
    r"|\.lora_B\.[^.]+\.(?P<b>weight|bias)$"  # lora_B.bias (lora_bias=True) adds to the base bias
    r"|\.lora_embedding_[AB]\.[^.]+$"
    r"|\.(?:modules_to_save\.[^.]+|original_module)\.(?P<m>\w+)$"
)


def base_weight_name(peft_param_name: str) -> str:
    """Name of the base-model parameter that a peft parameter adapts (see the module docstring).

    Idempotent; names without peft segments come back unchanged.
    """
    name = _PEFT_WRAPPER.sub(r"\1", peft_param_name, count=1)
    name = name.replace(".base_layer.", ".")

    def repl(m: re.Match) -> str:
        return "." + (m.group("b") or m.group("m") or "weight")

    return _ADAPTER_PARAM.sub(repl, name)


def lora_layers(model: nn.Module, adapter_name: str) -> dict[str, nn.Module]:
    """Base weight name (convention above) -> peft LoRA layer holding ``adapter_name``."""
    found = {}
    for name, module in model.named_modules():
        if _is_lora_layer(module) and adapter_name in module.lora_A:
            found[base_weight_name(f"{name}.base_layer.weight")] = module
    return found


def effective_delta_w(model: nn.Module, adapter_name: str, detach_dora_norm: bool = True) -> dict[str, Tensor]:
    """Base weight name -> Delta W that ``adapter_name`` adds to that weight, in the weight's layout.

    LoRA:  Delta W = scaling * B @ A  (transposed when ``fan_in_fan_out``), scaling = lora_alpha / r.
        Eq. 4 writes Delta W = B A; we return the update peft actually applies (and merges), so the
        Fisher weighting sees the true change of the base weight; the constant scaling^2 is a
        rescaling of beta.
    DoRA:  W' = m / ||W + s B A||_row * (W + s B A),  Delta W = W' - W,  with the norm taken per
        output unit (peft's ``torch.linalg.norm(weight, dim=1)`` on the [out, in] weight) and
        detached from the graph as peft does in forward and merge (DoRA paper, section 4.3).

    Differentiable w.r.t. lora_A, lora_B (and the DoRA magnitude); base weights enter as constants.
    The adapter must not be merged. Bias updates (``lora_bias=True``) are not included: Eq. 4
    regularises weight matrices only.
    """
    layers = lora_layers(model, adapter_name)
    for key, layer in layers.items():
        if adapter_name in getattr(layer, "merged_adapters", ()):
            raise ValueError(f"adapter {adapter_name!r} is merged into {key}; unmerge it first")
        if layer.get_base_layer().weight.dim() != 2 or layer.lora_A[adapter_name].weight.dim() != 2:
            raise NotImplementedError(f"{key}: only LoRA on linear layers is supported")
    with full_precision():  # Eq. 4's Delta W in fp32, also inside a bf16 training step
        return _deltas(layers, adapter_name, detach_dora_norm)


def _deltas(layers: dict[str, nn.Module], adapter_name: str, detach_dora_norm: bool) -> dict[str, Tensor]:
    updates = _scaled_products(layers, adapter_name)  # s B A in [out, in], all layers
    deltas = {}
    for key, layer in layers.items():
        fan_in_fan_out = bool(getattr(layer, "fan_in_fan_out", False))
        update = updates[key]
        magnitude = layer._modules.get("lora_magnitude_vector")
        if magnitude is not None and adapter_name in magnitude:
            w = layer.get_base_layer().weight.detach()
            w_oi = w.T if fan_in_fan_out else w
            adapted = w_oi + update
            norm = torch.linalg.norm(adapted.detach() if detach_dora_norm else adapted, dim=1)
            update = (magnitude[adapter_name].weight / norm).unsqueeze(1) * adapted - w_oi
        deltas[key] = update.T if fan_in_fan_out else update
    return deltas


def _scaled_products(layers: dict[str, nn.Module], adapter_name: str) -> dict[str, Tensor]:
    """scaling * B @ A per layer, as one bmm per group of same-shaped factors (q/k/v of every block
    form one group): a handful of kernels instead of ~5 per layer, forward and backward, each step."""
    groups: dict[tuple, list[str]] = {}
    for key, layer in layers.items():
        a, b = layer.lora_A[adapter_name].weight, layer.lora_B[adapter_name].weight
        groups.setdefault((a.shape, b.shape, a.dtype, b.dtype, a.device), []).append(key)
    out = {}
    for keys in groups.values():
        a = torch.stack([layers[k].lora_A[adapter_name].weight for k in keys])
        b = torch.stack([layers[k].lora_B[adapter_name].weight for k in keys])
        scalings = [float(layers[k].scaling[adapter_name]) for k in keys]
        if len(set(scalings)) == 1:
            products = torch.bmm(b, a) * scalings[0]
        else:  # rank_pattern / alpha_pattern
            products = torch.bmm(b, a) * torch.tensor(scalings, dtype=a.dtype, device=a.device).view(-1, 1, 1)
        out.update(zip(keys, products.unbind(0)))
    return out


def lora_factors(model: nn.Module, adapter_name: str) -> dict[str, tuple[Tensor, Tensor]]:
    """Base weight name -> (A [r, in], B [out, r]) of ``adapter_name`` (the parameters themselves)."""
    return {
        key: (layer.lora_A[adapter_name].weight, layer.lora_B[adapter_name].weight)
        for key, layer in lora_layers(model, adapter_name).items()
    }


def _is_lora_layer(module: nn.Module) -> bool:
    # _modules lookups, not hasattr: this runs for every module at every training step
    return (
        isinstance(module._modules.get("lora_A"), nn.ModuleDict)
        and "lora_B" in module._modules
        and hasattr(module, "scaling")
    )
