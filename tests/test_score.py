"""frkit score: a pairs file scored with an exported folder or a run's marketplace (issue 32, item 2)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from conftest import tiny_run_params

from frkit.cli import main
from frkit.config import make_config
from frkit.errors import FrkitInputError
from frkit.export import export, hf_logits
from frkit.runner import run
from frkit.score import read_pairs, score_file


@pytest.fixture(scope="module")
def exported(tmp_path_factory, tiny_model_dir, tiny_pawsx):
    """One tiny LoRA run (fp32) and its es model exported: shared by the tests of this file."""
    root = tmp_path_factory.mktemp("score")
    params = tiny_run_params(
        root / "outputs",
        tiny_model_dir,
        tiny_pawsx,
        run_name="lora",
        marketplaces=["en", "es"],
        epochs=1,
        method="lora",
        precision="fp32",
    )
    result = run(make_config(params), show_progress=False)
    export(result.run_dir, "es", root / "model")
    return result.run_dir, root / "model"


def pairs(n: int = 21) -> pd.DataFrame:
    """Pairs in the user's own column names, of varied lengths (length-sorted batches reorder them)."""
    rng = np.random.default_rng(0)
    words = [f"es{i}" for i in range(40)]
    rows = []
    for i in range(n):
        a = " ".join(rng.choice(words, 1 + i % 7))
        b = " ".join(rng.choice(words, 2 + (3 * i) % 11))
        rows.append({"qid": f"q{i}", "query": a, "title": b, "rel": i % 2})
    return pd.DataFrame(rows)


COLUMNS = ["id=qid", "text_a=query", "text_b=title", "label=rel"]


def expected_margins(model_dir, frame):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
    table = frame.rename(columns={"query": "text_a", "title": "text_b"})
    logits = hf_logits(model, AutoTokenizer.from_pretrained(model_dir), table, batch_size=1)  # one by one: no padding
    return logits[:, 1] - logits[:, 0]


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".parquet", ".jsonl"])
def test_scores_every_format_in_file_order(tmp_path, exported, suffix):
    _, model_dir = exported
    frame = pairs()
    file = tmp_path / f"pairs{suffix}"
    if suffix == ".csv":
        frame.to_csv(file, index=False)
    elif suffix == ".tsv":
        frame.to_csv(file, index=False, sep="\t")
    elif suffix == ".parquet":
        frame.to_parquet(file, index=False)
    else:
        frame.to_json(file, orient="records", lines=True)
    out = tmp_path / "scores.csv"
    assert (
        main(
            [
                "score",
                str(model_dir),
                str(file),
                "-o",
                str(out),
                "--columns",
                *COLUMNS,
                "--batch-size",
                "4",
                "--precision",
                "fp32",
            ]
        )
        == 0
    )
    got = pd.read_csv(out, dtype={"id": str})
    assert list(got.columns) == ["id", "score", "label"]
    assert got["id"].tolist() == frame["qid"].tolist()
    assert got["label"].tolist() == frame["rel"].tolist()
    np.testing.assert_allclose(got["score"], expected_margins(model_dir, frame), atol=1e-5)


def test_a_run_and_its_export_score_alike_and_no_label_column_without_labels(tmp_path, exported):
    run_dir, model_dir = exported
    frame = pairs().drop(columns=["rel"]).rename(columns={"qid": "id", "query": "text_a", "title": "text_b"})
    file = tmp_path / "pairs.csv"
    frame.to_csv(file, index=False)
    from_run = score_file(run_dir, file, tmp_path / "a.csv", marketplace="es", precision="fp32", show_progress=False)
    from_export = score_file(model_dir, file, tmp_path / "b.csv", precision="fp32", show_progress=False)
    assert list(from_export.columns) == ["id", "score"]
    np.testing.assert_allclose(from_run["score"], from_export["score"], atol=1e-5)


def test_bf16_scores_stay_close_where_the_machine_runs_bf16(tmp_path, exported):
    import torch

    from frkit.precision import bf16_support

    if not bf16_support(torch.device("cpu"))[0]:
        pytest.skip("this CPU has no fast bf16 (AVX512-BF16 / AMX)")
    _, model_dir = exported
    file = tmp_path / "pairs.csv"
    pairs().to_csv(file, index=False)
    fp32 = score_file(model_dir, file, tmp_path / "a.csv", columns=COLUMNS, precision="fp32", show_progress=False)
    bf16 = score_file(model_dir, file, tmp_path / "b.csv", columns=COLUMNS, precision="bf16", show_progress=False)
    assert np.abs(fp32["score"] - bf16["score"]).max() < 0.1
    assert not np.array_equal(fp32["score"], bf16["score"])  # bf16 really ran


def write_csv(path, rows):
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


@pytest.mark.parametrize(
    "rows, columns, match",
    [
        ([{"qid": "1", "query": "es1", "rel": 1}], COLUMNS, r"missing column\(s\) \['title'\]"),
        (
            [
                {"qid": "1", "query": "es1", "title": "es2", "rel": 1},
                {"qid": "2", "query": "es1", "title": "  ", "rel": 0},
            ],
            COLUMNS,
            r"data row 2 .*column 'title': empty",
        ),
        (
            [
                {"qid": "1", "query": "es1", "title": "es2", "rel": 1},
                {"qid": "", "query": "es1", "title": "es3", "rel": 0},
            ],
            COLUMNS,
            r"data row 2 .*column 'qid': empty or missing id",
        ),
        (
            [
                {"qid": "1", "query": "es1", "title": "es2", "rel": 1},
                {"qid": "2", "query": "es1", "title": "es3", "rel": 7},
            ],
            COLUMNS,
            r"column 'rel'.*first at data row 2",
        ),
        ([{"qid": "1", "query": "es1", "title": "es2"}], COLUMNS, r"missing column\(s\) \['rel'\]"),
    ],
)
def test_bad_input_is_refused_before_scoring_naming_file_row_and_column(
    tmp_path, exported, monkeypatch, rows, columns, match
):
    _, model_dir = exported
    file = write_csv(tmp_path / "bad.csv", rows)
    import frkit.score as score

    monkeypatch.setattr(score, "margins", lambda *a, **k: pytest.fail("scored bad input"))
    out = tmp_path / "scores.csv"
    with pytest.raises(FrkitInputError, match=match) as err:
        score_file(model_dir, file, out, columns=columns, show_progress=False)
    assert str(file) in str(err.value)
    assert not out.exists()


def test_unreadable_or_missing_files_are_named(tmp_path, exported, capsys):
    _, model_dir = exported
    broken = tmp_path / "pairs.parquet"
    broken.write_bytes(b"not parquet at all")
    assert main(["score", str(model_dir), str(broken), "-o", str(tmp_path / "s.csv")]) == 2
    err = capsys.readouterr().err
    assert str(broken) in err and err.count("\n") == 1
    assert main(["score", str(model_dir), str(tmp_path / "nowhere.csv"), "-o", str(tmp_path / "s.csv")]) == 2
    assert "nowhere.csv" in capsys.readouterr().err
    with pytest.raises(FrkitInputError, match="--marketplace"):
        score_file(exported[0], broken, tmp_path / "s.csv")


def test_an_existing_output_is_replaced_only_when_complete(tmp_path, exported, monkeypatch):
    _, model_dir = exported
    file = tmp_path / "pairs.csv"
    pairs().to_csv(file, index=False)
    out = tmp_path / "scores.csv"
    out.write_text("old\n")
    import frkit.score as score

    def boom(*a, **k):
        raise RuntimeError("killed mid-way")

    monkeypatch.setattr(score, "margins", boom)
    with pytest.raises(RuntimeError):
        score_file(model_dir, file, out, columns=COLUMNS, show_progress=False)
    assert out.read_text() == "old\n"
    monkeypatch.undo()
    score_file(model_dir, file, out, columns=COLUMNS, show_progress=False, precision="fp32")
    assert pd.read_csv(out).shape == (21, 3)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_read_pairs_keeps_ids_as_text(tmp_path):
    file = tmp_path / "p.jsonl"
    file.write_text("\n".join(json.dumps({"id": i, "text_a": "a", "text_b": "b"}) for i in (7, 8)) + "\n")
    table = read_pairs(file)
    assert table["id"].tolist() == ["7", "8"] and "label" not in table
