"""Issue 30: the protocols' params files (params/shift.yaml, the chosen one, and params/mixed.yaml, a probe candidate)
work unchanged for any STS-B / PAWS-X languages: only ``marketplaces`` (and, here, where the tiny data and model
are) change. Languages other than en/es/ja are built in
the test and run through the runner users call, for a full-model method and for Attention Distillation, whose
translations into the older languages must come from the new marketplace's own corpus."""

import json
import random
from pathlib import Path

import numpy as np
import pytest
from conftest import WORDS

from frkit.config import make_config, read_params
from frkit.runner import load_configured_marketplaces, run

ROOT = Path(__file__).resolve().parents[1]
LANGUAGES = ("de", "fr", "zh")  # none of the repository's own data languages


def pairs(n: int, seed: int, offset: int = 0):
    """Learnable pairs (label 1: the same words reordered) on the tiny tokenizer's words."""
    rng, words = random.Random(seed), WORDS["en"]
    for i in range(n):
        a = rng.sample(words, 5)
        label = i % 2
        b = rng.sample(a, 5) if label else rng.sample(words, 4) + [a[0]]
        yield str(offset + i), " ".join(a), " ".join(b), label


def write_sources(root: Path, languages=LANGUAGES) -> dict[str, str]:
    stsb, pawsx = root / "stsb", root / "pawsx" / "x-final"
    stsb.mkdir(parents=True)
    for lang in languages:  # the same pairs in every language: both corpora are parallel
        for split, n in (("train", 160), ("dev", 40), ("test", 40)):
            rows = pairs(n, seed=len(split))
            text = "".join(f"{a},{b},{4.0 if y else 1.0}\n" for _, a, b, y in rows)
            (stsb / f"stsb-{lang}-{split}.csv").write_text(text)
        (pawsx / lang).mkdir(parents=True)
        for name, n, offset in (("dev_2k.tsv", 160, 0), ("test_2k.tsv", 40, 5000)):
            lines = ["id\tsentence1\tsentence2\tlabel"] + ["\t".join(map(str, r)) for r in pairs(n, n, offset)]
            (pawsx / lang / name).write_text("\n".join(lines) + "\n")
    return {"stsb": str(stsb), "pawsx": str(pawsx)}


PROTOCOLS = {  # the params file -> its marketplaces in de / fr / zh (the same sources in the same places)
    "shift.yaml": ["stsb_de", "stsb_zh", "pawsx_fr"],
    "mixed.yaml": ["stsb_de", "pawsx_fr", "stsb_zh"],
}


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("method", ["sequential", "attention_distillation"])
def test_mixed_protocol_runs_unchanged_on_other_languages(protocol, method, tmp_path, tiny_model_dir):
    params = read_params(ROOT / "params" / protocol)
    names = PROTOCOLS[protocol]
    assert [n.split("_")[0] for n in params["marketplaces"]] == [n.split("_")[0] for n in names]
    params.update(
        marketplaces=names,
        source_paths=write_sources(tmp_path / "data"),
        model_name_or_path=str(tiny_model_dir),  # tiny: model, lengths, sizes and rates; the protocol's keys stay
        trim_vocab=False,
        max_length=32,
        max_train=None,
        max_validation=None,
        epochs=2,
        batch_size=8,
        lr=1e-3,
        adapter_lr=1e-2,
        fusion_lr=1e-2,
        output_dir=str(tmp_path / "outputs"),
        run_name=method,
        method=method,
        seed=0,
    )
    result = run(make_config(params), show_progress=False)
    R = result.auc_matrix
    assert R.shape == (3, 3) and np.isfinite(R).all()
    metrics = json.loads((result.run_dir / "metrics.json").read_text())
    assert metrics["marketplaces"] == names
    assert not np.allclose(R[0], R[2])  # training moved the scores (learning itself is shown on the real data)
    if method == "attention_distillation":
        # every translation of D_t into each older language was found, in D_t's own corpus (none would be in the
        # older STS-B marketplaces' corpus: pawsx_fr's ids are PAWS-X's)
        steps = json.loads((result.run_dir / "progress.json").read_text())["steps"]
        sizes = [len(m.train) for m in load_configured_marketplaces(make_config(params))]
        wanted = [round(0.3 * n) for n in sizes]  # translate_fraction of D_t, into every older language
        older = [[n.split("_")[1] for n in names[:t]] for t in range(1, 3)]
        assert [s["translated_rows"] for s in steps[1:]] == [
            {lang: wanted[t] for lang in older[t - 1]} for t in range(1, 3)
        ]
