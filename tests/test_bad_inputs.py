"""Bad inputs and faults against ``frkit run`` (issue 14): each ends in a correct run or in exit 2 with a message
naming the file / row / key / value, no traceback, and no run folder left behind (an existing one left as it was).

``REFUSED``: inputs that must be refused (the 31 that already were, and the ones that passed silently or ended in a
traceback). ``test_accepted_*``: inputs that must give a correct run. ``test_damaged_checkpoint_*``: a damaged
checkpoint is named, set aside, and the run resumes from the last sound step to the same bytes as an unbroken run.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from conftest import make_pairs

from frkit.cli import main

FAST = dict(method="sequential", marketplaces=["en", "es"], epochs=1, max_steps_per_epoch=2, eval_batch_size=64)


@dataclass
class Project:
    """One test's inputs: its own copy of the tiny PAWS-X data, a params file, an output folder."""

    root: Path
    params: dict
    model_dir: Path

    @property
    def data(self) -> Path:
        return Path(self.params["data_path"])

    @property
    def out(self) -> Path:
        return Path(self.params["output_dir"])

    def write(self, text: str | bytes | None = None, **overrides) -> str:
        path = self.root / "params.yaml"
        if isinstance(text, bytes):
            path.write_bytes(text)
        else:
            path.write_text(text if text is not None else yaml.safe_dump({**self.params, **overrides}))
        return str(path)

    def tsv(self, lang: str, name: str) -> Path:
        return self.data / lang / name

    def edit_tsv(self, lang: str, name: str, row: int, column: int, value: str) -> None:
        """Set one cell of a PAWS-X file (row 0 = the header)."""
        path = self.tsv(lang, name)
        lines = [line.split("\t") for line in path.read_text().splitlines()]
        lines[row][column] = value
        path.write_text("\n".join("\t".join(cells) for cells in lines) + "\n")

    def tables(self, names=("en", "es"), rows=None, validation: dict | None = None, **overrides) -> str:
        """A ``table`` source: <name>_train.csv / <name>_test.csv per marketplace (language words of 'en' / 'es'),
        ``rows[(name, split)]`` replacing a file's data lines; returns the params file."""
        folder = self.root / "tables"
        folder.mkdir(exist_ok=True)
        specs = {}
        for i, name in enumerate(names):
            lang = ("en", "es", "ja")[i % 3]
            for split, n, offset in (("train", 60, 0), ("test", 24, 10_000)):
                lines = (rows or {}).get((name, split)) or [
                    f"{a},{t1},{t2},{y}" for a, t1, t2, y in make_pairs(lang, n, seed=7 + i, id_offset=offset)
                ]
                (folder / f"{name}_{split}.csv").write_text("id,text_a,text_b,label\n" + "\n".join(lines) + "\n")
            specs[name] = {"language": lang, "train": f"{name}_train.csv", "test": f"{name}_test.csv"}
            if validation and name in validation:
                (folder / f"{name}_validation.csv").write_text(
                    "id,text_a,text_b,label\n" + "\n".join(validation[name]) + "\n"
                )
                specs[name]["validation"] = f"{name}_validation.csv"
        return self.write(
            **{**dict(data_source="table", data_path=str(folder), tables=specs, marketplaces=list(names)), **overrides}
        )


@pytest.fixture
def project(tmp_path, tiny_params, tiny_pawsx, tiny_model_dir) -> Project:
    data = shutil.copytree(tiny_pawsx, tmp_path / "x-final")
    return Project(tmp_path, tiny_params(data_path=str(data), run_name="r", **FAST), tiny_model_dir)


def snapshot(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` with a hash of its bytes: equal snapshots = nothing written, nothing removed."""
    if not folder.exists():
        return {}
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def finished_run(p: Project, **overrides) -> None:
    """A finished run of ``p``'s params in its output folder (what a resume case then meets)."""
    assert main(["run", p.write(**overrides)]) == 0


# -- the cases: each returns the arguments after ``frkit run`` -----------------------------------------------------
@dataclass
class Case:
    id: str
    setup: Callable[[Project], list[str]]
    needles: tuple[str, ...]  # all of them in the message: the culprit and what was expected
    root_only_skip: bool = False


def _bf16_runs_here() -> bool:
    import torch

    from frkit.precision import bf16_support

    return bf16_support(torch.device("cpu"))[0]


def _set_cell(p: Project, lang: str, name: str, column: int, value: str, row: int = 3) -> list[str]:
    p.edit_tsv(lang, name, row, column, value)
    return [p.write()]


def _all_labels(p: Project, lang: str, name: str, value: str) -> list[str]:
    path = p.tsv(lang, name)
    lines = path.read_text().splitlines()
    path.write_text("\n".join([lines[0]] + [line.rsplit("\t", 1)[0] + f"\t{value}" for line in lines[1:]]) + "\n")
    return [p.write()]


def _stray_quote(p: Project) -> list[str]:
    rows = [f"{a},{t1},{t2},{y}" for a, t1, t2, y in make_pairs("en", 60, seed=1)]
    rows[10] = rows[10].replace(",", ',"', 1)  # a quote opening the text_a of data row 11, never closed on its line
    rows[13] = rows[13].replace(",", ',x"', 1)  # ... and a quote inside a later field that "closes" it
    return [p.tables(rows={("en", "train"): rows})]


def _leak(p: Project) -> list[str]:
    """A table source (PAWS-X drops such rows by design: its test sets are whole and their ids in no train split)."""
    rows = [f"{a},{t1},{t2},{y}" for a, t1, t2, y in make_pairs("en", 60, seed=1)]
    rows[7] = "10005," + rows[7].split(",", 1)[1]
    return [p.tables(rows={("en", "train"): rows})]


def _empty_id(p: Project) -> list[str]:
    rows = [f"{a},{t1},{t2},{y}" for a, t1, t2, y in make_pairs("en", 60, seed=1)]
    rows[4] = "," + rows[4].split(",", 1)[1]
    return [p.tables(rows={("en", "train"): rows})]


def _single_class(split: str):
    def setup(p: Project) -> list[str]:
        pairs = [f"{a},{t1},{t2},{y}" for a, t1, t2, y in make_pairs("en", 60, seed=1)]
        if split == "train":
            return [p.tables(rows={("en", "train"): [r.rsplit(",", 1)[0] + ",1" for r in pairs]})]
        validation = [f"{a},{t1},{t2},1" for a, t1, t2, _ in make_pairs("en", 12, seed=2, id_offset=50_000)]
        return [p.tables(validation={"en": validation})]

    return setup


def _table_rows(label_value: str):
    def setup(p: Project) -> list[str]:
        rows = [f"{a},{t1},{t2},{y}" for a, t1, t2, y in make_pairs("en", 60, seed=1)]
        rows[2] = rows[2].rsplit(",", 1)[0] + f",{label_value}"
        return [p.tables(rows={("en", "train"): rows})]

    return setup


def _truncated_model(p: Project) -> list[str]:
    model = shutil.copytree(p.model_dir, p.root / "model")
    weights = model / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    return [p.write(model_name_or_path=str(model))]


def _output_dir_under_a_file(p: Project) -> list[str]:
    (p.root / "a_file").write_text("not a folder")
    p.params["output_dir"] = str(p.root / "a_file" / "outputs")
    return [p.write()]


def _output_dir_read_only(p: Project) -> list[str]:
    p.out.mkdir(parents=True)
    p.out.chmod(0o500)
    return [p.write()]


def _resume_with(change: Callable[[Project], None], *args: str):
    def setup(p: Project) -> list[str]:
        finished_run(p)
        change(p)
        return [p.write(), *args]

    return setup


def _edit_data(p: Project) -> None:
    p.edit_tsv(
        "es", "test_2k.tsv", 2, 3, "1" if p.tsv("es", "test_2k.tsv").read_text().splitlines()[2].endswith("0") else "0"
    )


def _changed_model(p: Project) -> list[str]:
    model = shutil.copytree(p.model_dir, p.root / "model")
    p.params["model_name_or_path"] = str(model)
    finished_run(p)
    config = json.loads((model / "config.json").read_text())
    (model / "config.json").write_text(json.dumps({**config, "layer_norm_eps": 1e-6}))
    return [p.write()]


def _corrupt(name: str, text: str):
    def change(p: Project) -> None:
        (p.out / "r" / name).write_text(text)

    return change


REFUSED = [
    # params file and -p
    Case("params_file_missing", lambda p: [str(p.root / "nope.yaml")], ("nope.yaml", "does not exist")),
    Case("params_not_yaml", lambda p: [p.write("run_name: [a\nlr: 1\n")], ("params.yaml line", "not valid YAML")),
    Case("params_tab", lambda p: [p.write("run_name: a\n\tlr: 1\n")], ("params.yaml line 2", "tab")),
    Case("params_binary", lambda p: [p.write(b"\x00\xff\xfe\x00binary")], ("params.yaml", "not UTF-8")),
    Case(
        "params_key_twice",
        lambda p: [p.write(yaml.safe_dump(p.params) + "lr: 0.5\n")],
        ("'lr' is given twice", "lines"),
    ),
    Case("params_not_a_mapping", lambda p: [p.write("- a\n- b\n")], ("params.yaml", "expected a mapping")),
    Case("unknown_key", lambda p: [p.write(epoch=3)], ("unknown key 'epoch'", "did you mean 'epochs'")),
    Case("bad_value_type", lambda p: [p.write(epochs="many")], ("key 'epochs'", "'many'")),
    Case("value_out_of_range", lambda p: [p.write(lr=-1)], ("key 'lr'", "greater than 0")),
    Case("unknown_method", lambda p: [p.write(method="magic")], ("unknown method 'magic'", "expected one of")),
    Case("unknown_data_source", lambda p: [p.write(data_source="csv")], ("key 'data_source'", "'csv'")),
    Case(
        "validation_fraction_out_of_range",
        lambda p: [p.write(validation_fraction=1.5)],
        ("'validation_fraction'", "1.5"),
    ),
    Case("max_length_too_small", lambda p: [p.write(max_length=4)], ("'max_length'", "8")),
    Case("override_unknown_key", lambda p: [p.write(), "-p", "epoch", "3"], ("unknown key 'epoch'", "(-p)")),
    Case(
        "override_bad_value",
        lambda p: [p.write(), "-p", "epochs", "many"],
        ("key 'epochs' (given by the command line (-p))", "'many'"),
    ),
    Case(
        "override_not_yaml",
        lambda p: [p.write(), "-p", "marketplaces", "[en,es"],
        ("-p marketplaces '[en,es'", "not a valid YAML value"),
    ),
    Case("override_key_twice", lambda p: [p.write(), "-p", "lr", "1", "-p", "lr", "2"], ("-p lr is given twice",)),
    # marketplaces
    Case(
        "marketplace_repeated", lambda p: [p.write(marketplaces=["en", "en"])], ("'marketplaces'", "repeated: ['en']")
    ),
    Case("marketplaces_empty", lambda p: [p.write(marketplaces=[])], ("'marketplaces'",)),
    Case("marketplace_unknown_language", lambda p: [p.write(marketplaces=["en", "xx"])], ("'xx'", "PAWS-X language")),
    Case(
        "marketplace_name_a_moduledict_attribute",
        lambda p: [p.tables(names=("en", "train"))],
        ("'train'", "ModuleDict"),
    ),
    Case("marketplace_name_with_a_dot", lambda p: [p.tables(names=("en", "es.v2"))], ("'es.v2'", "dots")),
    # data: folders, files, columns, values
    Case(
        "data_folder_missing", lambda p: [p.write(data_path=str(p.root / "nowhere"))], ("nowhere", "folder not found")
    ),
    Case(
        "language_folder_missing",
        lambda p: (shutil.rmtree(p.data / "es"), [p.write()])[1],
        ("'es'", "folder not found"),
    ),
    Case(
        "test_file_missing",
        lambda p: ((p.tsv("es", "test_2k.tsv")).unlink(), [p.write()])[1],
        ("test_2k.tsv", "not found"),
    ),
    Case(
        "column_missing",
        lambda p: _set_cell(p, "en", "dev_2k.tsv", 3, "lbl", row=0),
        ("dev_2k.tsv", "missing column(s) ['label']"),
    ),
    Case(
        "label_not_binary", lambda p: _set_cell(p, "en", "dev_2k.tsv", 3, "2"), ("dev_2k.tsv", "'label'", "'2'", "0/1")
    ),
    Case("text_empty", lambda p: _set_cell(p, "es", "test_2k.tsv", 1, " "), ("test_2k.tsv", "'sentence1'", "empty")),
    Case(
        "id_duplicated",
        lambda p: _set_cell(p, "es", "test_2k.tsv", 0, "10000"),
        ("'es' split 'test'", "duplicated pair id", "'10000'"),
    ),
    Case("train_test_leak", _leak, ("'en'", "also in test", "'10005'")),
    Case(
        "test_single_class",
        lambda p: _all_labels(p, "es", "test_2k.tsv", "1"),
        ("'es'", "test set has a single class [1]"),
    ),
    Case("validation_single_class", _single_class("validation"), ("'en'", "validation set has a single class [1]")),
    Case("train_single_class", _single_class("train"), ("'en'", "set has a single class [1]")),
    Case(
        "csv_stray_quote_merging_rows",
        _stray_quote,
        ("en_train.csv", "data row 11 runs over lines 12-15", "stray quote"),
    ),
    Case("csv_empty_id", _empty_id, ("en_train.csv", "column 'id'", "empty id", "data row 5")),
    Case("csv_label_unknown", _table_rows("maybe"), ("en_train.csv", "'maybe'", "0/1 or E/S/C/I")),
    Case(
        "table_spec_key_missing",
        lambda p: [
            p.write(
                data_source="table",
                data_path=str(p.root),
                tables={"en": {"language": "en", "train": "t.csv"}, "es": {}},
                marketplaces=["en", "es"],
            )
        ],
        ("tables['en']", "missing key(s) ['test']"),
    ),
    Case(
        "table_extension_unsupported",
        lambda p: (
            (p.root / "t.xlsx").write_text("x"),
            [
                p.write(
                    data_source="table",
                    data_path=str(p.root),
                    marketplaces=["en"],
                    tables={"en": {"language": "en", "train": "t.xlsx", "test": "t.xlsx"}},
                )
            ],
        )[1],
        ("t.xlsx", "unsupported extension '.xlsx'"),
    ),
    Case(
        "columns_mapping_unknown_key",
        lambda p: [p.tables(columns={"id": "id", "txt": "text_a", "text_b": "text_b", "label": "label"})],
        ("columns mapping", "unknown key(s) ['txt']"),
    ),
    Case("train_file_for_table_source", lambda p: [p.tables(train_file="x.csv")], ("train_file='x.csv'", "'table'")),
    # model
    Case(
        "model_folder_missing",
        lambda p: [p.write(model_name_or_path=str(p.root / "no_model"))],
        ("no_model", "does not exist"),
    ),
    Case(
        "model_folder_empty",
        lambda p: ((p.root / "empty_model").mkdir(), [p.write(model_name_or_path=str(p.root / "empty_model"))])[1],
        ("empty_model", "lacks config.json", "tokenizer files", "holds nothing"),
    ),
    Case("model_weights_truncated", _truncated_model, ("model", "weights could not be loaded")),
    Case(
        "offline_model_mistyped",
        lambda p: [p.write(model_name_or_path="offline:multilingual-e5-smal")],
        ("unknown offline model 'offline:multilingual-e5-smal'", "offline:multilingual-e5-small"),
    ),
    # the machine
    Case("output_dir_under_a_file", _output_dir_under_a_file, ("output_dir", "a_file is a file")),
    Case("output_dir_not_writable", _output_dir_read_only, ("output_dir", "not writable"), root_only_skip=True),
    Case("bf16_forced_where_it_is_slow", lambda p: [p.write(precision="bf16")], ("key 'precision'", "bf16")),
    # an existing run folder
    Case(
        "resume_changed_params",
        _resume_with(lambda p: None, "-p", "lr", "0.5"),
        ("other parameters", "lr: 0.001 -> 0.5"),
    ),
    Case("resume_changed_data", _resume_with(_edit_data), ("other data", "marketplace 'es' split 'test'")),
    Case("resume_changed_model", _changed_model, ("another model", "model files changed: ['config.json']")),
    Case(
        "resume_progress_corrupted",
        _resume_with(_corrupt("progress.json", '{"steps": [')),
        ("progress.json", "not valid JSON"),
    ),
    Case(
        "resume_progress_wrong_shape",
        _resume_with(_corrupt("progress.json", '{"steps": 3}')),
        ("progress.json", "expected"),
    ),
    Case(
        "resume_params_corrupted",
        _resume_with(_corrupt("params.yaml", "lr: [1\n")),
        ("params.yaml", "not readable YAML"),
    ),
    Case(
        "resume_fingerprint_corrupted",
        _resume_with(_corrupt("fingerprint.json", "{")),
        ("fingerprint.json", "not valid JSON"),
    ),
]


@pytest.mark.parametrize("case", REFUSED, ids=[c.id for c in REFUSED])
def test_refused(case: Case, project: Project, capsys):
    if case.root_only_skip and os.geteuid() == 0:
        pytest.skip("root writes into read-only folders")
    if case.id == "bf16_forced_where_it_is_slow" and _bf16_runs_here():
        pytest.skip("this CPU runs bf16 fast")
    argv = case.setup(project)
    capsys.readouterr()
    before = snapshot(project.out)
    assert main(["run", *argv]) == 2
    err = capsys.readouterr().err
    assert "frkit: " in err and "Traceback" not in err, err
    message = err[err.index("frkit: ") :]  # after any progress bar of the model loading
    for needle in case.needles:
        assert needle in message, f"{needle!r} not in: {message}"
    assert snapshot(project.out) == before  # no run folder made, an existing one untouched


def test_debug_shows_the_traceback(project):
    from frkit.errors import FrkitInputError

    with pytest.raises(FrkitInputError, match="unknown key 'epoch'"):
        main(["run", project.write(epoch=3), "--debug"])


def test_a_real_process_exits_2_without_a_traceback(project):
    (project.root / "empty_model").mkdir()
    pfile = project.write(model_name_or_path=str(project.root / "empty_model"))
    out = subprocess.run(
        [sys.executable, "-m", "frkit", "run", pfile, "-p", "marketplaces", "[en,es"],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[1],
        timeout=300,
    )
    assert out.returncode == 2 and "frkit: -p marketplaces '[en,es'" in out.stderr and "Traceback" not in out.stderr
    out = subprocess.run(
        [sys.executable, "-m", "frkit", "run", pfile],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[1],
        timeout=300,
    )
    assert out.returncode == 2 and "lacks config.json" in out.stderr and "Traceback" not in out.stderr
    assert not project.out.exists()


# -- inputs that must give a correct run ---------------------------------------------------------------------------
def test_accepted_csv_labels_written_as_floats(project):
    rows = {
        (name, split): [f"{a},{t1},{t2},{float(y)}" for a, t1, t2, y in make_pairs(lang, n, seed=3, id_offset=off)]
        for name, lang in (("en", "en"), ("es", "es"))
        for split, n, off in (("train", 60, 0), ("test", 24, 10_000))
    }
    assert main(["run", project.tables(rows=rows)]) == 0
    assert json.loads((project.out / "r" / "metrics.json").read_text())["average_auc"] > 0


def test_accepted_a_corrected_model_path_after_a_refused_one(project):
    assert main(["run", project.write(model_name_or_path=str(project.root / "typo"))]) == 2
    assert not project.out.exists()  # so the corrected run is not refused as "changed parameters"
    assert main(["run", project.write()]) == 0


def test_accepted_marketplaces_named_like_modules_train_only_their_adapters(project, tiny_model_dir):
    """``query`` / ``self``: adapter parameters are found by exact adapter key, never the base's query/self weights."""
    from peft import get_peft_model

    from frkit.models.encoder import load_encoder
    from frkit.models.peft_adapters import lora_config

    assert main(["run", project.tables(names=("query", "self"), method="lora")]) == 0
    peft_model = get_peft_model(load_encoder(tiny_model_dir), lora_config(2, 4, 0.0, ["query", "key", "value"]))
    lora = sum(p.numel() for n, p in peft_model.named_parameters() if "lora_" in n)
    head = 32 * 2 + 2
    metrics = json.loads((project.out / "r" / "metrics.json").read_text())
    assert metrics["trainable_params"] == {"query": lora + head, "self": lora + head}


def test_accepted_environment_records_every_session(project):
    finished_run(project)
    assert main(["run", project.write()]) == 0  # a second process on the finished run
    env = json.loads((project.out / "r" / "environment.json").read_text())
    assert len(env["sessions"]) == 2
    assert all({"started", "git_revision", "versions"} <= set(s) for s in env["sessions"])
    assert env["sessions"][1]["steps_done_before"] == 2 and env["started"] == env["sessions"][0]["started"]


def test_accepted_outputs_are_strict_json_written_atomically(project, monkeypatch):
    """One marketplace: backward/forward transfer are undefined, and land as null (not NaN) in metrics.json;
    every file of the run folder goes through the atomic helper, auc_matrix.csv included."""
    import frkit.atomic as atomic

    written = []
    real = atomic.write_with

    def spy(path, writer):
        written.append(Path(path).name)
        return real(path, writer)

    monkeypatch.setattr(atomic, "write_with", spy)
    assert main(["run", project.write(marketplaces=["en"])]) == 0

    def refuse(name):
        raise AssertionError(f"{name} in strict JSON")

    run_dir = project.out / "r"
    for name in ("metrics.json", "progress.json", "environment.json", "fingerprint.json"):
        json.loads((run_dir / name).read_text(), parse_constant=refuse)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["backward_transfer"] is None and metrics["forward_transfer"] is None
    # but the trackers' folders (report_to): TensorBoard's event files and the like are the libraries' own
    # append-only logs, whose readers take a record cut short
    on_disk = {
        p.name
        for p in run_dir.rglob("*")
        if p.is_file() and not {"tensorboard", "mlflow", "wandb"} & set(p.relative_to(run_dir).parts)
    }
    assert on_disk <= set(written), sorted(on_disk - set(written))
    assert "auc_matrix.csv" in written


def test_a_nan_validation_auc_stops_training_instead_of_restoring_untrained_weights():
    import torch

    from frkit.train import TrainSettings, fit

    model = torch.nn.Linear(2, 2)
    batches = [{"x": torch.randn(4, 2), "y": torch.tensor([0, 1, 0, 1])}] * 3

    def loss(m, b):
        return torch.nn.functional.cross_entropy(m(b["x"]), b["y"])

    with pytest.raises(RuntimeError, match="validation ROC-AUC is nan"):
        fit(
            model,
            list(model.parameters()),
            batches,
            loss,
            lambda: math.nan,
            TrainSettings(lr=0.1, epochs=2, show_progress=False, precision="fp32"),
        )


# -- faults: damaged checkpoints ------------------------------------------------------------------------------------
class Stop(KeyboardInterrupt):
    pass


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_model_dir, tiny_pawsx):
    """A finished run of en, es, ja (the reference) and one stopped after es (two checkpoints on disk)."""
    from frkit.config import make_config
    from frkit.records import RunFolder
    from frkit.runner import run

    out = tmp_path_factory.mktemp("damage")
    params = dict(
        output_dir=str(out),
        seed=0,
        data_source="pawsx",
        data_path=str(tiny_pawsx),
        model_name_or_path=str(tiny_model_dir),
        trim_vocab=False,
        max_length=32,
        batch_size=8,
        lr=1e-3,
        patience=1,
        **{**FAST, "marketplaces": ["en", "es", "ja"]},
    )
    run(make_config({**params, "run_name": "reference"}), show_progress=False)
    real = RunFolder.save_step

    def save_then_stop(self, step, *args, **kwargs):
        real(self, step, *args, **kwargs)
        if step == 1:
            raise Stop()

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(RunFolder, "save_step", save_then_stop)
        with pytest.raises(Stop):
            run(make_config({**params, "run_name": "stopped"}), show_progress=False)
    return out, params


def _zeros(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2 :] = bytes(len(data) - len(data) // 2)  # same size, the second half zeros
    path.write_bytes(bytes(data))


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:100])


DAMAGE = {  # what is done to the stopped run's checkpoints -> the steps whose checkpoint must be set aside
    "zeros_in_the_weights": (lambda ck: _zeros(ck["es"] / "model.safetensors"), ["es"]),
    "weights_truncated": (lambda ck: _truncate(ck["es"] / "model.safetensors"), ["es"]),
    "method_json_deleted": (lambda ck: (ck["es"] / "method.json").unlink(), ["es"]),
    "both_checkpoints_damaged": (
        lambda ck: (_zeros(ck["es"] / "model.safetensors"), (ck["en"] / "method.json").write_text("{")),
        ["es", "en"],
    ),
    "old_checkpoint_without_checksums_truncated": (
        lambda ck: ((ck["es"] / "checksums.json").unlink(), _truncate(ck["es"] / "model.safetensors")),
        ["es"],
    ),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_damaged_checkpoint_is_set_aside_and_the_run_ends_as_an_unbroken_one(damage, runs, tmp_path, caplog):
    out, params = runs
    run_dir = shutil.copytree(out / "stopped", tmp_path / "outputs" / "r")
    checkpoints = {"en": run_dir / "checkpoints" / "step_0_en", "es": run_dir / "checkpoints" / "step_1_es"}
    do, expected_aside = DAMAGE[damage]
    do(checkpoints)
    pfile = tmp_path / "p.yaml"
    pfile.write_text(yaml.safe_dump({**params, "output_dir": str(tmp_path / "outputs"), "run_name": "r"}))
    with caplog.at_level("WARNING"):
        assert main(["run", str(pfile)]) == 0
    assert (run_dir / "metrics.json").read_bytes() == (out / "reference" / "metrics.json").read_bytes()
    aside = sorted((run_dir / "damaged").iterdir())
    assert sorted(p.name.split("-")[0] for p in aside if p.is_dir()) == sorted(
        f"step_{0 if m == 'en' else 1}_{m}" for m in expected_aside
    )
    warned = " ".join(r.getMessage() for r in caplog.records if r.levelname == "WARNING")
    assert "step_1_es" in warned and "damaged" in warned and "set aside" in warned
    if len(expected_aside) == 2:
        assert "starting again from the first marketplace" in warned
