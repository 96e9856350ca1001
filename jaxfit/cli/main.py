"""``python -m jaxfit``: run a config, print its results, write a run directory.

Exit codes: 0 the run completed (whatever the fits' statuses); 1 with ``--strict``
when some fit did not converge; 2 a user error (one line on stderr); 130
interrupted.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jaxfit.errors import JaxfitError
from jaxfit.output.jsonout import dumps

if TYPE_CHECKING:  # imported lazily at run time: start-up cost
    from jaxfit.config import Config
    from jaxfit.output.results import FitResult
    from jaxfit.plan.plans import BatchPlan
    from jaxfit.run.batching import Chunk

USER_ERROR, STRICT_FAILED, INTERRUPTED = 2, 1, 130


class UsageError(JaxfitError):
    """A bad command line (argparse's own errors also exit 2)."""


def _run_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m jaxfit",
        description="JIT-compiled batch fits on JAX: the backpropagation seed, a network of any width or "
        "your own model, on your data, one fit or millions, by gradient descent or Levenberg-Marquardt, "
        "with standard errors. "
        "Other commands: plot, schema, export, merge, serve, bench, startup (python -m jaxfit COMMAND --help).",
    )
    p.add_argument("--config", "-c", help="YAML config (default: the seed's run)")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config field, e.g. train.learning_rate=0.05 (repeatable)",
    )
    p.add_argument(
        "--format",
        choices=("text", "json", "csv"),
        default="text",
        help="stdout format (csv: a single fit's trace or a batch's per-fit table)",
    )
    p.add_argument("--output", "-o", type=Path, help="write a run directory here")
    p.add_argument(
        "--plot",
        type=Path,
        metavar="DIR",
        help="draw the seed's pictures (single fit) or batch diagnostics into DIR (needs the plot extra)",
    )
    p.add_argument("--plot-format", choices=("png", "svg"), default="png", help="picture format for --plot")
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty --output directory")
    p.add_argument(
        "--resume", action="store_true", help="continue an interrupted batch in --output (same config)"
    )
    p.add_argument("--devices", type=int, help="use at most N local devices for a batch")
    p.add_argument("--strict", action="store_true", help="exit 1 when any fit did not converge")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress output")
    p.add_argument(
        "--no-cache",
        action="store_true",
        help="do not use the persistent compilation cache (see JAXFIT_CACHE_DIR)",
    )
    dist = p.add_argument_group("many hosts (jax.distributed)")
    dist.add_argument(
        "--distributed",
        action="store_true",
        help="call jax.distributed.initialize(); each process runs its slice of the batch into the shared --output",
    )
    dist.add_argument(
        "--coordinator", metavar="HOST:PORT", help="coordinator address (default: detected, e.g. from SLURM)"
    )
    dist.add_argument(
        "--num-processes", type=int, metavar="N", help="number of processes (default: detected)"
    )
    dist.add_argument("--process-id", type=int, metavar="I", help="this process's index (default: detected)")
    dist.add_argument(
        "--merge-timeout",
        type=float,
        default=3600.0,
        metavar="S",
        help="how long process 0 waits for the others' parts before merging (default 3600)",
    )
    return p


def _configure_jax(args: argparse.Namespace, batch: bool) -> None:
    """Before JAX starts: one CPU device per core for batches (XLA:CPU runs one block
    per device at a time) unless the environment says otherwise; the persistent
    compilation cache for batches; ``jax.distributed`` when asked."""
    if batch:  # through JAX's config: JAX read its environment when it was imported
        from jaxfit import use_every_core

        use_every_core()
    from jaxfit.run import caches as cache

    if args.no_cache:
        cache.keep_off()  # nor the library's default
    elif batch:
        # single fits keep their own whole executable instead (see jaxfit.cli.warm)
        try:
            cache.enable()
        except OSError as err:
            print(f"jaxfit: warning: compilation cache off: {err}", file=sys.stderr)
    if args.distributed:
        import jax

        jax.distributed.initialize(
            coordinator_address=args.coordinator, num_processes=args.num_processes, process_id=args.process_id
        )


def _print_fit(args: argparse.Namespace, result: FitResult, config: dict[str, Any], source: str) -> int:
    from jaxfit.core.status import Status
    from jaxfit.output.report import fit_csv, fit_text

    if args.format == "json":
        print(dumps(result.to_dict()))
    elif args.format == "csv":
        sys.stdout.write(fit_csv(result))
    else:
        print(fit_text(result, config, source))
    return STRICT_FAILED if args.strict and result.status != Status.CONVERGED else 0


def _report_plots(paths: Sequence[Path]) -> None:
    print(f"jaxfit: wrote {len(paths)} picture(s): " + ", ".join(str(p) for p in paths), file=sys.stderr)


def _warm_digest(args: argparse.Namespace) -> str | None:
    """This invocation's warm-start key, read once before the config is loaded (None:
    warm start off, or the config file unreadable — ``load_config`` then says why)."""
    if args.no_cache or args.distributed:
        return None
    from jaxfit.cli import warm

    return warm.key(args.config, args.overrides)


def _warm_fit(args: argparse.Namespace, digest: str | None, source: str) -> int | None:
    """The warm start: a single fit seen before, from its saved executable (None: not warm)."""
    if digest is None or args.output or args.plot:
        return None
    from jaxfit.cli import warm

    saved = warm.load(digest)
    if saved is None:
        return None
    config, outputs = saved
    if config["report"].get("intervals") == "profile":  # refits: not in the saved outputs
        return None
    return _print_fit(args, _result_of(config, outputs), config, source)


def _result_of(config: dict[str, Any], outputs: dict[str, Any]) -> FitResult:
    """A saved fit's result from its resolved config (a plain dict) and named outputs."""
    from jaxfit.output.results import FitFacts, fit_result

    facts = FitFacts(
        tuple(config["train"]["trainable"]),
        config["params"],
        config["precision"],
        config["report"]["confidence"],
    )
    return fit_result(facts, outputs)


def _fit_single(args: argparse.Namespace, config: Config, source: str, digest: str | None) -> int:
    from jaxfit.output.report import fit_csv
    from jaxfit.plan.lowering import plan_fit
    from jaxfit.run.single import fit_and_executable

    plan = plan_fit(config)
    result, compiled, inputs, outputs = fit_and_executable(plan)
    plain = config.model_dump(mode="json")
    code = _print_fit(args, result, plain, source)
    if args.plot:
        from jaxfit.output.plots import fit_plots

        _report_plots(fit_plots(result, plan, args.plot, args.plot_format))
    if args.output:
        from jaxfit.config import dump_yaml
        from jaxfit.output.atomic import write_atomic, write_json
        from jaxfit.output.rundir import environment

        write_atomic(args.output / "config.yaml", dump_yaml(config))
        write_atomic(args.output / "trace.csv", fit_csv(result))
        write_json(args.output / "result.json", result.to_dict())
        write_json(
            args.output / "env.json",
            environment(precision=config.precision, compile_s=result.compile_s, run_s=result.run_s),
        )
    if digest is not None:
        from jaxfit.cli import warm

        warm.save(digest, plain, compiled, inputs, outputs)
    return code


def _resume_command(args: argparse.Namespace) -> str:
    """The command line that continues this run."""
    parts = ["python -m jaxfit", *(["--config", args.config] if args.config else [])]
    parts += [f"--set {o}" for o in args.overrides]
    return " ".join([*parts, "--output", str(args.output), "--resume"])


def _join_processes(args: argparse.Namespace, n: int) -> int | None:
    """After a ``--distributed`` run: wait for every process; process 0 then waits for
    every part. Returns an exit code when this process is done, None to merge."""
    import jax

    from jaxfit.output import rundir

    me = jax.process_index()
    jax.distributed.shutdown()  # waits for every process to finish its slice
    if me != 0:
        print(f"jaxfit: process {me} finished its share; process 0 merges {args.output}", file=sys.stderr)
        return 0
    if not rundir.wait_complete(args.output, n, args.merge_timeout):
        print(
            f"jaxfit: error: parts of {args.output} are still missing after {args.merge_timeout:.0f} s; merge later with: python -m jaxfit merge {args.output}",
            file=sys.stderr,
        )
        return USER_ERROR
    return None


def _print_batch(args: argparse.Namespace, result: Any, summary: dict[str, Any], source: str) -> None:
    if args.format == "json":
        print(dumps(summary))
    elif args.format == "csv":
        from jaxfit.output.report import csv_text
        from jaxfit.output.rundir import per_fit_columns

        sys.stdout.write(csv_text(per_fit_columns(result)))
    else:
        from jaxfit.output.report import batch_text

        print(batch_text(result, source))


def _fit_batch(args: argparse.Namespace, config: Config, plan: BatchPlan, source: str) -> int:
    import time

    from jaxfit.cli.progress import Progress
    from jaxfit.output import rundir
    from jaxfit.plan.lowering import config_hash, dump_yaml
    from jaxfit.run.batch import chunk_columns, facts_of, run_batch

    t0 = time.perf_counter()
    n = plan.fits
    ranges = [(0, n)]
    if args.output:
        ranges = rundir.start(args.output, n, config_hash(config), dump_yaml(config), args.resume)
    if args.distributed:
        import jax

        ranges = rundir.share(ranges, n, jax.process_index(), jax.process_count())
    if args.output and not ranges:
        print(f"jaxfit: {args.output} is already complete; its summary:", file=sys.stderr)
        sys.stdout.write((args.output / "summary.json").read_text())
        return 0
    progress = Progress(n, enabled=not args.quiet)
    done = n - sum(hi - lo for lo, hi in ranges)

    def on_chunk(first: int, chunk: Chunk) -> None:
        nonlocal done
        if args.output:
            rundir.write_part(args.output, first, chunk_columns(chunk))
        done += len(chunk.loss)
        progress.update(done)

    try:
        result = run_batch(plan, devices=args.devices, ranges=ranges, on_chunk=on_chunk)
    except KeyboardInterrupt:
        progress.close()
        if args.output:
            print(
                f"jaxfit: interrupted after {done:,} of {n:,} fits; finished chunks are saved. Resume with: {_resume_command(args)}",
                file=sys.stderr,
            )
        raise
    progress.close()
    if args.distributed and (code := _join_processes(args, n)) is not None:
        return code
    if args.output:
        if ranges != [(0, n)]:  # some fits came from an earlier run or another process
            result = rundir.read_parts(args.output, plan, facts_of(result))
        rundir.finish(args.output, plan, result, time.perf_counter() - t0)
    summary = result.summary()
    if args.plot:
        from jaxfit.output.plots import batch_plots, fits_plots

        drawn = batch_plots(result, args.plot, args.plot_format)
        if plan.labels is not None:  # grouped data: the data sets and their fits
            drawn += fits_plots(plan, result, args.plot, args.plot_format)
        _report_plots(drawn)
    _print_batch(args, result, summary, source)
    converged = summary["status_counts"]["converged"] == summary["fits"]
    return STRICT_FAILED if args.strict and not converged else 0


def _fit_global(args: argparse.Namespace, config: Config, source: str) -> int:
    """A config with ``shared:``: its data sets as one fit (``jaxfit.run.globalrun``)."""
    import time

    from jaxfit.core.status import Status
    from jaxfit.run import globalrun

    t0 = time.perf_counter()
    fit = globalrun.fit_config(config, args.devices)
    seconds = time.perf_counter() - t0
    if args.output:
        globalrun.write(args.output, config, fit, seconds)
    if args.format == "json":
        print(dumps(globalrun.summary(fit, seconds)))
    elif args.format == "csv":
        from jaxfit.output.report import csv_text

        sys.stdout.write(csv_text(globalrun.per_set_columns(fit, config)))
    else:
        print(f"{source}\n{fit.report(config.data.table.labels)}")
    return STRICT_FAILED if args.strict and fit.status != Status.CONVERGED else 0


def _keep_freed_memory() -> None:
    """This process (not a library user's): let glibc keep large freed blocks for reuse
    instead of unmapping them, so each batch's result arrays do not page-fault afresh
    (about 5 ms of a 20 ms million-fit sweep here). No-op off glibc."""
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return
    m_trim_threshold, m_mmap_threshold = -1, -3
    mallopt(m_mmap_threshold, 1 << 30)
    mallopt(m_trim_threshold, 1 << 30)


def _on_sigterm(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def run(argv: Sequence[str]) -> int:
    args = _run_parser().parse_args(argv)
    # this process loads no pydantic plugins: skips an entry-point scan at start-up
    os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")
    source = args.config or "<seed defaults>"
    digest = _warm_digest(args)
    warm_code = _warm_fit(args, digest, source)
    if warm_code is not None:
        return warm_code
    from jaxfit.config import load_config

    config = load_config(args.config, args.overrides)
    if args.devices is not None and args.devices < 1:
        raise UsageError("--devices: must be at least 1")
    if args.plot:
        from jaxfit.output.plots import PlotError, require

        try:
            require()
        except PlotError as err:
            raise UsageError(f"--plot: {err}") from None
    if args.resume and not args.output:
        raise UsageError("--resume needs --output DIR (the run to continue)")
    if config.shared and (args.resume or args.distributed):
        raise UsageError(
            f"--{'resume' if args.resume else 'distributed'}: a global fit (shared:) is one fit; run it whole"
        )
    if config.shared and args.plot:
        raise UsageError(
            "--plot: a global fit (shared:) draws no pictures yet; its fits.csv has every data set's values"
        )
    if args.resume and not config.is_batch:
        raise UsageError("--resume applies to batch runs (a config with a batch: section)")
    if args.distributed and (not config.is_batch or not args.output):
        raise UsageError("--distributed needs a batch config and a shared --output DIR")
    if args.output:
        from jaxfit.output.rundir import check_output, prepare

        check_output(args.output, args.overwrite, args.resume)
        if args.distributed:
            # every process, before jax.distributed.initialize() (which waits for all of
            # them): none has written into the shared directory yet
            prepare(args.output, args.overwrite, args.resume)
    _configure_jax(args, config.is_batch)
    if config.shared:
        if args.output:
            prepare(args.output, args.overwrite)
        return _fit_global(args, config, source)
    if not config.is_batch:
        if args.output and not args.distributed:
            prepare(args.output, args.overwrite, args.resume)
        return _fit_single(args, config, source, digest)
    from jaxfit.plan.lowering import plan_batch
    from jaxfit.run.batch import preflight

    plan = plan_batch(config)
    preflight(plan, args.devices)  # devices and memory, before anything is written
    if args.output and not args.distributed:
        prepare(args.output, args.overwrite, args.resume)
    return _fit_batch(args, config, plan, source)


def schema(argv: Sequence[str]) -> int:
    argparse.ArgumentParser(
        prog="python -m jaxfit schema", description="Print the config's JSON Schema."
    ).parse_args(argv)
    from jaxfit.config import json_schema

    print(dumps(json_schema(), indent=2))
    return 0


def bench(argv: Sequence[str]) -> int:
    from jaxfit.benchmarks.workloads import main as bench_main

    return bench_main(argv)


def merge(argv: Sequence[str]) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m jaxfit merge",
        description="Merge the parts of a (multi-process) batch run directory into its per-fit table and summary.",
    )
    ap.add_argument("output", type=Path, help="the run directory")
    ap.add_argument("--format", choices=("text", "json"), default="text")
    args = ap.parse_args(argv)
    from jaxfit.output import rundir
    from jaxfit.output.report import batch_text
    from jaxfit.run.batch import RunFacts

    if not (args.output / "manifest.json").exists():
        raise UsageError(f"{args.output}: not a jaxfit batch run directory (no manifest.json)")
    from jaxfit.plan.lowering import load_config, plan_batch

    config = load_config(args.output / "config.yaml")
    n = config.fits
    gaps = rundir.missing(args.output, n)
    if gaps and not (args.output / "summary.json").exists():
        todo = sum(hi - lo for lo, hi in gaps)
        raise UsageError(
            f"{args.output}: {todo:,} of {n:,} fits have no finished part yet; finish them with --resume"
        )
    if (args.output / "summary.json").exists():
        sys.stdout.write((args.output / "summary.json").read_text())
        return 0
    plan = plan_batch(config)
    result = rundir.read_parts(args.output, plan, RunFacts(0, "", 0, 0.0, 0.0))
    rundir.finish(args.output, plan, result, 0.0)
    print(dumps(result.summary()) if args.format == "json" else batch_text(result, str(args.output)))
    return 0


def export(argv: Sequence[str]) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m jaxfit export",
        description="Serialise the compiled step and batched fit of a config with jax.export.",
    )
    ap.add_argument("--config", "-c", help="YAML config (default: the seed's run)")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--output", "-o", type=Path, required=True, help="file to write, e.g. step.jaxexport")
    args = ap.parse_args(argv)
    from jaxfit.config import load_config
    from jaxfit.run.export import export_config

    config = load_config(args.config, args.overrides)
    if config.data.grouped:
        raise UsageError(
            f"{args.config}: data.group: export compiles one fit's step for the model; "
            "give a config without group (the exported fit_many then takes many starts)"
        )
    size = export_config(config, args.output)
    print(
        f"jaxfit: wrote {args.output} ({size:,} bytes): step and batched fit for {', '.join(config.train.trainable)} ({config.precision})"
    )
    return 0


def plot(argv: Sequence[str]) -> int:
    """``python -m jaxfit plot --config X -o DIR``: run quietly and draw the pictures;
    ``--run RUN``: draw a finished batch's pictures from its run directory, no fitting."""
    ap = argparse.ArgumentParser(
        prog="python -m jaxfit plot",
        description="Run a config and draw its pictures into a folder, or draw a finished run's (--run).",
    )
    ap.add_argument("--config", "-c")
    ap.add_argument("--run", type=Path, help="a finished batch's run directory (--output of a run): no refit")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--output", "-o", type=Path, required=True, help="folder for the pictures")
    ap.add_argument("--format", choices=("png", "svg"), default="png")
    ap.add_argument(
        "--sets", type=int, default=6, help="data sets per picture of a grouped batch (default 6)"
    )
    args = ap.parse_args(argv)
    if args.run is not None:
        return _plot_run(args)
    extra = ["--config", args.config] if args.config else []
    for item in args.overrides:
        extra += ["--set", item]
    with open(os.devnull, "w") as sink:
        saved, sys.stdout = sys.stdout, sink
        try:
            return run([*extra, "--plot", str(args.output), "--plot-format", args.format, "--quiet"])
        finally:
            sys.stdout = saved


def _plot_run(args: argparse.Namespace) -> int:
    from jaxfit.config import load_config
    from jaxfit.output import rundir
    from jaxfit.output.plots import PlotError, batch_plots, fits_plots, require
    from jaxfit.plan.lowering import plan_batch

    if args.config or args.overrides:
        raise UsageError("plot: --run draws a finished run as it is; give no --config or --set with it")
    try:
        require()
    except PlotError as err:
        raise UsageError(f"plot: {err}") from None
    config_path = args.run / "config.yaml"
    if not config_path.is_file():
        raise UsageError(f"plot: {args.run}: not a run directory (no config.yaml)")
    config = load_config(str(config_path))
    if not config.is_batch:
        raise UsageError(f"plot: {args.run}: a single fit's run; draw it with --config {config_path}")
    plan = plan_batch(config)
    result = rundir.read_finished(args.run, plan)
    args.output.mkdir(parents=True, exist_ok=True)
    drawn = batch_plots(result, args.output, args.format)
    if plan.labels is not None:
        drawn += fits_plots(plan, result, args.output, args.format, args.sets)
    _report_plots(drawn)
    return 0


def serve(argv: Sequence[str]) -> int:
    from jaxfit.service.app import serve as serve_main

    return serve_main(list(argv))


def startup(argv: Sequence[str]) -> int:
    from jaxfit.benchmarks.startup import main as startup_main

    return startup_main(argv)


COMMANDS = {
    "schema": schema,
    "bench": bench,
    "merge": merge,
    "export": export,
    "startup": startup,
    "plot": plot,
    "serve": serve,
}


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    import signal

    signal.signal(signal.SIGTERM, _on_sigterm)
    _keep_freed_memory()
    command = COMMANDS.get(argv[0]) if argv else None
    try:
        return command(argv[1:]) if command else run(argv)
    except JaxfitError as err:
        print(f"jaxfit: error: {err}", file=sys.stderr)
        return USER_ERROR
    except KeyboardInterrupt:
        print("jaxfit: interrupted", file=sys.stderr)
        return INTERRUPTED
    except BrokenPipeError:
        return 0
