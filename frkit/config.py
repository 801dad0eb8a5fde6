"""One typed, flat run configuration.

Flat on purpose: papermill passes parameters as flat names (``-p beta 1e-4``) and ``-f params/x.yaml``
loads a flat mapping, so the YAML files, the notebooks' ``parameters`` cell and :class:`RunConfig`
share one set of keys. Method-specific keys (``beta``, ``lora_rank``...) are declared by the method
files in option groups (``frkit/methods/options.py``) and merged in here, so adding a method never
edits this file.
"""

from __future__ import annotations

import difflib
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model, field_validator

from frkit.errors import FrkitInputError
from frkit.paths import resolve


def marketplace_name_problem(name: str) -> str | None:
    """Why ``name`` cannot name a marketplace, or None. A marketplace name keys heads and adapters (torch
    ModuleDicts, peft adapters), names checkpoint folders and files: no dots, slashes or spaces, and not a
    name a ModuleDict already has as an attribute (``train``, ``keys``, ``to``...), which torch refuses."""
    from torch import nn  # late: reading params stays light

    if not name or name != name.strip() or any(c in name for c in './\\ \t\n:*?"<>|'):
        return 'may not be empty or hold dots, slashes, spaces or any of :*?"<>|'
    if hasattr(nn.ModuleDict(), name) or hasattr(nn.ParameterDict(), name):
        return "is an attribute name of torch's ModuleDict, where heads and adapters are kept; rename it"
    return None


class BaseRunConfig(BaseModel):
    """Keys every run has. Method keys are added by :func:`config_class`."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    # -- run ---------------------------------------------------------------------------------
    run_name: str = "demo"
    output_dir: str = "outputs"
    seed: int = 42
    method: str = "lora"
    resume: bool = True  # continue an interrupted run folder from its last finished marketplace
    # where the run's curves, AUC rows, metrics and params are logged (frkit/tracking/): TensorBoard event files in
    # the run folder, an MLflow store there (the "tracking" extra), W&B (needs `wandb login`), or nowhere
    report_to: Literal["none", "tensorboard", "mlflow", "wandb"] = "tensorboard"
    # -- data: the marketplaces, in training order --------------------------------------------
    data_source: Literal["pawsx", "stsb", "esci", "table", "hub", "mixed"] = "pawsx"
    data_path: str | None = "../shared/data/pawsx/x-final"  # relative paths: from the project root (frkit/paths.py)
    marketplaces: list[str] = Field(default_factory=lambda: ["en", "es", "ja"], min_length=1)
    # mixed: marketplaces named <source>_<language> (stsb_en, pawsx_es) from several corpora, one folder per source
    source_paths: dict[str, str] | None = None
    train_file: str = "auto"  # pawsx: which file trains ("auto": translated_train.tsv where present, else dev_2k.tsv)
    # pawsx / stsb are translations of one set of pairs: "disjoint" gives each marketplace its own seeded share of
    # the pair ids for training and validation (real marketplaces do not share queries), "shared" gives every
    # marketplace all of them; test sets stay whole either way (their ids are in no train split)
    parallel_pairs: Literal["disjoint", "shared"] = "disjoint"
    stsb_threshold: float = Field(3.0, ge=0, le=5)  # stsb: score >= this is label 1 ("roughly equivalent" or better)
    small_version: bool = True  # esci: keep only the release's small_version rows
    tables: dict[str, dict[str, str]] | None = None  # table: {name: {language, train, test[, validation]}}
    columns: dict[str, str] | None = None  # table: {id, text_a, text_b, label[, group]} -> your column names
    validation_fraction: float = Field(0.2, gt=0.0, lt=1.0)
    max_train: int | None = Field(None, gt=0)  # stratified, seeded subsample per marketplace (None: all)
    max_validation: int | None = Field(None, gt=0)
    max_test: int | None = Field(None, gt=0)
    evaluate_unseen: bool = True  # also score marketplaces not learned yet (forward transfer)
    # also score every seen marketplace's validation set after each step: what `frkit tune` selects on (never test)
    evaluate_validation: bool = False
    # -- model -----------------------------------------------------------------------------------
    model_name_or_path: str = "offline:multilingual-e5-small"  # Hub id, local folder, or the offline e5
    trim_vocab: bool = True  # keep only embedding rows the configured data uses (same tokenisation)
    max_length: int = Field(128, ge=8)
    pooling: Literal["cls", "mean"] = "cls"
    # a new marketplace's head (issue 30): "fresh" random init; "previous": a copy of the last marketplace's head;
    # "shared": one head for every marketplace. Methods that cannot take one refuse it (Method.head_inits)
    head_init: Literal["fresh", "previous", "shared"] = "fresh"
    # -- the one training loop --------------------------------------------------------------------
    # defaults: FR-LoRA section 5.1 (AdamW, 5e-5 full model / 3e-4 PEFT, batch 128, 25 epochs, patience 3)
    lr: float = Field(5e-5, gt=0)  # full-parameter training (and FR-LoRA / EWC Stage I)
    adapter_lr: float = Field(3e-4, gt=0)  # adapters / LoRA / prefix / fusion and the heads beside them
    epochs: int = Field(25, ge=1)
    batch_size: int = Field(128, ge=1)
    eval_batch_size: int = Field(128, ge=1)
    weight_decay: float = Field(0.01, ge=0)
    schedule: Literal["cosine", "constant"] = "cosine"
    warmup_ratio: float = Field(0.1, ge=0, lt=1)
    patience: int = Field(3, ge=0)  # epochs without validation ROC-AUC gain before stopping (0: never stop early)
    # a gain of min_delta or less counts as none for patience (HF's early_stopping_threshold, Lightning's min_delta):
    # a marketplace that creeps up by 0.0001 an epoch stops, one still climbing trains on; the best epoch is kept
    min_delta: float = Field(0.0, ge=0, lt=1)
    max_grad_norm: float | None = Field(1.0, gt=0)
    # auto: bf16 autocast where the device runs it fast (CUDA with bf16, a CPU with AMX/AVX512-BF16), else fp32
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    length_batching: bool = True  # batches of similar token length (less padding); evaluation sorted by length
    eval_every_steps: int | None = Field(None, gt=0)  # learning curve: validation AUC every N steps (None: per epoch)
    max_steps_per_epoch: int | None = Field(None, gt=0)  # cap for smoke runs

    @field_validator("marketplaces")
    @classmethod
    def _unique(cls, v: list[str]) -> list[str]:
        dup = sorted({m for m in v if v.count(m) > 1})
        if dup:
            raise ValueError(f"marketplace names must be unique, repeated: {dup}")
        for name in v:
            problem = marketplace_name_problem(name)
            if problem:
                raise ValueError(f"marketplace name {name!r} {problem}")
        return v

    # convenience: paths resolved by the project-root rule (frkit/paths.py)
    @property
    def run_dir(self) -> Path:
        return resolve(self.output_dir) / self.run_name

    @property
    def data_dir(self) -> Path | None:
        return resolve(self.data_path) if self.data_path and self.data_source != "hub" else None


@lru_cache(maxsize=1)
def config_class() -> type[BaseRunConfig]:
    """RunConfig = base keys + every registered method's option keys."""
    from frkit.methods import option_fields  # late import: methods register their option groups

    return create_model("RunConfig", __base__=BaseRunConfig, **option_fields())


def default_params() -> dict[str, Any]:
    """Every key with its default: what a notebook's parameters cell carries."""
    return config_class()().model_dump()


def _explain(err: ValidationError, source: str, keys: list[str], overridden: set[str], override_source: str) -> str:
    lines = [f"invalid parameters in {source}:"]
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"]) or "(root)"
        where = f" (given by {override_source})" if key.split(".")[0] in overridden else ""
        if e["type"] == "extra_forbidden":
            near = difflib.get_close_matches(key, keys, n=1)
            hint = f"; did you mean {near[0]!r}?" if near else ""
            lines.append(f"  - unknown key {key!r}{where}{hint}")
        else:
            lines.append(f"  - key {key!r}{where}: {e['msg']} (got {e.get('input')!r})")
    return "\n".join(lines)


def make_config(
    values: dict[str, Any] | None = None,
    source: str = "parameters",
    override_source: str = "the command line (-p)",
    **overrides: Any,
) -> BaseRunConfig:
    """Validate a flat mapping (+ ``overrides``) into the run configuration; raise FrkitInputError naming each
    bad key and where it came from (``source`` for ``values``, ``override_source`` for ``overrides``)."""
    cls = config_class()
    data = {**(values or {}), **overrides}
    try:
        cfg = cls(**data)
    except ValidationError as err:
        raise FrkitInputError(_explain(err, source, list(cls.model_fields), set(overrides), override_source)) from None
    from frkit.methods import METHODS

    if cfg.method not in METHODS:
        where = override_source if "method" in overrides else source
        raise FrkitInputError(
            f"{where}: key 'method': unknown method {cfg.method!r}; expected one of {sorted(METHODS)}"
        )
    problems = METHODS[cfg.method].check_options(cfg)  # checks across keys, which one field cannot make
    if problems:
        raise FrkitInputError("\n".join([f"invalid parameters in {source}:"] + [f"  - {p}" for p in problems]))
    return cfg


class _StrictLoader(yaml.SafeLoader):
    """YAML's safe loader that refuses a key given twice in one mapping (plain YAML keeps the last silently)."""

    def construct_mapping(self, node, deep=False):
        seen = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"key {key!r} is given twice (lines {seen[key] + 1} and {key_node.start_mark.line + 1})",
                    key_node.start_mark,
                )
            seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep=deep)


def read_params(path: str | Path) -> dict[str, Any]:
    """The flat ``key: value`` mapping of a params file; a missing, unreadable or non-YAML file, a key given
    twice, or anything but a mapping raises FrkitInputError naming the file (and line)."""
    path = Path(path)
    if not path.is_file():
        raise FrkitInputError(f"params file {path} does not exist")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise FrkitInputError(
            f"params file {path} is not UTF-8 text (a binary file?); expected YAML key: value lines"
        ) from None
    except OSError as err:
        raise FrkitInputError(f"params file {path} could not be read: {err}") from None
    try:
        values = yaml.load(text, Loader=_StrictLoader)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        tab = " (YAML does not allow tabs for indentation)" if "\\t" in str(problem) or "\t" in str(problem) else ""
        raise FrkitInputError(f"params file {path}{where}: not valid YAML: {problem}{tab}") from None
    values = {} if values is None else values
    if not isinstance(values, dict):
        raise FrkitInputError(f"params file {path}: expected a mapping of key: value, got {type(values).__name__}")
    return values


def load_params(path: str | Path, **overrides: Any) -> BaseRunConfig:
    """Read ``params/*.yaml`` and validate it (plus overrides, e.g. from the command line)."""
    return make_config(read_params(path), source=str(path), **overrides)
