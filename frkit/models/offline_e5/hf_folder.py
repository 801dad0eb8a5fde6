"""An E5S1 file and its ``tokenizer.json`` -> an ordinary Hugging Face folder (a plain ``BertModel``, fp32
safetensors, XLM-R tokenizer files)."""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

import numpy as np

from frkit.models.offline_e5.e5s1 import read_e5s1

log = logging.getLogger(__name__)

_LINEAR = {
    "q": "attention.self.query",
    "k": "attention.self.key",
    "v": "attention.self.value",
    "ao": "attention.output.dense",
    "fi": "intermediate.dense",
    "fo": "output.dense",
}
_NORMS = {"aln": "attention.output.LayerNorm", "oln": "output.LayerNorm"}
_SPECIAL_TOKENS = {
    "bos_token": "<s>",
    "eos_token": "</s>",
    "sep_token": "</s>",
    "cls_token": "<s>",
    "unk_token": "<unk>",
    "pad_token": "<pad>",
    "mask_token": "<mask>",
}


def hf_state_dict(header: dict, tensors: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """E5S1 tensor names -> ``BertModel`` state-dict names (no pooler)."""
    state = {
        "embeddings.word_embeddings.weight": tensors["emb.word"],
        "embeddings.position_embeddings.weight": tensors["emb.pos"],
        # only row 0 is stored (e5 never uses segment B); fill every row with it
        "embeddings.token_type_embeddings.weight": _fill_rows(tensors["emb.type"], max(header["type_vocab_size"], 2)),
        "embeddings.LayerNorm.weight": tensors["emb.ln.w"],
        "embeddings.LayerNorm.bias": tensors["emb.ln.b"],
    }
    for layer in range(header["num_layers"]):
        prefix = f"encoder.layer.{layer}."
        for short, long in _LINEAR.items():
            state[prefix + long + ".weight"] = tensors[f"l{layer}.{short}.w"]
            state[prefix + long + ".bias"] = tensors[f"l{layer}.{short}.b"]
        for short, long in _NORMS.items():
            state[prefix + long + ".weight"] = tensors[f"l{layer}.{short}.w"]
            state[prefix + long + ".bias"] = tensors[f"l{layer}.{short}.b"]
    return {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in state.items()}


def _fill_rows(rows: np.ndarray, n: int) -> np.ndarray:
    return np.concatenate([rows] + [rows[:1]] * (n - rows.shape[0]), axis=0) if rows.shape[0] < n else rows


def bert_config(header: dict) -> dict:
    """The ``config.json`` of the converted model (a plain BertModel)."""
    from transformers import BertConfig

    return BertConfig(
        vocab_size=header["vocab_size"],
        hidden_size=header["hidden_size"],
        num_hidden_layers=header["num_layers"],
        num_attention_heads=header["num_heads"],
        intermediate_size=header["intermediate_size"],
        max_position_embeddings=header["max_positions"],
        type_vocab_size=max(header["type_vocab_size"], 2),
        layer_norm_eps=header["layer_norm_eps"],
        hidden_act="gelu",
        pad_token_id=header["pad_id"],
        bos_token_id=header["bos_id"],
        eos_token_id=header["eos_id"],
        architectures=["BertModel"],
    ).to_dict()


def e5s1_to_hf(bin_path: str | os.PathLike, tokenizer_json_path: str | os.PathLike, out_dir: str | os.PathLike) -> Path:
    """Write an ordinary HF folder (config, fp32 safetensors, XLM-R tokenizer files) from an E5S1 file
    and its ``tokenizer.json``. Returns ``out_dir``."""
    from safetensors.numpy import save_file

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    header, pieces, tensors = read_e5s1(bin_path)
    tokenizer_json = json.loads(Path(tokenizer_json_path).read_text(encoding="utf-8"))
    _check_pieces_match(pieces, tokenizer_json, tokenizer_json_path)

    save_file(hf_state_dict(header, tensors), str(out / "model.safetensors"), metadata={"format": "pt"})
    (out / "model.safetensors").chmod(0o644)  # safetensors writes owner-only files; caches are shared
    (out / "config.json").write_text(json.dumps(bert_config(header), indent=2) + "\n")
    shutil.copyfile(tokenizer_json_path, out / "tokenizer.json")
    _write_tokenizer_config(out, header)
    log.info("wrote HF folder %s (%d tensors, vocab %d)", out, len(tensors), header["vocab_size"])
    return out


def _check_pieces_match(pieces: list[tuple[str, float]], tokenizer_json: dict, where) -> None:
    """The .bin's ids must mean the same pieces as the tokenizer's, or the embeddings are scrambled."""
    vocab = tokenizer_json.get("model", {}).get("vocab") or []
    mismatch = next((i for i, ((p, s), (q, t)) in enumerate(zip(pieces, vocab)) if p != q or abs(s - t) > 1e-4), None)
    if len(vocab) != len(pieces) or mismatch is not None:
        raise ValueError(
            f"{where} does not match the E5S1 pieces ({len(vocab)} vs {len(pieces)} pieces, "
            f"first difference at id {mismatch})"
        )


def _write_tokenizer_config(out: Path, header: dict) -> None:
    max_len = header["max_positions"]
    config = {
        "tokenizer_class": "XLMRobertaTokenizer",
        "model_max_length": max_len,
        "clean_up_tokenization_spaces": True,
        "add_prefix_space": True,
        **_SPECIAL_TOKENS,
    }
    (out / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n")
    (out / "special_tokens_map.json").write_text(json.dumps(_SPECIAL_TOKENS, indent=2) + "\n")
