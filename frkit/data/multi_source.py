"""Marketplaces drawn from several parallel corpora in one run (``data_source: mixed``, issue 30).

Translations of one task (STS-B en -> es -> ja) differ only in language; real marketplaces also differ in what
counts as relevant. STS-B scores semantic similarity, PAWS-X labels adversarial paraphrases (high word overlap,
often *not* a paraphrase), so a marketplace from the other corpus stands in for a marketplace with another notion
of relevance. A marketplace is named ``<source>_<language>`` (``stsb_en``, ``pawsx_es``) and its folder is given
per source in ``source_paths``.

Each source is loaded by its own loader for its own marketplaces (so disjoint shares, splits and subsamples are
exactly those of a single-source run of that language set), then:

* pair ids get the source as a prefix (``stsb:17``), since both corpora number their pairs from 0 and an AD
  translation looked up by id must never find the other corpus's pair;
* each marketplace carries ``translations``: its own corpus in every language of the run, so that translating D_t
  into an older language (Attention Distillation) takes the same pair of the same corpus, whichever corpus the
  older marketplace came from.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from frkit.data.marketplace import Marketplace
from frkit.errors import FrkitInputError

log = logging.getLogger(__name__)

MIXABLE = ("pawsx", "stsb")  # parallel corpora whose marketplaces are named by language


def parse_marketplace(name: str) -> tuple[str, str]:
    """``"stsb_en"`` -> ``("stsb", "en")``; anything else raises naming the value and the expected form."""
    source, sep, language = name.partition("_")
    if not sep or source not in MIXABLE or not language:
        raise FrkitInputError(
            f"data_source 'mixed': marketplace {name!r} must be named <source>_<language> with source one of "
            f"{list(MIXABLE)}, e.g. stsb_en or pawsx_es"
        )
    return source, language


def _with_prefix(table: pd.DataFrame, source: str) -> pd.DataFrame:
    out = table.copy()
    out["id"] = source + ":" + out["id"].astype(str)
    return out


def _translation_corpora(load_source, source, path, languages, own, loaded, options) -> dict[str, pd.DataFrame]:
    """{language: the source's non-test pairs in it} for every language of the run the source has; a language it
    lacks (or cannot read) is left out with a warning, and AD then finds no translation into it."""
    corpora = {m.language: m.parallel_corpus for m in loaded}
    corpus_options = {**options, "parallel_pairs": "shared", "max_train": None, "max_validation": None}
    for lang in languages:
        if lang in own:
            continue
        try:
            (other,) = load_source(source, path, [lang], **corpus_options)
        except FrkitInputError as err:
            log.warning("data_source 'mixed': no %s corpus in %r to translate into (%s)", source, lang, err)
            continue
        corpora[lang] = other.parallel_corpus
    return {lang: _with_prefix(df, source) for lang, df in corpora.items() if df is not None}


def load_mixed(
    source_paths: dict[str, str | Path] | None,
    names: list[str],
    load_source: Callable[..., list[Marketplace]],
    **options,
) -> list[Marketplace]:
    """The marketplaces ``names`` (``<source>_<language>``) in order; ``load_source(source, path, languages,
    **options)`` is the single-source loader (``load_marketplaces``), called once per source for its own
    marketplaces and once more, with every language of the run and ``parallel_pairs: shared``, for the
    translation corpora."""
    parsed = [parse_marketplace(n) for n in names]
    sources = list(dict.fromkeys(s for s, _ in parsed))
    paths = source_paths or {}
    missing = [s for s in sources if not paths.get(s)]
    if missing:
        raise FrkitInputError(
            f"data_source 'mixed': key 'source_paths' has no folder for source(s) {missing} (marketplaces {names}); "
            "expected e.g. source_paths: {stsb: ../shared/data/stsb_multi_mt, pawsx: ../shared/data/pawsx/x-final}"
        )
    languages = list(dict.fromkeys(lang for _, lang in parsed))
    by_name: dict[str, Marketplace] = {}
    for source in sources:
        own = [lang for s, lang in parsed if s == source]
        source_options = {**options, "train_file": options.get("train_file", "auto") if source == "pawsx" else "auto"}
        loaded = load_source(source, paths[source], own, **source_options)
        translations = _translation_corpora(load_source, source, paths[source], languages, own, loaded, source_options)
        for m in loaded:
            name = f"{source}_{m.language}"
            by_name[name] = Marketplace(
                name=name,
                language=m.language,
                train=_with_prefix(m.train, source),
                validation=_with_prefix(m.validation, source),
                test=_with_prefix(m.test, source),
                group=m.group,
                parallel_corpus=translations.get(m.language),
                translations=translations,
            )
    return [by_name[n] for n in names]
