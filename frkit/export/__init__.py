"""A trained marketplace leaves the kit: ``frkit export RUN_DIR --marketplace NAME OUT_DIR``.

OUT_DIR is an ordinary Hugging Face folder (config.json, model.safetensors, the tokenizer, a model card README.md)
that ``AutoModelForSequenceClassification`` / ``AutoTokenizer`` and ``sentence_transformers.CrossEncoder`` load
without frkit. A LoRA / DoRA method's active adapter(s) are merged into the base (fp32), so the exported model costs
exactly what the base encoder costs.

How frkit's head becomes HF's classifier
----------------------------------------
frkit scores ``heads[m](h_cls)``: a ``Linear(hidden, 2)`` on the last hidden state of the first token, no pooler.
HF's ``BertForSequenceClassification`` computes ``classifier(tanh(pooler.dense(h_cls)))`` (RoBERTa / XLM-R:
``out_proj(tanh(dense(h_cls)))``); the tanh cannot be switched off by config. The export sets the pooler's dense
layer to ``EPS * I`` (bias 0) and the classifier to ``W / EPS`` (bias ``b``) with ``EPS = 2**-20``: torch's fp32
``tanh(EPS * h) == EPS * h`` exactly for every hidden value |h| <= 256 (checked by the tests; 1 ulp off up to ~440,
relative error below 1e-6 up to 1000), and scaling by a power of two is exact, so ``W/EPS @ tanh(EPS * h) == W @ h``
product for product (what may differ is the summation order of a matmul kernel). The export checks this on the
marketplace's test set before the folder appears (``max_abs_logit_diff`` in frkit_export.json and the card). The
model runs in fp32 or bf16; fp16 is not supported (``W/EPS`` exceeds fp16's range).

``num_labels = 2``: logit 0 = "not relevant", logit 1 = "relevant", as frkit's head (its softmax[1] is frkit's
score). The relevance score that ranks is the margin ``logit[1] - logit[0]`` (what ``frkit score`` writes).

Only ``pooling: cls`` maps onto these classifiers (none of them mean-pools); other runs, and methods whose model is
not one plain encoder, are refused with one line naming the reason before anything is written.

One job per module: ``hf_classifier`` (the mapping above, LoRA / DoRA merged, both models' logits), ``exportable``
(the refusals, a run's marketplace loaded as that classifier in memory), ``card`` (the model card), ``onnx``
(``--onnx``), ``folder`` (``export``: the folder written atomically after the parity check).
"""

from __future__ import annotations

from frkit.export.card import model_card
from frkit.export.exportable import REFUSED, Exportable, check_exportable, prepare
from frkit.export.folder import INFO_FILE, export
from frkit.export.hf_classifier import (
    ARCHITECTURES,
    EPS,
    ID2LABEL,
    PARITY_TOLERANCE,
    frkit_logits,
    hf_logits,
    to_sequence_classifier,
)
from frkit.export.onnx import ONNX_FILE, export_onnx, onnx_logits

__all__ = [
    "export",
    "prepare",
    "to_sequence_classifier",
    "check_exportable",
    "hf_logits",
    "frkit_logits",
    "onnx_logits",
    "REFUSED",
    "EPS",
    "ID2LABEL",
    "ARCHITECTURES",
    "PARITY_TOLERANCE",
    "INFO_FILE",
    "ONNX_FILE",
    "Exportable",
    "model_card",
    "export_onnx",
]
