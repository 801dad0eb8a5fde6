"""Translate part of a new marketplace into older languages (AD paper §4.3, Algorithm 1: T_1..T_{t-1}).

Back ends behind one small interface, ``Translator.translate(texts, source_lang, target_lang)``:

* ``MarianTranslator`` — Opus-MT through transformers (``Helsinki-NLP/opus-mt-{src}-{tgt}``, the
  paper's choice, Appendix B), batched generation on any device.
* ``ParallelCorpusTranslator`` — for parallel datasets (PAWS-X): the "translation" of a row is the
  row with the same pair id in the older language's table (human translations, no model).
* ``CachedTranslator`` — a disk cache around either, so reruns translate nothing twice.

``translate_fraction`` picks the seeded fraction of the new marketplace and translates it into
every older language (the paper: 30% of D_t, Appendix B; "Translate a portion of D_t into older
languages, denoted T_1, ..., T_{t-1}", §4.3).
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

from frkit import atomic
from frkit.errors import FrkitInputError

log = logging.getLogger(__name__)

DEFAULT_MARIAN = "Helsinki-NLP/opus-mt-{src}-{tgt}"
TEXT_COLUMNS = ("text_a", "text_b")
SPLITS = ("each", "partition")


class Translator(ABC):
    """``translate(texts, source_lang, target_lang) -> texts`` in order; ``backend_id`` names the engine."""

    backend_id: str = "translator"

    @abstractmethod
    def translate(self, texts: list[str], source_lang: str, target_lang: str) -> list[str]: ...

    def translate_rows(self, df: pd.DataFrame, target_lang: str, source_lang: str | None = None) -> pd.DataFrame:
        """The rows with text_a / text_b translated (ids and labels kept: translation keeps relevance)."""
        if source_lang is None:
            raise ValueError(f"{type(self).__name__}.translate_rows needs source_lang")
        out = df.copy()
        n = len(df)
        texts = self.translate([str(t) for col in TEXT_COLUMNS for t in df[col]], source_lang, target_lang)
        out["text_a"], out["text_b"] = texts[:n], texts[n:]
        return out


class MarianTranslator(Translator):
    """Opus-MT (or any seq2seq model + tokenizer) with batched generation.

    model_ids: {(src, tgt): Hub id or local folder}; pairs not listed use ``template``. Opus-MT
    names some languages its own way (Japanese targets are ``opus-mt-en-jap``) and multi-target
    models need a ``>>xx<<`` prefix: map those pairs here, with ``target_prefix`` e.g. ">>{tgt}<<".
    Texts are sorted by length before batching (less padding) and returned in input order;
    duplicates are translated once.
    """

    def __init__(
        self,
        model_ids: Mapping[tuple[str, str], str | Path] | None = None,
        template: str = DEFAULT_MARIAN,
        batch_size: int = 32,
        max_length: int = 256,
        num_beams: int = 1,
        device: str | None = None,
        target_prefix: str | None = None,
    ):
        self.model_ids = {tuple(k): str(v) for k, v in (model_ids or {}).items()}
        self.template = template
        self.batch_size, self.max_length, self.num_beams = batch_size, max_length, num_beams
        self.device = device
        self.target_prefix = target_prefix
        self._loaded: dict[str, tuple] = {}
        self.backend_id = f"marian:{template}"

    def model_id(self, source_lang: str, target_lang: str) -> str:
        return self.model_ids.get((source_lang, target_lang)) or self.template.format(src=source_lang, tgt=target_lang)

    def load(self, model_id: str):
        """(tokenizer, model) for ``model_id``, loaded once."""
        if model_id not in self._loaded:
            try:
                tokenizer = AutoTokenizer.from_pretrained(model_id)
                model = AutoModelForSeq2SeqLM.from_pretrained(model_id)
            except (OSError, ImportError, ValueError) as err:
                needs_spm = "entencepiece" in str(err)
                hint = " (Opus-MT's MarianTokenizer needs `pip install sentencepiece`)" if needs_spm else ""
                raise FrkitInputError(f"translation model {model_id!r} could not be loaded{hint}: {err}") from None
            device = self.device or ("cuda" if torch.cuda.is_available() else "cpu")
            self._loaded[model_id] = (tokenizer, model.to(device).eval())
        return self._loaded[model_id]

    def translate(self, texts: list[str], source_lang: str, target_lang: str) -> list[str]:
        if not texts:
            return []
        tokenizer, model = self.load(self.model_id(source_lang, target_lang))
        prefix = self.target_prefix.format(tgt=target_lang) + " " if self.target_prefix else ""
        unique = sorted(set(texts), key=len)
        done: dict[str, str] = {}
        device = next(model.parameters()).device
        for start in range(0, len(unique), self.batch_size):
            batch = unique[start : start + self.batch_size]
            enc = tokenizer(
                [prefix + t for t in batch],
                return_tensors="pt",
                padding=True,
                truncation=True,
                max_length=self.max_length,
            )
            enc = {k: v.to(device) for k, v in enc.items() if k in ("input_ids", "attention_mask")}
            with torch.inference_mode():
                out = model.generate(**enc, num_beams=self.num_beams, max_new_tokens=self.max_length)
            done.update(zip(batch, tokenizer.batch_decode(out, skip_special_tokens=True)))
        return [done[t].strip() for t in texts]


class ParallelCorpusTranslator(Translator):
    """Translation by lookup in a parallel corpus: ``tables[lang]`` has columns id, text_a, text_b, label.

    ``translate_rows`` maps rows by pair id (the reliable way); ``translate`` maps single texts via
    the source table (text -> (id, column) -> the target table's text) for the generic interface.
    """

    def __init__(self, tables: Mapping[str, pd.DataFrame], name: str = "parallel"):
        self.tables = {lang: _by_id(df, lang) for lang, df in tables.items()}
        self.backend_id = f"parallel:{name}"
        self.last_missing: list[str] = []

    def _table(self, lang: str) -> pd.DataFrame:
        if lang not in self.tables:
            raise FrkitInputError(f"parallel corpus has no {lang!r} table; it has {sorted(self.tables)}")
        return self.tables[lang]

    def translate_rows(self, df: pd.DataFrame, target_lang: str, source_lang: str | None = None) -> pd.DataFrame:
        """The ``target_lang`` rows with the ids of ``df`` (in df's order) that the corpus has.

        Labels and ids come from ``df`` (the new marketplace's rows); missing ids are dropped,
        logged, and listed in ``last_missing`` and ``result.attrs["missing_ids"]``.
        """
        target = self._table(target_lang)
        ids = df["id"].astype(str)
        found = ids.isin(target.index)
        self.last_missing = ids[~found].tolist()
        if self.last_missing:
            log.warning(
                "parallel corpus %s: %d of %d ids have no %r row (e.g. %s)",
                self.backend_id,
                len(self.last_missing),
                len(df),
                target_lang,
                self.last_missing[:3],
            )
        out = df.loc[found.values].copy()
        hit = target.loc[ids[found]]
        out["text_a"], out["text_b"] = hit["text_a"].to_numpy(), hit["text_b"].to_numpy()
        out.attrs["missing_ids"] = list(self.last_missing)
        return out.reset_index(drop=True)

    def translate(self, texts: list[str], source_lang: str, target_lang: str) -> list[str]:
        source, target = self._table(source_lang), self._table(target_lang)
        where: dict[str, tuple[str, str]] = {}
        for col in TEXT_COLUMNS:  # first occurrence wins when a sentence repeats across pairs
            for pair_id, text in zip(source.index, source[col]):
                if pair_id in target.index:
                    where.setdefault(text, (pair_id, col))
        missing = [t for t in texts if t not in where]
        if missing:
            raise KeyError(
                f"{len(missing)} of {len(texts)} texts have no {source_lang}->{target_lang} "
                f"counterpart in the parallel corpus (e.g. {missing[0]!r})"
            )
        return [str(target.at[where[t][0], where[t][1]]) for t in texts]


class CachedTranslator(Translator):
    """A disk cache around ``inner``: JSONL per (backend, src, tgt), keyed by sha1(text).

    Each line is ``{"sha1": ..., "text": ..., "translation": ...}``; only cache misses reach the
    inner translator (one call per ``translate``), and new entries are appended at once, so an
    interrupted run keeps what it translated.
    """

    def __init__(self, inner: Translator, cache_dir: str | Path):
        self.inner = inner
        self.cache_dir = Path(cache_dir)
        self.backend_id = inner.backend_id
        self._memory: dict[Path, dict[str, str]] = {}

    def cache_file(self, source_lang: str, target_lang: str) -> Path:
        slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", self.backend_id)
        tag = hashlib.sha1(self.backend_id.encode()).hexdigest()[:8]  # two ids slugging alike stay apart
        return self.cache_dir / f"{slug}-{tag}__{source_lang}-{target_lang}.jsonl"

    def _entries(self, file: Path) -> dict[str, str]:
        if file not in self._memory:
            entries = {}
            if file.is_file():
                for line in file.read_text(encoding="utf-8").splitlines():
                    if line.strip():
                        row = json.loads(line)
                        entries[row["sha1"]] = row["translation"]
            self._memory[file] = entries
        return self._memory[file]

    def translate(self, texts: list[str], source_lang: str, target_lang: str) -> list[str]:
        file = self.cache_file(source_lang, target_lang)
        entries = self._entries(file)
        keys = [_sha1(t) for t in texts]
        todo = list(dict.fromkeys(t for t, k in zip(texts, keys) if k not in entries))
        if todo:
            new = self.inner.translate(todo, source_lang, target_lang)
            file.parent.mkdir(parents=True, exist_ok=True)
            lines = []
            for text, translation in zip(todo, new):
                entries[_sha1(text)] = translation
                lines.append(
                    json.dumps({"sha1": _sha1(text), "text": text, "translation": translation}, ensure_ascii=False)
                    + "\n"
                )
            # the whole file, atomically: a kill mid-write never leaves a torn line for the next run to trip on
            old = file.read_text(encoding="utf-8") if file.is_file() else ""
            atomic.write_text(file, old + "".join(lines))
        return [entries[k] for k in keys]

    def translate_rows(self, df: pd.DataFrame, target_lang: str, source_lang: str | None = None) -> pd.DataFrame:
        if isinstance(self.inner, ParallelCorpusTranslator):  # a lookup by id costs nothing to redo
            return self.inner.translate_rows(df, target_lang, source_lang)
        return super().translate_rows(df, target_lang, source_lang)


def translate_fraction(
    df: pd.DataFrame,
    fraction: float,
    seed: int,
    older_langs: Sequence[str],
    translator: Translator,
    source_lang: str | None = None,
    split: str = "each",
) -> dict[str, pd.DataFrame]:
    """T_1..T_{t-1} (§4.3 step 2): a seeded ``fraction`` of ``df``'s rows translated into each older language.

    split="each" (default): the same sampled rows go into every older language, so each T_k has
    fraction·|D_t| rows. The paper translates "a portion of D_t into older languages" and "30% of
    the data ... back into the languages of earlier marketplaces" (Appendix B), i.e. one portion,
    every older language. split="partition" instead deals the portion out into disjoint, near-equal
    shares, one per older language (constant translation cost as t grows).
    Returns {lang: rows} ({} for fraction 0 or no older language); rows keep id and label.
    """
    if not 0.0 <= fraction <= 1.0:
        raise FrkitInputError(f"translate fraction {fraction!r}: expected a number in [0, 1]")
    if split not in SPLITS:
        raise FrkitInputError(f"translate split {split!r}: expected one of {SPLITS}")
    n = int(round(fraction * len(df)))
    if n == 0 or not older_langs:
        return {}
    rng = np.random.default_rng(seed)
    picked = rng.permutation(len(df))[:n]
    if split == "each":
        shares = {lang: np.sort(picked) for lang in older_langs}
    else:
        shares = {lang: np.sort(part) for lang, part in zip(older_langs, np.array_split(picked, len(older_langs)))}
    out = {}
    for lang, rows in shares.items():
        part = df.iloc[rows].reset_index(drop=True)
        out[lang] = translator.translate_rows(part, lang, source_lang)
        log.info("translated %d rows %s -> %s with %s", len(out[lang]), source_lang, lang, translator.backend_id)
    return out


def _sha1(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()


def _by_id(df: pd.DataFrame, lang: str) -> pd.DataFrame:
    missing = [c for c in ("id", *TEXT_COLUMNS) if c not in df.columns]
    if missing:
        raise FrkitInputError(
            f"parallel corpus table {lang!r} lacks column(s) {missing}; expected id, text_a, text_b, label"
        )
    table = df.assign(id=df["id"].astype(str)).drop_duplicates("id").set_index("id")
    return table
