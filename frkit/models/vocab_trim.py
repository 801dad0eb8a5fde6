"""Vocabulary trimming: keep only the embedding rows of the tokens that the configured data produces.

96M of multilingual-e5-small's 118M parameters are its 250k-row word-embedding table, yet one
marketplace's texts use a few tens of thousands of pieces. Trimming keeps those rows (plus every
special token), renumbers them 0..n-1 in their original order and restricts the SentencePiece
Unigram model to the kept pieces with their scores. Unigram tokenisation is a Viterbi search for
the best-scoring segmentation; a sub-vocabulary that still holds every piece of the best
segmentation cannot offer a better one, so the texts tokenise to the same pieces, and the ids map
back through ``kept_ids[new_id] == old_id``. Hence the trimmed model's outputs on that data are
identical to the full model's.

One subtlety: the Unigram lattice scores an unknown character ``min(piece scores) - 10``. The
piece with the lowest score is always kept so that this penalty does not change.

Only Unigram tokenizers are handled: greedy WordPiece and BPE merges can segment differently once
pieces they tried (but did not output) are removed, so they raise ``NotImplementedError``.

Public API:
    trim_vocabulary(model_dir, texts, out_dir) -> Path
    trimmed_model_dir(model_dir, texts, cache_root) -> Path     (cached by content + kept ids)
    kept_token_ids(model_dir, texts) -> list[int]
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from frkit import atomic
from frkit.atomic import COMPLETE_MARKER  # one atomic cache protocol for both folders (atomic.publish_dir)

log = logging.getLogger(__name__)

TRIM_INFO = "frkit_trim.json"
WEIGHTS = "model.safetensors"
# files that describe the old vocabulary and must not travel into the trimmed folder
_NOT_COPIED = {
    WEIGHTS,
    "tokenizer.json",
    "config.json",
    "tokenizer_config.json",
    "pytorch_model.bin",
    "sentencepiece.bpe.model",
    "spiece.model",
    "tokenizer.model",
    "vocab.txt",
    "vocab.json",
    "merges.txt",
    COMPLETE_MARKER,
    TRIM_INFO,
}
_CONFIG_TOKEN_IDS = (
    "pad_token_id",
    "bos_token_id",
    "eos_token_id",
    "sep_token_id",
    "cls_token_id",
    "unk_token_id",
    "mask_token_id",
    "decoder_start_token_id",
)
_BATCH = 2048

Text = str | tuple[str, str]


# --------------------------------------------------------------------------- public API


def trim_vocabulary(
    model_dir: str | os.PathLike, texts: Iterable[Text], out_dir: str | os.PathLike, verify: bool = True
) -> Path:
    """Write a copy of the HF folder ``model_dir`` to ``out_dir`` whose vocabulary holds only the
    tokens the tokenizer produces on ``texts`` (strings, or (a, b) pairs encoded as pairs) plus all
    special tokens. With ``verify`` the texts are re-tokenised by the new folder and must give the
    same pieces. Raises ``NotImplementedError`` for non-Unigram tokenizers."""
    model_dir, texts = Path(model_dir), list(texts)
    tokenizer_json = _load_unigram_tokenizer_json(model_dir)
    tokenizer = _auto_tokenizer(model_dir)
    kept = _kept_ids(model_dir, tokenizer, tokenizer_json, texts)
    out = write_trimmed(model_dir, kept, out_dir, tokenizer_json)
    if verify:
        _verify(tokenizer, out, kept, texts)
    return out


def kept_token_ids(model_dir: str | os.PathLike, texts: Iterable[Text]) -> list[int]:
    """Sorted original ids that a trimmed vocabulary for ``texts`` keeps."""
    model_dir = Path(model_dir)
    tokenizer_json = _load_unigram_tokenizer_json(model_dir)
    return _kept_ids(model_dir, _auto_tokenizer(model_dir), tokenizer_json, list(texts))


def trimmed_model_dir(model_dir: str | os.PathLike, texts: Iterable[Text], cache_root: str | os.PathLike) -> Path:
    """A trimmed copy of ``model_dir`` for ``texts`` under ``cache_root``.

    The folder is named by a hash of (the model's content id, the sorted kept ids), so a rerun
    reuses it. An index keyed by (content id, texts) lets a rerun on the same texts skip
    tokenisation altogether (loading a 250k-piece tokenizer takes seconds)."""
    model_dir, cache_root, texts = Path(model_dir), Path(cache_root), list(texts)
    tokenizer_json = _load_unigram_tokenizer_json(model_dir)
    content_id = model_content_id(model_dir)
    index_entry = cache_root / "index" / f"{_digest(content_id, _texts_digest(texts))}.txt"
    if index_entry.is_file() and (cache_root / index_entry.read_text().strip() / COMPLETE_MARKER).is_file():
        folder = cache_root / index_entry.read_text().strip()
        log.info("reusing trimmed model %s", folder)
        return folder

    tokenizer = _auto_tokenizer(model_dir)
    kept = _kept_ids(model_dir, tokenizer, tokenizer_json, texts)
    folder = cache_root / f"{model_dir.name}-trim-{_digest(content_id, ','.join(map(str, kept)))}"
    if not (folder / COMPLETE_MARKER).is_file():
        cache_root.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=".trim-", dir=cache_root) as tmp:
            built = write_trimmed(model_dir, kept, Path(tmp) / "out", tokenizer_json)
            _verify(tokenizer, built, kept, texts)
            atomic.fsync_tree(built)
            atomic.write_text(built / COMPLETE_MARKER, "ok\n")  # last: the folder is complete
            atomic.publish_dir(built, folder)
    else:
        log.info("reusing trimmed model %s (%d rows)", folder, len(kept))
    index_entry.parent.mkdir(parents=True, exist_ok=True)
    atomic.write_text(index_entry, folder.name + "\n")
    return folder


def _digest(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:16]


def _texts_digest(texts: Sequence[Text]) -> str:
    digest = hashlib.sha256()
    for text in texts:
        # a 0x1e/0x1f framing keeps ("a b",) apart from ("a", "b")
        digest.update(
            ("\x1e" + text if isinstance(text, str) else "\x1f" + "\x1f".join(text)).encode("utf-8", "surrogatepass")
        )
    return digest.hexdigest()


def model_content_id(model_dir: str | os.PathLike) -> str:
    """sha256 over the folder's config, tokenizer and weights files (names and bytes)."""
    digest = hashlib.sha256()
    for path in sorted(Path(model_dir).iterdir()):
        if (
            path.is_file()
            and (path.suffix in (".json", ".safetensors", ".model", ".txt"))
            and path.name != COMPLETE_MARKER
        ):
            digest.update(path.name.encode() + b"\0" + _file_sha256(path).encode())
    return digest.hexdigest()


_SHA_MEMO: dict[tuple[str, int, int], str] = {}


def _file_sha256(path: Path) -> str:
    # a large weights file is hashed once per process and (size, mtime) pair
    stat = path.stat()
    memo_key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if memo_key not in _SHA_MEMO:
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            while chunk := f.read(1 << 24):
                digest.update(chunk)
        _SHA_MEMO[memo_key] = digest.hexdigest()
    return _SHA_MEMO[memo_key]


# --------------------------------------------------------------------------- which ids to keep


def _load_unigram_tokenizer_json(model_dir: Path) -> dict:
    path = model_dir / "tokenizer.json"
    if not path.is_file():
        raise NotImplementedError(f"vocabulary trimming needs a tokenizer.json; {model_dir} has none")
    tokenizer_json = json.loads(path.read_text(encoding="utf-8"))
    kind = tokenizer_json.get("model", {}).get("type")
    if kind != "Unigram":
        raise NotImplementedError(
            f"vocabulary trimming supports SentencePiece-Unigram tokenizers only; {model_dir} uses {kind} "
            "(its greedy segmentation could change once unused pieces are removed)"
        )
    if not (model_dir / WEIGHTS).is_file():
        raise NotImplementedError(f"vocabulary trimming needs a single {WEIGHTS} in {model_dir}")
    return tokenizer_json


def _kept_ids(model_dir: Path, tokenizer, tokenizer_json: dict, texts: Sequence[Text]) -> list[int]:
    """Ids ``tokenizer`` produces on ``texts`` plus the ids that must always survive."""
    n_pieces = len(tokenizer_json["model"]["vocab"])
    used = np.zeros(n_pieces, dtype=bool)
    for ids in _encode_all(tokenizer, texts):
        used[ids] = True
    used[list(_always_kept_ids(model_dir, tokenizer_json))] = True
    return np.flatnonzero(used).tolist()


def _always_kept_ids(model_dir: Path, tokenizer_json: dict) -> set[int]:
    """Special / added tokens, unk, post-processor and config token ids, and the lowest-scoring piece
    (it fixes the unknown-character penalty ``min score - 10`` of the Unigram lattice)."""
    model = tokenizer_json["model"]
    n_pieces = len(model["vocab"])
    ids = {tok["id"] for tok in tokenizer_json.get("added_tokens") or []}
    ids |= {int(np.argmin([score for _, score in model["vocab"]]))}
    if model.get("unk_id") is not None:
        ids.add(model["unk_id"])
    ids |= _post_processor_ids(tokenizer_json.get("post_processor"))
    if padding := tokenizer_json.get("padding"):
        ids.add(padding["pad_id"])
    config = _read_json(model_dir / "config.json")
    ids |= {config[k] for k in _CONFIG_TOKEN_IDS if isinstance(config.get(k), int)}
    ids |= {int(k) for k in (_read_json(model_dir / "tokenizer_config.json").get("added_tokens_decoder") or {})}
    return {i for i in ids if 0 <= i < n_pieces}


def _auto_tokenizer(model_dir: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(model_dir)


def _encode_all(tokenizer, texts: Sequence[Text]) -> Iterable[list[int]]:
    """Input ids of every text, pairs encoded as pairs, without truncation (a superset of what any
    max_length produces)."""
    singles = [t for t in texts if isinstance(t, str)]
    pairs = [tuple(t) for t in texts if not isinstance(t, str)]
    for start in range(0, len(singles), _BATCH):
        yield from tokenizer(singles[start : start + _BATCH], truncation=False)["input_ids"]
    for start in range(0, len(pairs), _BATCH):
        a, b = zip(*pairs[start : start + _BATCH])
        yield from tokenizer(list(a), list(b), truncation=False)["input_ids"]


# --------------------------------------------------------------------------- writing the folder


def write_trimmed(
    model_dir: str | os.PathLike, kept: Sequence[int], out_dir: str | os.PathLike, tokenizer_json: dict | None = None
) -> Path:
    """Write ``model_dir`` restricted to the sorted original ids ``kept`` (new id = position) to ``out_dir``."""
    model_dir, out = Path(model_dir), Path(out_dir)
    tokenizer_json = tokenizer_json or _load_unigram_tokenizer_json(model_dir)
    kept = sorted(set(int(i) for i in kept))
    new_id = {old: new for new, old in enumerate(kept)}
    out.mkdir(parents=True, exist_ok=True)
    for path in model_dir.iterdir():
        if path.is_file() and path.name not in _NOT_COPIED:
            shutil.copy2(path, out / path.name)
    _write_json(out / "tokenizer.json", _trim_tokenizer_json(tokenizer_json, kept, new_id))
    if (model_dir / "tokenizer_config.json").is_file():
        _write_json(
            out / "tokenizer_config.json",
            _trim_tokenizer_config(_read_json(model_dir / "tokenizer_config.json"), new_id),
        )
    _write_json(out / "config.json", _trim_config(_read_json(model_dir / "config.json"), new_id))
    n_rows_before = _trim_weights(model_dir / WEIGHTS, out / WEIGHTS, kept)
    _write_json(out / TRIM_INFO, {"source": str(model_dir), "original_vocab_size": n_rows_before, "kept_ids": kept})
    log.info("trimmed vocabulary of %s: %d -> %d rows, written to %s", model_dir, n_rows_before, len(kept), out)
    return out


def _trim_tokenizer_json(tokenizer_json: dict, kept: list[int], new_id: dict[int, int]) -> dict:
    """Restrict the Unigram vocabulary to ``kept`` (scores unchanged) and renumber every stored id."""
    remap = _strict_remap(new_id)
    trimmed = json.loads(json.dumps(tokenizer_json))  # deep copy
    vocab = tokenizer_json["model"]["vocab"]
    trimmed["model"]["vocab"] = [vocab[i] for i in kept]
    if trimmed["model"].get("unk_id") is not None:
        trimmed["model"]["unk_id"] = remap(trimmed["model"]["unk_id"])
    for tok in trimmed.get("added_tokens") or []:
        tok["id"] = remap(tok["id"])
    _remap_token_ids(trimmed.get("post_processor"), remap)
    if trimmed.get("padding"):
        trimmed["padding"]["pad_id"] = remap(trimmed["padding"]["pad_id"])
    return trimmed


def _remap_token_ids(processor: dict | None, remap) -> None:
    """Apply ``remap`` in place to the token ids a post-processor stores (Template, Roberta, Bert,
    Sequence of them)."""
    if not processor:
        return
    for inner in processor.get("processors") or []:
        _remap_token_ids(inner, remap)
    for special in (processor.get("special_tokens") or {}).values():
        special["ids"] = [remap(i) for i in special["ids"]]
    for key in ("sep", "cls"):
        if isinstance(processor.get(key), list) and len(processor[key]) == 2:
            processor[key][1] = remap(processor[key][1])


def _post_processor_ids(processor: dict | None) -> set[int]:
    found: set[int] = set()

    def collect(i: int) -> int:
        found.add(i)
        return i

    _remap_token_ids(json.loads(json.dumps(processor)) if processor else None, collect)
    return found


def _trim_tokenizer_config(config: dict, new_id: dict[int, int]) -> dict:
    if "added_tokens_decoder" in config:
        remap = _strict_remap(new_id)
        config["added_tokens_decoder"] = {str(remap(int(k))): v for k, v in config["added_tokens_decoder"].items()}
    return config


def _trim_config(config: dict, new_id: dict[int, int]) -> dict:
    config["vocab_size"] = len(new_id)
    for key in _CONFIG_TOKEN_IDS:
        if isinstance(config.get(key), int) and config[key] in new_id:
            config[key] = new_id[config[key]]
    return config


def _trim_weights(src: Path, dst: Path, kept: list[int]) -> int:
    """Copy the safetensors file, taking only the ``kept`` rows of every vocabulary-sized tensor
    (word embeddings; an output head's decoder weight and bias). Returns the old row count."""
    import torch
    from safetensors import safe_open
    from safetensors.torch import save_file

    index = torch.tensor(kept, dtype=torch.long)
    tensors, n_rows = {}, None
    with safe_open(str(src), framework="pt") as f:
        metadata = f.metadata() or {"format": "pt"}
        names = list(f.keys())
        embed_names = [n for n in names if n.endswith("word_embeddings.weight")]
        if len(embed_names) != 1:
            raise NotImplementedError(f"expected one *word_embeddings.weight in {src}, found {embed_names}")
        n_rows = f.get_slice(embed_names[0]).get_shape()[0]
        for name in names:
            tensor = f.get_tensor(name)
            if name in embed_names or (_is_vocab_head(name) and tensor.shape[:1] == (n_rows,)):
                tensor = tensor.index_select(0, index).contiguous()
            tensors[name] = tensor
    save_file(tensors, str(dst), metadata=metadata)
    dst.chmod(0o644)  # safetensors writes owner-only files; caches are shared
    return n_rows


def _is_vocab_head(name: str) -> bool:
    return "decoder" in name or "lm_head" in name or name.startswith("cls.predictions")


def _strict_remap(new_id: dict[int, int]):
    def remap(old: int) -> int:
        if old not in new_id:
            raise ValueError(f"token id {old} is referenced by the tokenizer but was not kept")
        return new_id[old]

    return remap


# --------------------------------------------------------------------------- checks and helpers


def _verify(source_tokenizer, trimmed_dir: Path, kept: list[int], texts: Sequence[Text]) -> None:
    """Re-tokenise ``texts`` with both tokenizers; every new id must map back to the old one."""
    kept_arr = np.asarray(kept)
    old = _encode_all(source_tokenizer, texts)
    new = _encode_all(_auto_tokenizer(trimmed_dir), texts)
    for i, (a, b) in enumerate(zip(old, new)):
        if len(a) != len(b) or not np.array_equal(kept_arr[np.asarray(b, dtype=np.int64)], a):
            raise RuntimeError(f"trimmed tokenizer in {trimmed_dir} tokenises text {i} ({texts[i]!r:.80}) differently")


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def _write_json(path: Path, obj: dict) -> None:
    atomic.write_text(path, json.dumps(obj, ensure_ascii=False, indent=2) + "\n")
