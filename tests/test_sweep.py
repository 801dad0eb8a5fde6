"""`frkit sweep`: the sweep file is validated before any training, runs go through the runner, the summary holds
mean ± std over seeds, and runs trained in parallel processes (`jobs`) give the same numbers as serial ones."""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import kill_a_run_once, write_result

from frkit.cli import main
from frkit.errors import FrkitInputError
from frkit.records.checksums import write_manifest
from frkit.reports.summary import summarize_sweep
from frkit.sweep import load_sweep, run_sweep

ORDER = "en-es-ja"
REPO = Path(__file__).resolve().parents[1]


def write_sweep(tmp_path: Path, params: dict, sweep: dict) -> Path:
    """A sweep file beside a base params file; results go to tmp_path/results (never the repository's)."""
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(params))
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump({"base": "base.yaml", "results": str(tmp_path / "results"), **sweep}))
    return path


def test_unknown_sweep_key_is_named(tmp_path, tiny_params):
    path = write_sweep(tmp_path, tiny_params(), {"runs": {"a": {"method": "sequential"}}, "seed": [0]})
    with pytest.raises(FrkitInputError, match=r"unknown key\(s\) \['seed'\]"):
        load_sweep(path)


def test_the_claims_unit_is_order_or_seed(tmp_path, tiny_params):
    runs = {"runs": {"a": {"method": "sequential"}}}
    assert load_sweep(write_sweep(tmp_path, tiny_params(), runs)).unit == "order"
    assert load_sweep(write_sweep(tmp_path, tiny_params(), {**runs, "unit": "seed"})).unit == "seed"
    with pytest.raises(FrkitInputError, match=r"sweep.yaml: unit must be order .* or seed .*got 'run'"):
        load_sweep(write_sweep(tmp_path, tiny_params(), {**runs, "unit": "run"}))


def test_missing_runs_and_base_are_named(tmp_path, tiny_params):
    with pytest.raises(FrkitInputError, match="missing key 'runs'"):
        load_sweep(write_sweep(tmp_path, tiny_params(), {}))
    path = tmp_path / "no_base.yaml"
    path.write_text(yaml.safe_dump({"base": "nowhere.yaml", "runs": {"a": {}}}))
    with pytest.raises(FrkitInputError, match="nowhere.yaml does not exist"):
        load_sweep(path)
    with pytest.raises(FrkitInputError, match="does not exist"):
        load_sweep(tmp_path / "absent.yaml")


def test_bad_run_parameter_names_the_run_and_key(tmp_path, tiny_params):
    path = write_sweep(
        tmp_path,
        tiny_params(),
        {"runs": {"good": {"method": "sequential"}, "broken": {"method": "lora", "lora_rnk": 4}}},
    )
    with pytest.raises(FrkitInputError, match=r"(?s)run 'broken'.*lora_rnk"):
        load_sweep(path)


def test_only_with_unknown_label_fails_before_training(tmp_path, tiny_params):
    path = write_sweep(tmp_path, tiny_params(), {"runs": {"seq": {"method": "sequential"}}})
    with pytest.raises(FrkitInputError, match=r"--only \['sequentail'\] not among its \['seq'\]"):
        run_sweep(path, only=["sequentail"])
    with pytest.raises(FrkitInputError, match=r"--seeds \[7\] not among its \[0\]"):
        run_sweep(path, seeds=[7])
    with pytest.raises(FrkitInputError, match=r"--orders \['ja-en-es'\] not among its \['en-es-ja'\]"):
        run_sweep(path, orders=["ja-en-es"])
    with pytest.raises(FrkitInputError, match=r"--jobs 0: expected a whole number >= 1"):
        run_sweep(path, jobs=0)
    assert not (tmp_path / "outputs").exists()


def test_sweep_runs_every_seed_and_summarises_mean_and_std(tmp_path, tiny_params):
    path = write_sweep(
        tmp_path,
        tiny_params(epochs=1),
        {
            "name": "s",
            "seeds": [0, 1],
            "baseline": "independent",
            "runs": {"independent": {"method": "independent"}, "seq": {"method": "sequential"}},
        },
    )
    assert main(["sweep", str(path)]) == 0
    out = tmp_path / "outputs" / "s"
    metrics = {
        (label, seed): json.loads((out / label / ORDER / f"seed{seed}" / "metrics.json").read_text())
        for label in ("independent", "seq")
        for seed in (0, 1)
    }
    summary = (tmp_path / "results" / "summary.md").read_text()
    for label in ("independent", "seq"):
        values = [metrics[(label, s)]["average_auc"] for s in (0, 1)]
        mean, std = sum(values) / 2, abs(values[0] - values[1]) / 2**0.5  # sample std of two values
        line = next(ln for ln in summary.splitlines() if ln.startswith(f"| {label} "))
        assert f"{mean:.4f} ± {std:.4f}" in line and "| 2/2 " in line
    assert "Relative to independent" in summary
    # the results folder holds each run's small files, and no checkpoint or tensor
    exported = tmp_path / "results" / "seq" / ORDER / "seed1"
    assert sorted(p.name for p in exported.iterdir()) == sorted(
        ["params.yaml", "environment.json", "metrics.json", "auc_matrix.csv", "progress.json", "checksums.json"]
    )


def test_a_sweep_prints_a_line_per_finished_run_and_k_of_n_with_an_eta(tmp_path, tiny_params, capsys):
    """Stdout not a terminal (capsys, as a log file): a plain line per finished run and per update of the bar, the
    estimate from the first finished run on; the runs' own logs go to their log files, not to the sweep's output."""
    path = write_sweep(
        tmp_path,
        tiny_params(epochs=1),
        {"name": "s", "runs": {"seq": {"method": "sequential"}, "lora": {"method": "lora"}}},
    )
    run_sweep(path)
    out = capsys.readouterr().out
    bars = [line for line in out.splitlines() if re.match(r"== s: \d/2 runs \[", line)]
    assert len(bars) == 2, out
    assert re.search(r"^== s: 1/2 runs \[#{10}\.{10}\] 50%, elapsed \d:\d\d:\d\d, ETA \d:\d\d:\d\d$", bars[0]), bars
    assert bars[1].startswith("== s: 2/2 runs [####################] 100%, elapsed") and bars[1].endswith("done")
    assert re.search(rf"^== seq \[{ORDER}\] seed 0: done in \d:\d\d:\d\d$", out, re.M), out
    assert "epoch" not in out and "after en" not in out  # the run's progress stays in its log
    assert "after en" in (tmp_path / "outputs" / "s" / "seq" / ORDER / "seed0.log").read_text()


def test_the_estimate_uses_the_labels_own_recorded_times_else_all():
    from frkit.sweep.progress import duration, estimate_left

    known = {"a": [10.0, 20.0], "b": [60.0]}
    assert estimate_left(["a", "a", "b", "c"], known) == 15 + 15 + 60 + 30  # c: none recorded, the mean of all
    assert estimate_left(["a", "b"], known, parallel=3) == 25
    assert estimate_left(["a"], {}) is None and estimate_left([], {}) == 0
    assert duration(3725.4) == "1:02:05"


def test_in_a_terminal_the_bar_redraws_in_place_below_the_run_lines(tmp_path):
    import io

    from frkit.sweep.progress import SweepProgress
    from frkit.sweep.spec import RunKey

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    keys = [RunKey("a", ("en", "es"), seed) for seed in (0, 1)]
    folder = write_result(tmp_path / "results", "a", 0, {"en": 0.7, "es": 0.7}, order=("en", "es"), seconds=10.0)
    screen, now = Terminal(), [0.0]
    progress = SweepProgress("s", [(k, None) for k in keys], parallel=1, stream=screen, clock=lambda: now[0])
    now[0] = 30.0
    progress.finished(keys[0], folder)  # recorded 2 x (10 + 1) s: the other run of label a is estimated at 22 s
    assert "== a [en-es] seed 0: done in 0:00:22\n" in screen.getvalue()
    assert "\r== s: 1/2 runs |" in screen.getvalue() and "elapsed 0:00:30, ETA 0:00:22" in screen.getvalue()
    progress.close()


def test_parallel_jobs_match_serial(tmp_path, tiny_params):
    runs = {"seq": {"method": "sequential"}, "lora": {"method": "lora"}}
    folders = {}
    for name in ("serial", "parallel"):
        (tmp_path / name).mkdir()
        folders[name] = write_sweep(
            tmp_path / name, tiny_params(epochs=1, output_dir=str(tmp_path / name / "out")), {"name": "s", "runs": runs}
        )
    serial, parallel = folders["serial"], folders["parallel"]
    run_sweep(serial)
    run_sweep(parallel, jobs=2)
    for label in runs:
        a = json.loads((tmp_path / "serial" / "out" / "s" / label / ORDER / "seed0" / "metrics.json").read_text())
        b = json.loads((tmp_path / "parallel" / "out" / "s" / label / ORDER / "seed0" / "metrics.json").read_text())
        np.testing.assert_allclose(
            np.array(b["auc_matrix"], dtype=float), np.array(a["auc_matrix"], dtype=float), atol=1e-6
        )
        assert (tmp_path / "parallel" / "out" / "s" / label / ORDER / "seed0.log").is_file()


def test_parallel_failure_is_reported_and_other_runs_finish(tmp_path, tiny_params, capsys):
    # a run whose data folder vanishes after validation fails inside its worker; the other run still finishes
    path = write_sweep(
        tmp_path,
        tiny_params(epochs=1),
        {
            "name": "s",
            "runs": {
                "seq": {"method": "sequential"},
                "bad": {"method": "sequential", "data_path": str(tmp_path / "gone")},
            },
        },
    )
    (tmp_path / "gone").mkdir()
    with pytest.raises(RuntimeError, match=r"(?s)sweep runs failed.*bad \[en-es-ja\] seed 0"):
        run_sweep(path, jobs=2)
    assert (tmp_path / "outputs" / "s" / "seq" / ORDER / "seed0" / "metrics.json").is_file()
    reported = [
        line for line in capsys.readouterr().out.splitlines() if line.startswith("== bad [en-es-ja] seed 0: failed")
    ]
    assert reported and "Error" in reported[0]  # the reason at once, not only at the end of the sweep
    assert "Traceback" in (tmp_path / "outputs" / "s" / "bad" / ORDER / "seed0.log").read_text()  # and kept in its log


def test_a_killed_run_process_fails_alone_and_the_sweep_run_again_resumes_it(tmp_path, tiny_params, capsys):
    """A run's process SIGKILLed between marketplaces (what the out-of-memory killer does): that run alone fails,
    named with the signal; the other finishes and is exported; the same sweep again resumes the killed run from
    its finished marketplaces. (A process pool would break for every queued run instead.)"""
    path = write_sweep(
        tmp_path,
        tiny_params(epochs=1),
        {"name": "s", "runs": {"seq": {"method": "sequential"}, "lora": {"method": "lora"}}},
    )
    outputs = tmp_path / "outputs" / "s"
    with kill_a_run_once(
        outputs, f"*/{ORDER}/seed0/progress.json", lambda steps: 1 <= steps < 3, timeout=600, poll=0.02
    ) as killed:
        with pytest.raises(RuntimeError, match=r"(?s)sweep runs failed.*its process died \(killed by SIGKILL\)"):
            run_sweep(path, jobs=2)
    assert killed, "no run was killed: both finished before the killer saw one between marketplaces"
    victim = killed["run_dir"].parents[1].name  # outputs/s/<label>/<order>/seed0
    survivor = ({"seq", "lora"} - {victim}).pop()
    printed = capsys.readouterr().out
    assert f"== {victim} [{ORDER}] seed 0: failed: its process died (killed by SIGKILL)" in printed, printed
    assert f"== {survivor} [{ORDER}] seed 0: done" in printed, printed
    assert (tmp_path / "results" / survivor / ORDER / "seed0" / "metrics.json").is_file()
    assert not (tmp_path / "results" / victim / ORDER / "seed0").exists()

    run_sweep(path, jobs=2)  # the same command again: only the killed run trains, from where it was killed
    assert "1 of 2 runs already have results; 1 to train" in capsys.readouterr().out
    sessions = json.loads((outputs / victim / ORDER / "seed0" / "environment.json").read_text())["sessions"]
    assert len(sessions) == 2 and "steps_done_before" not in sessions[0], sessions  # a fresh start, then a resume
    assert sessions[1]["steps_done_before"] >= killed["steps"], sessions  # (a step may land as the kill is sent)
    assert (tmp_path / "results" / victim / ORDER / "seed0" / "metrics.json").is_file()


def test_a_run_process_that_exits_without_reporting_is_named_with_its_exit_code(tmp_path):
    """A run's process that ends before it can report (here its config fails to build, outside the worker's
    try) is named with its exit code and where its finished marketplaces are, not taken for a kill."""
    import multiprocessing
    from types import SimpleNamespace

    from frkit.sweep.worker import run_in_process

    cfg = SimpleNamespace(run_dir=tmp_path / "run", model_dump=lambda: {"epochs": "many"})
    error = run_in_process(multiprocessing.get_context("spawn"), "k", cfg, 1)
    assert error.startswith("its process exited with code 1 before reporting"), error
    assert str(tmp_path / "run") in error and "run the sweep again to resume it" in error


def _as_in_a_terminal():
    """SIGINT handled as in an interactive terminal: a suite started in the background (``make test &``, nohup)
    inherits SIGINT ignored, and an ignored signal stays ignored across exec."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_ctrl_c_stops_the_sweep_and_starts_no_queued_run(tmp_path, tiny_params):
    """Ctrl-C in a terminal (SIGINT to the whole process group) while two runs train and a third waits: the sweep
    exits 130 with the resume hint, and the queued run never starts."""
    params = tiny_params(epochs=1)
    path = write_sweep(
        tmp_path,
        params,
        {
            "name": "s",
            "runs": {
                "a": {"method": "sequential"},
                "b": {"method": "lora"},
                "c": {"method": "sequential", "lr": 0.002},
            },
        },
    )
    outputs = Path(params["output_dir"]) / "s"
    proc = subprocess.Popen(
        [sys.executable, "-m", "frkit", "sweep", str(path), "--jobs", "2"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
        preexec_fn=_as_in_a_terminal,
    )
    try:
        started = [outputs / label / ORDER / "seed0.pid" for label in ("a", "b")]
        deadline = time.time() + 300
        while not all(p.exists() for p in started) and proc.poll() is None and time.time() < deadline:
            time.sleep(0.05)
        assert all(p.exists() for p in started), "the first two runs did not start"
        os.killpg(proc.pid, signal.SIGINT)
        out, _ = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130, out[-3000:]
    assert "interrupted; the same command resumes" in out
    assert not (outputs / "c").exists(), "the queued run started after Ctrl-C"


# -- seeds x orders, and summaries / claims of a results folder written by hand (no training) -----------------


def test_orders_and_seeds_expand_as_stated(tmp_path, tiny_params):
    path = write_sweep(
        tmp_path,
        tiny_params(),
        {
            "name": "s",
            "seeds": [0, 1],
            "orders": [["en", "es", "ja"], ["ja", "es", "en"]],
            "runs": {"a": {"method": "sequential"}, "b": {"method": "lora", "orders": {"random": 3, "seed": 5}}},
        },
    )
    sweep = load_sweep(path)
    a = sweep.keys("a")
    assert sorted((k.order, k.seed) for k in a) == sorted(
        (o, s) for o in [("en", "es", "ja"), ("ja", "es", "en")] for s in (0, 1)
    )
    b_orders = {k.order for k in sweep.keys("b")}
    assert len(b_orders) == 3 and all(sorted(o) == ["en", "es", "ja"] for o in b_orders)
    assert b_orders == {k.order for k in load_sweep(path).keys("b")}  # seeded: the same permutations again
    cfg = sweep.configs[a[0]]
    assert cfg.marketplaces == list(a[0].order) and cfg.run_name == f"s/a/{a[0].order_tag}/seed{a[0].seed}"


@pytest.mark.parametrize(
    "orders, match",
    [
        (
            [["en", "es", "fr"]],
            r"orders entry \['en', 'es', 'fr'\]: unknown marketplace\(s\) \['fr'\].*\['en', 'es', 'ja'\]",
        ),
        ([["en", "en", "ja"]], r"orders entry \['en', 'en', 'ja'\]: repeated \['en'\]"),
        ([["en", "es"]], r"orders entry \['en', 'es'\]: 2 marketplaces, expected 3"),
        ({"random": 7}, r"7 random orders asked for, but 3 marketplaces have only 6"),
        ("en,es,ja", r"orders must be a non-empty list"),
    ],
)
def test_bad_orders_fail_before_any_run(tmp_path, tiny_params, orders, match):
    path = write_sweep(tmp_path, tiny_params(), {"orders": orders, "runs": {"a": {"method": "sequential"}}})
    with pytest.raises(FrkitInputError, match=match):
        run_sweep(path)
    assert not (tmp_path / "outputs").exists()


def fixture_sweep(tmp_path, tiny_params, labels=("independent", "fr_lora")) -> Path:
    return write_sweep(
        tmp_path,
        tiny_params(),
        {"name": "fx", "seeds": [0, 1, 2], "runs": {lab: {"method": "sequential"} for lab in labels}},
    )


FINALS = {  # (label, seed) -> final AUC of en, es, ja
    ("independent", 0): (0.70, 0.72, 0.74),
    ("independent", 1): (0.71, 0.70, 0.75),
    ("independent", 2): (0.69, 0.71, 0.73),
    ("fr_lora", 0): (0.75, 0.76, 0.78),
    ("fr_lora", 1): (0.77, 0.75, 0.79),
    ("fr_lora", 2): (0.76, 0.77, 0.80),
}


def test_summary_of_a_results_fixture_equals_hand_computed_values(tmp_path, tiny_params):
    path = fixture_sweep(tmp_path, tiny_params)
    for (label, seed), f in FINALS.items():
        write_result(tmp_path / "results", label, seed, dict(zip(["en", "es", "ja"], f)), forgetting=-0.01 * (seed + 1))
    results = summarize_sweep(load_sweep(path))
    summary = (tmp_path / "results" / "summary.md").read_text()
    for label in ("independent", "fr_lora"):
        avgs = [np.mean(FINALS[(label, s)]) for s in range(3)]
        mean, std = np.mean(avgs), np.std(avgs, ddof=1)
        line = next(ln for ln in summary.splitlines() if ln.startswith(f"| {label} "))
        assert f"{mean:.4f} ± {std:.4f}" in line and "| 3/3 " in line
        en = [FINALS[(label, s)][0] for s in range(3)]
        assert f"{np.mean(en):.4f} ± {np.std(en, ddof=1):.4f}" in line
        assert "-0.0200 ± 0.0100" in line  # forgetting -0.01, -0.02, -0.03
    diffs = [np.mean(FINALS[("fr_lora", s)]) - np.mean(FINALS[("independent", s)]) for s in range(3)]
    rel = next(ln for ln in summary.split("## Relative")[1].splitlines() if ln.startswith("| fr_lora "))
    assert f"{np.mean(diffs):.4f} ± {np.std(diffs, ddof=1):.4f}" in rel  # paired by seed
    csv = (tmp_path / "results" / "summary.csv").read_text()
    assert "average_auc mean" in csv and len(results.runs) == 6


def test_summary_says_the_precision_of_each_rows_runs(tmp_path, tiny_params):
    """precision: auto is bf16 on one machine and fp32 on another: a row that mixes them says so, and a run that
    recorded nothing is counted as unknown, from its steps or else from its environment.json."""
    from frkit.records.precision import run_precision

    path = fixture_sweep(tmp_path, tiny_params)
    for (label, seed), f in FINALS.items():
        precision = {"independent": "fp32", "fr_lora": "bf16" if seed == 2 else None}[label]
        folder = write_result(tmp_path / "results", label, seed, dict(zip(["en", "es", "ja"], f)), precision=precision)
        if (label, seed) == ("fr_lora", 1):  # older run: params say auto, the environment says fp32 was chosen
            (folder / "params.yaml").write_text(yaml.safe_dump({"seed": 1, "precision": "auto"}))
            (folder / "environment.json").write_text(
                json.dumps({"bf16_autocast_fast": False, "sessions": [{"bf16_autocast_fast": False}]})
            )
            write_manifest(folder)  # these files are the run's as exported
    summarize_sweep(load_sweep(path))
    summary = (tmp_path / "results" / "summary.md").read_text()

    def last_cell(label):
        return next(ln for ln in summary.splitlines() if ln.startswith(f"| {label} ")).rsplit("|", 2)[1].strip()

    assert last_cell("independent") == "3 fp32"
    assert set(last_cell("fr_lora").split(", ")) == {"1 ?", "1 fp32", "1 bf16"}
    assert "`?`: not recorded" in summary
    runs = (tmp_path / "results" / "runs.csv").read_text().splitlines()
    assert "precision" in runs[0].split(",")
    # a run resumed on a machine that resolved auto otherwise is mixed, never one or the other
    folder = tmp_path / "results" / "fr_lora" / ORDER / "seed2"
    steps = [{"precision": "bf16"}, {"precision": "fp32"}]
    assert run_precision(folder, steps) == "mixed"
    (folder / "environment.json").write_text(json.dumps({"sessions": [{"bf16_autocast_fast": True}, {}]}))
    (folder / "params.yaml").write_text(yaml.safe_dump({"precision": "auto"}))
    assert run_precision(folder, [{"precision": "bf16"}, {}]) == "?"  # the second session's machine is not described
    # a resume after the last step ran nothing: its machine does not make the run mixed
    (folder / "environment.json").write_text(
        json.dumps({"sessions": [{"bf16_autocast_fast": False}, {"bf16_autocast_fast": True, "steps_done_before": 2}]})
    )
    assert run_precision(folder, [{}, {}]) == "fp32" and run_precision(folder, [{}, {}, {}]) == "mixed"
    (folder / "params.yaml").write_text(yaml.safe_dump({"precision": "fp32"}))
    (folder / "environment.json").unlink()
    assert run_precision(folder, [{}, {}]) == "fp32"  # asked for fp32: fp32 on any machine, environment or not


def test_missing_and_half_written_runs_are_marked_never_averaged(tmp_path, tiny_params):
    path = fixture_sweep(tmp_path, tiny_params)
    for (label, seed), f in FINALS.items():
        if (label, seed) == ("fr_lora", 2):
            continue
        folder = write_result(tmp_path / "results", label, seed, dict(zip(["en", "es", "ja"], f)))
        if (label, seed) == ("fr_lora", 1):
            (folder / "metrics.json").write_text('{"average_auc": 0.7')  # half-written
            write_manifest(folder)  # as exported: the manifest holds (a hand edit is refused: test_results_manifest)
    summarize_sweep(load_sweep(path))
    summary = (tmp_path / "results" / "summary.md").read_text()
    line = next(ln for ln in summary.splitlines() if ln.startswith("| fr_lora "))
    assert "| 1/3 " in line and re.search(
        rf"\| {np.mean(FINALS[('fr_lora', 0)]):.4f} +\|", line
    )  # seed 0 alone, no std
    assert "fr_lora [en-es-ja] seed 1: half-written" in summary and "fr_lora [en-es-ja] seed 2: not run" in summary


def test_committed_results_are_skipped_and_summary_only_uses_them_alone(tmp_path, tiny_params, capsys):
    path = fixture_sweep(tmp_path, tiny_params)
    sweep = load_sweep(path)
    for key, cfg in sweep.configs.items():
        write_result(
            tmp_path / "results",
            key.label,
            key.seed,
            dict(zip(["en", "es", "ja"], FINALS[(key.label, key.seed)])),
            params=cfg.model_dump(),
        )
    assert main(["sweep", str(path)]) == 0  # every run has results: nothing trains, the summary is written
    assert "6 of 6 runs already have results; 0 to train" in capsys.readouterr().out
    assert not (tmp_path / "outputs").exists()
    first = (tmp_path / "results" / "summary.md").read_text()
    (tmp_path / "results" / "summary.md").unlink()
    assert main(["sweep", str(path), "--summary-only"]) == 0
    assert (tmp_path / "results" / "summary.md").read_text() == first
    # results made with other parameters are refused, not summarised as if they were these
    base = yaml.safe_load((tmp_path / "base.yaml").read_text())
    (tmp_path / "base.yaml").write_text(yaml.safe_dump({**base, "lr": 0.5}))
    with pytest.raises(
        FrkitInputError, match=r"results of fr_lora \[en-es-ja\] seed 0 .* other parameters \(lr: 0.001 -> 0.5\)"
    ):
        run_sweep(path)


def test_results_made_with_precision_auto_count_for_fp32_unless_they_ran_bf16(tmp_path, tiny_params):
    """A sweep that now pins fp32 keeps older precision-auto results that ran fp32 or recorded nothing (the summary
    shows those as `?`), and refuses one whose steps ran under bf16 autocast."""
    path = write_sweep(
        tmp_path,
        tiny_params(precision="fp32"),
        {"name": "fx", "seeds": [0, 1, 2], "runs": {"fr_lora": {"method": "sequential"}}},
    )
    sweep = load_sweep(path)
    for key, cfg in sweep.configs.items():
        precision = {0: "fp32", 1: None, 2: "bf16"}[key.seed]
        write_result(
            tmp_path / "results",
            key.label,
            key.seed,
            dict(zip(["en", "es", "ja"], FINALS[(key.label, key.seed)])),
            params={**cfg.model_dump(), "precision": "auto"},
            precision=precision,
        )
    with pytest.raises(
        FrkitInputError, match=r"results of fr_lora \[en-es-ja\] seed 2 .* \(precision: 'auto' -> 'fp32'\)"
    ):
        run_sweep(path)
    folder = tmp_path / "results" / "fr_lora" / ORDER / "seed2"
    progress = json.loads((folder / "progress.json").read_text())
    (folder / "progress.json").write_text(
        json.dumps({**progress, "steps": [{**s, "precision": "fp32"} for s in progress["steps"]]})
    )
    run_sweep(path)  # seed 0 recorded fp32, seed 1 nothing, seed 2 now fp32: all kept, nothing trains
    assert not (tmp_path / "outputs").exists()


def test_claim_verdicts_follow_the_numbers(tmp_path, tiny_params):
    from frkit.reports.claims import claims_table, verdict
    from frkit.reports.collect import collect

    path = fixture_sweep(tmp_path, tiny_params)
    for (label, seed), f in FINALS.items():
        write_result(tmp_path / "results", label, seed, dict(zip(["en", "es", "ja"], f)))
    claims = claims_table(collect(load_sweep(path)).frame(), ["en", "es", "ja"])
    beats = claims[claims["comparison"] == "fr_lora > independent (average_auc)"].iloc[0]
    assert beats["verdict"] == "reproduced" and beats["n"] == 3
    assert claims[claims["comparison"].str.startswith("fr_lora > lora")].iloc[0]["verdict"] == "missing"
    # the same fixture with the two rows' numbers swapped: the claim is now contradicted
    (tmp_path / "results").rename(tmp_path / "old")
    for (label, seed), f in FINALS.items():
        other = "independent" if label == "fr_lora" else "fr_lora"
        write_result(tmp_path / "results", other, seed, dict(zip(["en", "es", "ja"], f)))
    flipped = claims_table(collect(load_sweep(path)).frame(), ["en", "es", "ja"])
    assert (
        flipped[flipped["comparison"] == "fr_lora > independent (average_auc)"].iloc[0]["verdict"] == "not reproduced"
    )
    # the rule itself: 95% t-interval of the paired differences
    assert verdict(0.01, 0.001, 3) == "reproduced" and verdict(0.01, 0.05, 3) == "within noise"
    assert verdict(-0.01, 0.001, 3) == "not reproduced" and verdict(0.01, float("nan"), 1) == "one unit"
    assert verdict(-0.005, 0.001, 3, margin=0.01) == "reproduced"  # "nearly comparable": within the margin


def test_claims_count_the_pairs_on_the_claimed_side_beside_the_verdict():
    """With n = 3 a claim can hold on every pair and still be within noise; the table shows both."""
    from frkit.reports.claims import GREATER, LESS, Claim, check, claims_markdown

    runs = pd.DataFrame(
        {
            "label": ["a"] * 3 + ["b"] * 3,
            "order": ["en-es-ja"] * 6,
            "seed": [0, 1, 2] * 2,
            "average_auc": [0.80, 0.70, 0.90, 0.75, 0.72, 0.85],
        }
    )  # a - b: +0.05, -0.02, +0.05
    beats = check(Claim("P", "T1", "a beats b", "a", "b", "average_auc"), runs)
    assert beats["agree"] == 2 and beats["n"] == 3 and beats["verdict"] == "within noise"
    assert check(Claim("P", "T1", "a below b", "a", "b", "average_auc", LESS), runs)["agree"] == 1
    assert check(Claim("P", "T1", "a near b", "a", "b", "average_auc", GREATER, margin=0.03), runs)["agree"] == 3
    assert check(Claim("P", "T1", "a above 0.75", "a", None, "average_auc", value=0.75), runs)["agree"] == 2
    consistent = runs.assign(average_auc=[0.80, 0.70, 0.90, 0.70, 0.69, 0.80])  # +0.10, +0.01, +0.10: 3 of 3
    always = check(Claim("P", "T1", "a beats b", "a", "b", "average_auc"), consistent)
    assert always["agree"] == 3 and always["verdict"] == "within noise"
    table = claims_markdown(pd.DataFrame([beats, always]))
    column = [c.strip() for c in table.splitlines()[0].split("|")].index("on claimed side")
    assert [line.split("|")[column].strip() for line in table.splitlines()[2:]] == ["2/3", "3/3"]


def test_stage_two_split_reads_the_logged_eq4_penalty_and_skips_runs_without_it(tmp_path, tiny_params):
    from frkit.reports.collect import collect
    from frkit.reports.paper_tables import stage2_penalty_frame

    path = fixture_sweep(tmp_path, tiny_params)
    for (label, seed), f in FINALS.items():
        write_result(tmp_path / "results", label, seed, dict(zip(["en", "es", "ja"], f)), params={"beta": 1e-4})
    assert stage2_penalty_frame(collect(load_sweep(path))).empty  # no run logged the split: an empty table
    progress = tmp_path / "results" / "fr_lora" / ORDER / "seed1" / "progress.json"
    record = json.loads(progress.read_text())
    record["steps"][1]["stage2"] = {
        "history": [{"train_loss": 9.0}, {"train_loss": 5.0}],
        "eq4_penalty": {"mean": 6.5, "last": 2.0, "fisher_below_eps": 0.25},
    }
    progress.write_text(json.dumps(record))
    write_manifest(progress.parent)
    frame = stage2_penalty_frame(collect(load_sweep(path)))
    assert frame.to_dict("records") == [
        {
            "run": "fr_lora",
            "order": ORDER,
            "seed": 1,
            "marketplace": "es",
            "beta": 1e-4,
            "Stage II loss": 7.0,
            "Eq. 4 penalty": 6.5,
            "task loss": 0.5,
            "penalty share": 6.5 / 7.0,
            "penalty, last step": 2.0,
            "Fisher < eps": 0.25,
        }
    ]


def test_strength_figure_plots_each_run_at_the_strength_its_params_name(tmp_path, tiny_params):
    from frkit.reports.collect import collect
    from frkit.reports.paper_tables import strength_figure

    labels = ("fr_lora_beta0", "fr_lora_beta1", "fr_lora_beta1e-2", "independent")
    path = write_sweep(
        tmp_path, tiny_params(), {"name": "fx", "seeds": [0], "runs": {lab: {"method": "sequential"} for lab in labels}}
    )
    for label, beta, finals in [
        ("fr_lora_beta1", 1.0, (0.8, 0.8, 0.8)),
        ("fr_lora_beta0", 0.0, (0.6, 0.6, 0.6)),
        ("fr_lora_beta1e-2", 1e-2, (0.7, 0.7, 0.7)),
        ("independent", None, (0.5, 0.5, 0.5)),
    ]:
        write_result(
            tmp_path / "results",
            label,
            0,
            dict(zip(["en", "es", "ja"], finals)),
            forgetting=-beta if beta else 0.0,
            params={} if beta is None else {"beta": beta},
        )
    fig = strength_figure(collect(load_sweep(path)), "FR-LoRA", "beta", {"fr_lora_beta": "FR-LoRA"})
    auc, forgetting = fig.data  # one line per panel; independent (not in the group) is left out
    assert list(auc.x) == [1e-8, 1e-2, 1.0] and list(auc.y) == pytest.approx([0.6, 0.7, 0.8])
    assert list(forgetting.y) == pytest.approx([0.0, -1e-2, -1.0])
    with pytest.raises(FrkitInputError, match=r"fr_lora_beta0/en-es-ja/seed0/params\.yaml: no 'ewc_lambda'"):
        strength_figure(collect(load_sweep(path)), "EWC", "ewc_lambda", {"fr_lora_beta": "FR-LoRA"})


def test_summary_counts_the_clock_once_where_runs_overlap_and_skips_the_gaps(tmp_path, tiny_params):
    from frkit.reports.summary import clock_seconds

    path = fixture_sweep(tmp_path, tiny_params)
    # 3 steps of 3599 s learning + 1 s eval: 3 h of wall each. Starts at 0 h, 1 h (beside the first) and 10 h.
    for seed, started in enumerate(["2026-12-01T00:00:00", "2026-12-01T01:00:00", "2026-12-01T10:00:00"]):
        write_result(
            tmp_path / "results", "independent", seed, {"en": 0.7, "es": 0.7, "ja": 0.7}, seconds=3599, started=started
        )
    write_result(tmp_path / "results", "fr_lora", 0, {"en": 0.8, "es": 0.8, "ja": 0.8}, seconds=3599)  # no start
    summarize_sweep(load_sweep(path))
    time = (tmp_path / "results" / "summary.md").read_text().split("## Time")[1].split("##")[0]
    # [0, 3] and [1, 4] overlap into 4 h, [10, 13] adds 3: 7 h on the clock for 9 h of runs (1.3 at a time)
    assert "the 3 runs that recorded their start (environment.json) cover 7.0 h" in time
    assert "1.3 runs at a time on average" in time
    t = pd.Timestamp("2026-12-01")
    h = pd.Timedelta(hours=1)
    assert (
        clock_seconds([t, t + h, t + 10 * h, None], [3 * 3600, 3600, 60, 5]) == 3 * 3600 + 60
    )  # nested, apart, unknown
    assert clock_seconds([], []) == 0.0


def test_summary_costs_the_runs_left_at_their_rows_mean_cpu_time(tmp_path, tiny_params):
    path = fixture_sweep(tmp_path, tiny_params, labels=("independent", "fr_lora", "lora"))
    for seed in range(3):  # 3 steps of 3600 s learning + 1 s eval; 7200 CPU-s each: 6 CPU-hours a run
        write_result(tmp_path / "results", "independent", seed, {"en": 0.7, "es": 0.7, "ja": 0.7}, seconds=3600)
    write_result(tmp_path / "results", "fr_lora", 0, {"en": 0.8, "es": 0.8, "ja": 0.8}, seconds=2700)  # 4.5 CPU-h
    summarize_sweep(load_sweep(path))
    time = (tmp_path / "results" / "summary.md").read_text().split("## Time")[1].split("##")[0]
    wall = (3 * 3 * 3601 + 3 * 2701) / 3600  # 11.253 h
    assert f"The 4 finished runs recorded {wall:.1f} h of wall time (4 of them also CPU time: 22.5 CPU-hours)" in time
    # left: fr_lora seeds 1-2 at fr_lora's mean (2 x 4.5 h) and lora's 3 runs, none finished, at the mean of all
    # runs (81000 s / 4 = 5.625 h each): 9 + 16.875 = 25.875 CPU-hours
    assert "The 5 runs left would take about 25.9 CPU-hours" in time


SWEEP_THAT_DIES = """
import multiprocessing, os, sys, threading, time
from frkit.sweep.worker import stop_with_sweep

def run_process(sweep_pid, pid_file):
    threading.Thread(target=stop_with_sweep, args=(sweep_pid, 0.1), daemon=True).start()
    with open(pid_file + ".tmp", "w") as f:
        f.write(str(os.getpid()))
    os.replace(pid_file + ".tmp", pid_file)
    time.sleep(120)  # a long run

if __name__ == "__main__":
    process = multiprocessing.get_context("spawn").Process(target=run_process, args=(os.getpid(), sys.argv[1]))
    process.start()
    while not os.path.exists(sys.argv[1]):
        time.sleep(0.05)
    os._exit(0)  # the sweep is killed: no cleanup, no signal to its runs
"""


def test_a_runs_process_stops_when_its_sweep_is_gone(tmp_path):
    """`kill` (or a session's end) stops the sweep's process alone; its runs must not go on unseen, holding their
    run folders' locks (seen in a real probe sweep: the runs outlived the sweep, and its restart found them)."""
    import subprocess
    import sys
    import time

    script, pid_file = tmp_path / "sweep.py", tmp_path / "run.pid"
    script.write_text(SWEEP_THAT_DIES)
    subprocess.run([sys.executable, str(script), str(pid_file)], check=True, timeout=120)
    run_pid = int(pid_file.read_text())
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            os.kill(run_pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    os.kill(run_pid, 9)
    raise AssertionError(f"the run's process {run_pid} outlived its sweep by 30 s")
