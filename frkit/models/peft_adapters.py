"""One named peft adapter per marketplace on a shared frozen encoder (LoRA, DoRA or prefix tuning)."""
from __future__ import annotations

import json
from pathlib import Path

from peft import LoraConfig, PeftModel, PrefixTuningConfig, get_peft_model
from torch import nn

from frkit import atomic


def lora_config(rank: int, alpha: float, dropout: float, targets: list[str], use_dora: bool = False) -> LoraConfig:
    return LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=dropout, target_modules=list(targets), use_dora=use_dora)


def prefix_config(tokens: int) -> PrefixTuningConfig:
    # FEATURE_EXTRACTION: peft prepends the prefix to every layer's keys/values and widens the mask.
    return PrefixTuningConfig(task_type="FEATURE_EXTRACTION", num_virtual_tokens=tokens)


def add_adapter(encoder: nn.Module, name: str, config) -> PeftModel:
    """Wrap ``encoder`` with its first adapter, or add ``name`` to an existing PeftModel; activate it."""
    if isinstance(encoder, PeftModel):
        encoder.add_adapter(name, config)
    else:
        encoder = get_peft_model(encoder, config, adapter_name=name)
    encoder.set_adapter(name)
    return encoder


def adapter_parameters(peft_model: PeftModel, name: str) -> list[nn.Parameter]:
    """The parameters that belong to adapter ``name`` (peft puts the adapter name in each param's path)."""
    params = [p for n, p in peft_model.named_parameters() if f".{name}." in n or n.endswith(f".{name}")]
    if not params:
        raise KeyError(f"no parameters found for adapter {name!r}")
    return params


def freeze_all_but(model: nn.Module, keep: list[nn.Parameter]) -> None:
    keep_ids = {id(p) for p in keep}
    for p in model.parameters():
        p.requires_grad_(id(p) in keep_ids)


def save_adapters(peft_model: PeftModel, folder: Path) -> None:
    """peft's own format: ``folder/<adapter>/adapter_config.json + adapter_model.safetensors``."""
    names = list(peft_model.peft_config)
    for name in names:
        peft_model.save_pretrained(str(folder), selected_adapters=[name])
    atomic.write_json(folder / "adapters.json", names, indent=None)


def load_adapters(encoder: nn.Module, folder: Path) -> PeftModel:
    names = json.loads((folder / "adapters.json").read_text())
    peft_model = PeftModel.from_pretrained(encoder, str(folder / names[0]), adapter_name=names[0], is_trainable=True)
    for name in names[1:]:
        peft_model.load_adapter(str(folder / name), adapter_name=name, is_trainable=True)
    return peft_model
