"""The command line: the only argv parser in rnnlab.

    rnnlab list                                   experiments, one line each, with variants
    rnnlab run NAME[:VARIANT] [key=value ...]     run one experiment into a workdir
    rnnlab show WORKDIR                           a run's headline figures
    rnnlab explain WORKDIR | NAME[:VARIANT] [k=v]  the engine's plan of every layer
    rnnlab sample WORKDIR [--temperature ...]     generate text from a trained char model
    rnnlab viz WORKDIR [--text FILE]              hidden-unit HTML page + feature finder
    rnnlab data tinyshakespeare                   download (checksum-verified, cached) a corpus
    rnnlab compare RUN_DIR... [--by KEY]          learning curves, table, hyperparameters (PNG+HTML)
    rnnlab export WORKDIR [--out FILE]            jax.export the char model's step (params in)
    rnnlab stream WORKDIR [--surprise]            feed stdin as it arrives: continuation/surprise

Every subcommand is a thin shim over a library function; library code never parses flags.
"""

from __future__ import annotations

import argparse
import sys


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="rnnlab", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    sub.add_parser("list", help="list the experiments and their variants")

    run = sub.add_parser("run", help="run an experiment: rnnlab run NAME[:VARIANT] [key=value ...]")
    run.add_argument("experiment", help="NAME or NAME:VARIANT (see `rnnlab list`)")
    run.add_argument(
        "overrides",
        nargs="*",
        metavar="key=value",
        help="config overrides, e.g. model.hidden_size=256; a comma list sweeps",
    )
    run.add_argument(
        "--workdir", help="where the run writes everything (default runs/NAME[-VARIANT])"
    )
    run.add_argument("--data", help="text corpus: a file path or 'tinyshakespeare' (char-rnn)")

    show = sub.add_parser("show", help="print a run's headline figures")
    show.add_argument("workdir")

    explain = sub.add_parser(
        "explain", help="the engine's plan of every layer: of a run, or of an experiment's model"
    )
    explain.add_argument("target", help="a run's WORKDIR, or NAME[:VARIANT] (see `rnnlab list`)")
    explain.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides")

    sample = sub.add_parser("sample", help="generate text from a trained character model")
    sample.add_argument("workdir")
    sample.add_argument("--temperature", type=float, default=1.0)
    sample.add_argument("--prime", default="", help="text that warms up the state first")
    sample.add_argument("--length", type=int, default=2000)
    sample.add_argument(
        "--top-k", type=int, default=0, help="sample among the k likeliest (0: all)"
    )
    sample.add_argument("--argmax", action="store_true", help="greedy: always the likeliest")
    sample.add_argument("--seed", type=int, default=0)
    sample.add_argument(
        "--warmup",
        type=int,
        default=1000,
        help="warm the state on the last N training characters first (0: cold start)",
    )

    viz = sub.add_parser("viz", help="hidden-unit HTML page and feature finder")
    viz.add_argument("workdir")
    viz.add_argument("--text", help="text file to run over (default: a held-out slice)")
    viz.add_argument(
        "--unit",
        type=int,
        action="append",
        help="unit(s) to show (default: the finder's best units)",
    )
    viz.add_argument("--chars", type=int, default=3000, help="how many characters to show")
    viz.add_argument("--out", help="output HTML path (default WORKDIR/viz/index.html)")

    export = sub.add_parser("export", help="jax.export a trained char model's single step")
    export.add_argument("workdir")
    export.add_argument("--out", help="artifact path (default WORKDIR/export/step.jax)")
    export.add_argument("--batch", type=int, default=1, help="the batch the artifact takes")

    stream = sub.add_parser("stream", help="feed stdin to a char model as it arrives")
    stream.add_argument("workdir")
    stream.add_argument(
        "--surprise", action="store_true", help="print -log2 p per character (bits)"
    )
    stream.add_argument("--length", type=int, default=80, help="continuation characters")
    stream.add_argument("--temperature", type=float, default=1.0)
    stream.add_argument("--seed", type=int, default=0)
    stream.add_argument(
        "--warmup",
        type=int,
        default=1000,
        help="warm the state on the last N training characters first (0: cold start)",
    )

    compare = sub.add_parser(
        "compare", help="compare runs: curves coloured by a config key, table, hparams"
    )
    compare.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="workdirs or sweep folders")
    compare.add_argument("--by", help="config key to colour by (default: the first that differs)")
    compare.add_argument("--metric", help="metric to plot (default val_loss)")
    compare.add_argument("--out", help="output folder (default: the folder given / their parent)")

    data = sub.add_parser("data", help="download a named corpus (checksum-verified, cached)")
    data.add_argument("name", help="corpus name, e.g. tinyshakespeare")
    for name in ("list", "run", "explain", "sample", "viz", "stream", "export"):
        if name in sub.choices:  # a cell from a file: usable wherever a run's cell is built
            sub.choices[name].add_argument(
                "--cells",
                action="append",
                default=[],
                metavar="PATH.py",
                help="register the cell in this file under its file stem (repeatable; also "
                "$RNNLAB_CELLS, paths separated by ':')",
            )
    return p


def main(argv: list[str] | None = None) -> int:
    from rnnlab.config import UserError

    parser = _parser()
    # argparse ends a positional list at the first option, so `run NAME --workdir DIR k=v` would
    # leave k=v unparsed: overrides after an option are collected here, anything else is an error
    args, extra = parser.parse_known_args(argv)
    late = [a for a in extra if "=" in a and not a.startswith("-")] if args.command == "run" else []
    bad = [a for a in extra if a not in late]
    if bad:
        parser.error(f"unrecognized arguments: {' '.join(bad)}")
    if late:
        args.overrides = [*args.overrides, *late]
    try:
        if getattr(args, "cells", None):
            from rnnlab import cells

            cells.load_files(args.cells)
        if args.command == "list":
            from rnnlab import registry

            print(registry.format_list())
        elif args.command == "run":
            from rnnlab import registry

            overrides = list(args.overrides)
            if args.data:
                overrides.append(f"data.path={args.data}")
            registry.run(args.experiment, overrides, workdir=args.workdir)
        elif args.command == "explain":
            print("\n".join(_explain(args.target, list(args.overrides))))
        elif args.command == "show":
            from rnnlab import registry

            print(registry.show(args.workdir))
        elif args.command == "sample":
            from rnnlab import sample

            print(
                sample.sample_workdir(
                    args.workdir,
                    temperature=args.temperature,
                    prime=args.prime,
                    length=args.length,
                    top_k=args.top_k,
                    argmax=args.argmax,
                    seed=args.seed,
                    warmup_chars=args.warmup,
                )
            )
        elif args.command == "viz":
            from rnnlab import viz

            path = viz.render_workdir(
                args.workdir,
                text_path=args.text,
                units=args.unit,
                num_chars=args.chars,
                out=args.out,
            )
            print(f"wrote {path}")
        elif args.command == "export":
            from rnnlab import export

            path = export.export_workdir(args.workdir, args.out, batch=args.batch)
            print(f"wrote {path} and {path}.json")
        elif args.command == "stream":
            from rnnlab import stream

            s = stream.Stream(args.workdir, warmup_chars=args.warmup, seed=args.seed)
            stream.serve(
                s,
                stream.read_chunks(sys.stdin),
                sys.stdout,
                surprise=args.surprise,
                length=args.length,
                temperature=args.temperature,
            )
        elif args.command == "compare":
            from rnnlab import compare

            out = compare.compare(args.run_dirs, by=args.by, metric=args.metric, out=args.out)
            print(f"wrote {out['png']} and {out['html']} ({len(out['runs'])} runs)")
            if out["skipped"]:
                print("passed over (no runs in them): " + ", ".join(out["skipped"]))
        elif args.command == "data":
            from rnnlab.data import corpora

            print(corpora.fetch(args.name))
    except (UserError, ValueError, KeyError, FileNotFoundError, RuntimeError) as err:
        # bad input only (rnnlab.config.UserError and the library's bad-input types): a bug's
        # exception type is none of these and keeps its traceback
        msg = err.args[0] if isinstance(err, KeyError) and err.args else err
        print(f"rnnlab {args.command}: error: {msg}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # a second Ctrl-C, or one outside training: no traceback
        print(f"rnnlab {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as err:
        # rnnlab.train.Preempted (SIGTERM/SIGINT during training): its one line, 128 + signal;
        # looked up only here, so that `rnnlab list` does not import JAX
        preempted = getattr(sys.modules.get("rnnlab.train"), "Preempted", None)
        if preempted is None or not isinstance(err, preempted):
            raise
        print(f"rnnlab {args.command}: {err}", file=sys.stderr)
        return err.exit_code
    return 0


def _explain(target: str, overrides: list[str]) -> list[str]:
    """The plan lines of a run's workdir (its plan.json), or of experiment ``target``'s model on
    its first training batch (nothing is trained or compiled)."""
    import pathlib

    from rnnlab.engine import explainer

    if pathlib.Path(target, "plan.json").is_file():
        if overrides:
            raise ValueError(f"a workdir's plan takes no overrides, got {overrides}")
        return explainer.explain_workdir(target)
    if pathlib.Path(target).exists() or "/" in target:  # a path, not an experiment name
        return explainer.explain_workdir(target)  # names what is missing
    from rnnlab import data, models, registry, train

    module, variant = registry.parse_spec(target)
    name = target.split(":")[0].replace("_", "-")
    config = registry.resolve(module, module.get_config(variant), overrides, name=name)
    dataset = data.make(config.data.name, **train.data_kwargs(config))
    model = models.build(config.model, dict(dataset.model_spec))
    first, _ = dataset.train_batch(0)
    return explainer.explain(model, first)


def entry() -> None:
    """The ``rnnlab`` console script: :func:`main`, re-started under tcmalloc first when
    ``RNNLAB_ALLOCATOR=tcmalloc`` asks for it (refused when it is not installed).

    By default ``import rnnlab`` has tuned glibc's malloc already, as fast here as tcmalloc
    (:mod:`rnnlab.devices`, BENCHMARKS.md); ``RNNLAB_ALLOCATOR=system`` leaves glibc's defaults.
    See :func:`rnnlab.devices.reexec_with_tcmalloc`. Tests call :func:`main` directly.
    """
    from rnnlab import devices

    devices.reexec_with_tcmalloc([sys.executable, "-m", "rnnlab.cli", *sys.argv[1:]])
    sys.exit(main())


if __name__ == "__main__":
    sys.exit(main())
