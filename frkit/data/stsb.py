"""STS Benchmark, multilingual (stsb_multi_mt) in the release's layout: ``<path>/stsb-<lang>-{train,dev,test}.csv``.

Each file is comma-separated with no header: ``sentence1,sentence2,score``, score in [0, 5]. A pair is
relevant (label 1) when ``score >= threshold`` (default 3.0, "roughly equivalent" or better). The languages
are parallel (row i of every language's file is the same pair), so the pair id is ``<file part>-<row>``
(``train-0``, ``dev-0``, ``test-0``) in every language; the release's dev split is the validation split.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pandas as pd

from frkit.data.marketplace import COLUMNS
from frkit.data.validate import require_dir, require_file
from frkit.errors import FrkitInputError

SPLIT_FILES = {"train": "train", "validation": "dev", "test": "test"}  # frkit split -> release file part
SCORE_RANGE = (0.0, 5.0)


def stsb_file(root: Path, lang: str, split: str) -> Path:
    return root / f"stsb-{lang}-{SPLIT_FILES[split]}.csv"


def available_languages(root: Path) -> list[str]:
    """Languages with a train file in ``root`` (for the message when one is missing)."""
    return sorted(p.name[len("stsb-") : -len("-train.csv")] for p in root.glob("stsb-*-train.csv"))


def read_stsb_file(file: Path, split: str, threshold: float) -> pd.DataFrame:
    """One release file as pairs (id, text_a, text_b, label), every row checked; errors name file, row and value."""
    file = require_file(file, f"STS-B {split}")
    rows = []
    try:
        with file.open(encoding="utf-8", newline="") as fh:
            reader, last_line = csv.reader(fh, strict=True), 0
            for line_no, fields in enumerate(reader, start=1):
                if any("\n" in f or "\r" in f for f in fields):  # a stray quote merged the lines that follow
                    raise FrkitInputError(
                        f"STS-B file {file} row {line_no} runs over lines {last_line + 1}-{reader.line_num}: a field "
                        'opened with a quote (") takes in the line breaks after it (a stray quote?); expected one '
                        "row per line"
                    )
                last_line = reader.line_num
                rows.append(_pair(fields, file, line_no, split, threshold))
    except (csv.Error, UnicodeDecodeError) as err:
        raise FrkitInputError(
            f"STS-B file {file} could not be read as UTF-8 CSV near row {len(rows) + 1}: {err}"
        ) from None
    if not rows:
        raise FrkitInputError(f"STS-B file {file} holds no rows")
    return pd.DataFrame(rows, columns=list(COLUMNS))


def _pair(fields: list[str], file: Path, line_no: int, split: str, threshold: float) -> tuple:
    where = f"STS-B file {file} row {line_no}"
    if len(fields) != 3:
        raise FrkitInputError(
            f"{where}: {len(fields)} field(s) {fields[:4]!r}; expected 3 (sentence1,sentence2,score), no header"
        )
    a, b, raw = fields
    for name, text in (("sentence1", a), ("sentence2", b)):
        if not text.strip():
            raise FrkitInputError(f"{where}: {name} is empty; expected non-empty text")
    try:
        score = float(raw)
    except ValueError:
        raise FrkitInputError(
            f"{where}: score {raw!r} is not a number; expected a similarity score in [0, 5]"
        ) from None
    if not (math.isfinite(score) and SCORE_RANGE[0] <= score <= SCORE_RANGE[1]):
        raise FrkitInputError(f"{where}: score {raw!r} is outside [0, 5]")
    return f"{SPLIT_FILES[split]}-{line_no - 1}", a, b, int(score >= threshold)  # same id in every language


def load_stsb_raw(path: str | Path, langs: list[str], threshold: float) -> dict[str, dict[str, pd.DataFrame]]:
    """{lang: {split: pairs}} for every requested language; parallel files must have equal row counts."""
    root = require_dir(Path(path), "STS-B multilingual (stsb_multi_mt data)")
    known = available_languages(root)
    missing = [lang for lang in langs if lang not in known]
    if missing:
        raise FrkitInputError(
            f"STS-B: no files for language(s) {missing} in {root} (expected stsb-<lang>-train.csv, "
            f"-dev.csv, -test.csv); languages found there: {known}"
        )
    raw = {
        lang: {split: read_stsb_file(stsb_file(root, lang, split), split, threshold) for split in SPLIT_FILES}
        for lang in langs
    }
    for split in SPLIT_FILES:
        counts = {lang: len(raw[lang][split]) for lang in langs}
        if len(set(counts.values())) > 1:
            files = {lang: stsb_file(root, lang, split).name for lang in langs}
            raise FrkitInputError(
                f"STS-B {split}: the parallel files have different row counts {counts} ({files}); "
                "row i must be the same pair in every language"
            )
    return raw
