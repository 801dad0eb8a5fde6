"""frkit's encoder + 2-logit head as a Hugging Face ``*ForSequenceClassification`` with the same logits (the pooler
trick: ``frkit.export``'s docstring), LoRA / DoRA adapters merged in, and both models' logits on a pair table."""

from __future__ import annotations

import copy

import numpy as np
import torch
from torch import nn

from frkit.errors import FrkitInputError

EPS = 2.0**-20  # pooler scale: tanh(EPS * h) == EPS * h exactly in fp32 for |h| <= 256 (module docstring)
PARITY_TOLERANCE = 1e-5  # largest |logit difference| an export may show against frkit's own model
ID2LABEL = {0: "not relevant", 1: "relevant"}

# model_type -> (sequence-classification class, base-model attribute, pooler dense key, classifier key)
ARCHITECTURES = {
    "bert": ("BertForSequenceClassification", "bert", "bert.pooler.dense", "classifier"),
    "roberta": ("RobertaForSequenceClassification", "roberta", "classifier.dense", "classifier.out_proj"),
    "xlm-roberta": ("XLMRobertaForSequenceClassification", "roberta", "classifier.dense", "classifier.out_proj"),
}


def _active_lora_adapters(encoder, method: str) -> list[str]:
    from peft import LoraConfig

    active = encoder.active_adapters if hasattr(encoder, "active_adapters") else [encoder.active_adapter]
    active = [active] if isinstance(active, str) else list(active)
    for name in active:
        config = encoder.peft_config[name]
        if not isinstance(config, LoraConfig):
            raise FrkitInputError(
                f"method {method!r} cannot be exported as a plain encoder: its adapter {name!r} is "
                f"{type(config).__name__}, not a LoRA / DoRA that merges into the weights"
            )
    return active


def _merged_encoder(encoder: nn.Module, method: str) -> nn.Module:
    """A plain transformers encoder: peft's active LoRA / DoRA adapter(s) merged in fp32 (several active LoRAs, as
    LoRA stacking scores, sum in every layer: merging them all is the same function)."""
    from peft import PeftModel
    from transformers import PreTrainedModel

    if isinstance(encoder, PeftModel):
        active = _active_lora_adapters(encoder, method)
        encoder = copy.deepcopy(encoder).to(torch.float32)
        encoder.base_model.set_adapter(active)
        encoder = encoder.merge_and_unload(adapter_names=active)
    else:
        encoder = copy.deepcopy(encoder).to(torch.float32)
    if not isinstance(encoder, PreTrainedModel):
        raise FrkitInputError(
            f"method {method!r} cannot be exported as a plain encoder: its encoder is a "
            f"{type(encoder).__name__}, not a Hugging Face model"
        )
    foreign = sorted(
        {
            type(m).__module__ + "." + type(m).__name__
            for m in encoder.modules()
            if not type(m).__module__.startswith(("transformers.", "torch.nn."))
        }
    )
    hooked = [n for n, m in encoder.named_modules() if m._forward_hooks or m._forward_pre_hooks]
    if foreign or hooked:
        held = "modules " + ", ".join(foreign[:3]) if foreign else "forward hooks on " + ", ".join(hooked[:3])
        raise FrkitInputError(
            f"method {method!r} cannot be exported as a plain encoder: its encoder holds {held}"
            " that a plain Hugging Face model lacks"
        )
    return encoder.eval()


def to_sequence_classifier(encoder: nn.Module, head: nn.Linear, method: str = "?") -> nn.Module:
    """``encoder`` (plain, fp32) + frkit's 2-logit ``head`` as an HF ``*ForSequenceClassification`` computing the same
    logits (module docstring)."""
    import transformers

    config = copy.deepcopy(encoder.config)
    model_type = getattr(config, "model_type", None)
    if model_type not in ARCHITECTURES:
        raise FrkitInputError(
            f"method {method!r}: encoder type {model_type!r} has no exact mapping onto a Hugging "
            f"Face sequence classifier here (supported: {sorted(ARCHITECTURES)})"
        )
    cls_name, base_attr, dense_key, classifier_key = ARCHITECTURES[model_type]
    config.architectures = [cls_name]
    config.num_labels = 2
    config.id2label = dict(ID2LABEL)
    config.label2id = {v: k for k, v in ID2LABEL.items()}
    config.problem_type = "single_label_classification"
    config.classifier_dropout = None
    model = getattr(transformers, cls_name)(config)
    missing, unexpected = getattr(model, base_attr).load_state_dict(encoder.state_dict(), strict=False)
    missing = [k for k in missing if not k.startswith("pooler.")]
    if missing or unexpected:
        raise FrkitInputError(
            f"method {method!r}: the encoder's weights do not fit {cls_name} (missing {missing[:3]}, "
            f"unexpected {unexpected[:3]})"
        )
    hidden = config.hidden_size
    dense, classifier = model.get_submodule(dense_key), model.get_submodule(classifier_key)
    with torch.no_grad():
        dense.weight.copy_(torch.eye(hidden) * EPS)
        dense.bias.zero_()
        classifier.weight.copy_(head.weight.detach().float().cpu() / EPS)
        classifier.bias.copy_(head.bias.detach().float().cpu())
    return model.float().eval()


@torch.no_grad()
def frkit_logits(frkit_model, tokenizer, table, head: str, max_length: int, batch_size: int = 64) -> np.ndarray:
    """frkit's own logits (fp32) on a pair table, in table order."""
    out = []
    for start in range(0, len(table), batch_size):
        rows = table.iloc[start : start + batch_size]
        enc = tokenizer(
            rows["text_a"].tolist(),
            rows["text_b"].tolist(),
            truncation=True,
            max_length=max_length,
            padding=True,
            return_tensors="pt",
        )
        out.append(frkit_model(**enc, head=head).float().numpy())
    return np.concatenate(out) if out else np.zeros((0, 2), dtype=np.float32)


@torch.no_grad()
def hf_logits(model, tokenizer, table, batch_size: int = 64) -> np.ndarray:
    """An exported model's logits (as loaded by transformers) on a pair table, in table order."""
    out = []
    for start in range(0, len(table), batch_size):
        rows = table.iloc[start : start + batch_size]
        enc = tokenizer(
            rows["text_a"].tolist(), rows["text_b"].tolist(), truncation=True, padding=True, return_tensors="pt"
        )
        out.append(model(**enc).logits.float().numpy())
    return np.concatenate(out) if out else np.zeros((0, 2), dtype=np.float32)
