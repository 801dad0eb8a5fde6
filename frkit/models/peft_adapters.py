"""One named peft adapter per marketplace on a shared frozen encoder (LoRA, DoRA or prefix tuning)."""

from __future__ import annotations

import json
from pathlib import Path

from peft import LoraConfig, PeftConfig, PeftModel, PrefixTuningConfig, get_peft_model
from peft.tuners.tuners_utils import BaseTunerLayer
from torch import nn

from frkit import atomic


def lora_config(rank: int, alpha: float, dropout: float, targets: list[str], use_dora: bool = False) -> LoraConfig:
    return LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=dropout, target_modules=list(targets), use_dora=use_dora)


def prefix_config(tokens: int, projection: bool = False, projection_hidden: int | None = None) -> PrefixTuningConfig:
    # FEATURE_EXTRACTION: peft prepends the prefix to every layer's keys/values and widens the mask.
    # (peft's prompt learning drops token_type_ids, with a warning: a pair's second segment is not marked)
    extra = {"encoder_hidden_size": projection_hidden} if projection_hidden else {}
    return PrefixTuningConfig(
        task_type="FEATURE_EXTRACTION", num_virtual_tokens=tokens, prefix_projection=projection, **extra
    )


def add_adapter(encoder: nn.Module, name: str, config) -> PeftModel:
    """Wrap ``encoder`` with its first adapter, or add ``name`` to an existing PeftModel; activate it."""
    if isinstance(encoder, PeftModel):
        encoder.add_adapter(name, config)
    else:
        encoder = get_peft_model(encoder, config, adapter_name=name)
    encoder.set_adapter(name)
    return encoder


def adapter_parameters(peft_model: PeftModel, name: str) -> list[nn.Parameter]:
    """The parameters that belong to adapter ``name``: the entries keyed exactly ``name`` in peft's per-adapter
    dicts (``lora_A[name]``, ``lora_B[name]``, ``lora_magnitude_vector[name]``, ``prompt_encoder[name]``...).

    Not a search of parameter paths for the name: an adapter (marketplace) called ``query``, ``self`` or ``output``
    would then also pick up the base weights of every module of that name. Returned in ``named_parameters`` order.
    """
    owned: set[int] = set()
    holders = []
    for module in peft_model.modules():
        if isinstance(module, BaseTunerLayer):
            holders += [getattr(module, attr, None) for attr in module.adapter_layer_names]
    holders.append(getattr(peft_model, "prompt_encoder", None))  # prompt learning (prefix tuning)
    for holder in holders:
        if isinstance(holder, (nn.ModuleDict, nn.ParameterDict)) and name in holder:
            entry = holder[name]
            owned.update(id(p) for p in (entry.parameters() if isinstance(entry, nn.Module) else [entry]))
    params = [p for _, p in peft_model.named_parameters() if id(p) in owned]
    if not params:
        raise KeyError(f"no parameters found for adapter {name!r}")
    return params


def freeze_all_but(model: nn.Module, keep: list[nn.Parameter]) -> None:
    keep_ids = {id(p) for p in keep}
    for p in model.parameters():
        p.requires_grad_(id(p) in keep_ids)


def save_adapters(peft_model: PeftModel, folder: Path, names: list[str] | None = None) -> None:
    """peft's own format: ``folder/<adapter>/adapter_config.json + adapter_model.safetensors``; every adapter, or
    ``names``."""
    names = list(peft_model.peft_config) if names is None else list(names)
    for name in names:
        peft_model.save_pretrained(str(folder), selected_adapters=[name])
    atomic.write_json(folder / "adapters.json", names, indent=None)


def load_adapters(encoder: nn.Module, folder: Path) -> PeftModel:
    """The adapters ``save_adapters`` wrote, onto ``encoder``. LoRAs come back trainable; prompt-learning adapters
    (prefix tuning) in peft's inference mode, the only way peft loads them (a saved prefix is its final table)."""
    names = json.loads((folder / "adapters.json").read_text())

    def trainable(name: str) -> bool:
        return not PeftConfig.from_pretrained(str(folder / name)).is_prompt_learning

    peft_model = PeftModel.from_pretrained(
        encoder, str(folder / names[0]), adapter_name=names[0], is_trainable=trainable(names[0])
    )
    for name in names[1:]:
        peft_model.load_adapter(str(folder / name), adapter_name=name, is_trainable=trainable(name))
    return peft_model
