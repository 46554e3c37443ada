"""The ``pyforge`` command line: Caffe's actions and flag names on top of :mod:`pyforge.api`.

Flags are accepted as Caffe (gflags) accepts them: ``--flag=value``, ``--flag value``,
``-flag=value`` and ``-flag value``.
"""

from __future__ import annotations

import sys
import traceback
from collections.abc import Sequence

import click
import numpy as np

from . import api, config
from .commands import add_alias, debug_option, register_all, threads_option
from .errors import (
    EXIT_ERROR,
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    PyforgeError,
    user_code_error_line,
)
from .log import configure, get_logger
from .signals import ignore_interrupts, terminate_as_interrupt

#: Long flags that may also be written with a single dash, as gflags allows.
SINGLE_DASH_FLAGS = {
    "gpu", "solver", "model", "phase", "level", "stage", "snapshot", "weights", "iterations",
    "sigint_effect", "sighup_effect", "backend", "debug", "help", "force", "allow_nonfinite",
    "threads", "metrics", "early_stop_metric", "early_stop_patience", "early_stop_mode",
    "keep_best",
}


def normalize_argv(argv: Sequence[str]) -> list[str]:
    """Rewrite gflags' ``-flag[=value]`` spellings into click's ``--flag[=value]``."""
    out = []
    for arg in argv:
        if arg.startswith("-") and not arg.startswith("--") and len(arg) > 2:
            name = arg[1:].split("=", 1)[0]
            if name in SINGLE_DASH_FLAGS:
                arg = "-" + arg
        out.append(arg)
    return out




@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="pyforge", prog_name="pyforge")
@debug_option
def cli(debug: bool) -> None:
    """pyforge: train and run Caffe models (solver/net prototxt, LMDB, .caffemodel) on the CPU.

    train, test, time and device_query are Caffe's actions, with Caffe's flags.
    """


@cli.command("train")
@click.argument("solver_file", required=False, metavar="[SOLVER]")
@click.option("--solver", default="", help="The solver definition protocol buffer text file.")
@click.option("--weights", default="",
              help="Pretrained weights to initialize fine-tuning from (comma-separated "
                   ".caffemodel files). Cannot be combined with --snapshot.")
@click.option("--snapshot", default="",
              help="A .solverstate snapshot to resume training from.")
@click.option("--level", default=0, type=int, help="Optional; network level.")
@click.option("--stage", default="",
              help="Optional; network stages (not to be confused with phase), separated by ','.")
@click.option("--sigint_effect", default=None,
              help="Action on SIGINT (Ctrl-C) and SIGTERM: snapshot, stop or none. Default: "
                   "finish the iteration, snapshot and exit 0 (Caffe's default is stop).")
@click.option("--sighup_effect", default="snapshot", show_default=True,
              help="Action on SIGHUP: snapshot, stop or none.")
@click.option("--gpu", default="", help="Accepted for compatibility; pyforge runs on the CPU.")
@click.option("--force", is_flag=True,
              help="Resume even from a snapshot of another solver type or net.")
@click.option("--allow_nonfinite", is_flag=True,
              help="Keep training when the loss, a gradient or a weight is NaN or infinite "
                   "(by default training stops there and names the first layer affected).")
@click.option("--metrics", default="",
              help="Write one JSON line per display and test pass here (default "
                   "<snapshot_prefix>.metrics.jsonl).")
@click.option("--early_stop_metric", default="",
              help="Test output to watch for early stopping / --keep_best (default accuracy).")
@click.option("--early_stop_patience", default=0, type=int,
              help="Stop after this many test passes without improvement (0: never).")
@click.option("--early_stop_mode", type=click.Choice(["max", "min"]), default=None,
              help="Whether larger (max) or smaller (min) is better; default by the name.")
@click.option("--keep_best", is_flag=True,
              help="Write <snapshot_prefix>_best.caffemodel whenever the watched output "
                   "improves.")
@threads_option
@debug_option
def train_cmd(solver_file, solver, weights, snapshot, level, stage, sigint_effect,
              sighup_effect, gpu, force, allow_nonfinite, metrics, early_stop_metric,
              early_stop_patience, early_stop_mode, keep_best, debug) -> None:
    """Train or fine-tune a model from a solver prototxt."""
    if solver_file and solver and solver_file != solver:
        raise click.UsageError("give the solver either as an argument or with --solver, not both")
    def overrides(param) -> None:
        # The flags become the pyforge-only solver fields, so they show in the solver dump.
        if early_stop_metric:
            param.early_stop_metric = early_stop_metric
        if early_stop_patience:
            param.early_stop_patience = early_stop_patience
        if early_stop_mode:
            param.early_stop_mode = early_stop_mode
        if keep_best:
            param.keep_best = True
        if metrics:
            param.metrics_file = metrics

    api.train(solver_file or solver, weights=weights, snapshot=snapshot, level=level,
              stage=stage, gpu=gpu, sigint_effect=sigint_effect, sighup_effect=sighup_effect,
              force=force, allow_nonfinite=allow_nonfinite, overrides=overrides)


@cli.command("test")
@click.option("--model", default="", help="The model definition protocol buffer text file.")
@click.option("--weights", default="", help="The trained weights (.caffemodel) to score.")
@click.option("--iterations", default=50, type=int, show_default=True,
              help="The number of iterations to run.")
@click.option("--level", default=0, type=int, help="Optional; network level.")
@click.option("--stage", default="", help="Optional; network stages, separated by ','.")
@click.option("--gpu", default="", help="Accepted for compatibility; pyforge runs on the CPU.")
@threads_option
@debug_option
def test_cmd(model, weights, iterations, level, stage, gpu, debug) -> None:
    """Score a model: run its TEST phase and average its outputs."""
    api.test(model, weights, iterations=iterations, level=level, stage=stage, gpu=gpu)


@cli.command("time")
@click.option("--model", default="", help="The model definition protocol buffer text file.")
@click.option("--iterations", default=50, type=int, show_default=True,
              help="The number of iterations to run.")
@click.option("--phase", default="", help="TRAIN (default) or TEST.")
@click.option("--level", default=0, type=int, help="Optional; network level.")
@click.option("--stage", default="", help="Optional; network stages, separated by ','.")
@click.option("--gpu", default="", help="Accepted for compatibility; pyforge runs on the CPU.")
@threads_option
@debug_option
def time_cmd(model, iterations, phase, level, stage, gpu, debug) -> None:
    """Benchmark forward and backward, layer by layer."""
    api.time_net(model, iterations=iterations, phase=phase, level=level, stage=stage, gpu=gpu)


@cli.command("device_query")
@click.option("--gpu", default="", help="Accepted for compatibility; pyforge runs on the CPU.")
@debug_option
def device_query_cmd(gpu, debug) -> None:
    """Show the CPU, threads, BLAS and library versions pyforge computes with."""
    api.device_query(gpu)


# Caffe spells device_query with an underscore; accept the dashed form too.
add_alias(cli, device_query_cmd, "device-query")
register_all(cli)


def _interrupted(in_process: bool) -> int:
    """Report an interrupt. The process then ignores further Ctrl-C presses while it exits;
    a caller that passed ``argv`` (tests, scripts) gets its handlers back."""
    restore = ignore_interrupts()
    sys.stderr.write("pyforge: interrupted\n")
    if in_process:
        restore()
    return EXIT_INTERRUPTED


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: run a command; user errors become one line on stderr and a non-zero exit."""
    args = normalize_argv(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args or config.load().debug
    configure()
    _, threads_note = config.threads_from_env()
    if threads_note:
        get_logger().warning("%s", threads_note)
    try:
        # Overflow in a diverging run is reported by pyforge's own divergence check, with the
        # layer it started in; NumPy's per-operation warnings would only add noise.
        with np.errstate(all="ignore"), terminate_as_interrupt():
            rv = cli.main(args=args, prog_name="pyforge", standalone_mode=False)
        # Without standalone mode click returns (rather than raises) the code of an Exit.
        if isinstance(rv, int):
            return rv
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.ClickException as exc:
        # One line, as for every other error; click's usage block would add three.
        help_hint = f" (see '{exc.ctx.command_path} --help')" if getattr(exc, "ctx", None) \
            else ""
        sys.stderr.write(f"pyforge: error: {exc.format_message().rstrip('.')}{help_hint}\n")
        return EXIT_USAGE if isinstance(exc, click.UsageError) else EXIT_ERROR
    except click.Abort:  # click's form of KeyboardInterrupt (a second Ctrl-C)
        return _interrupted(in_process=argv is not None)
    except PyforgeError as exc:
        if debug:
            traceback.print_exc()
        sys.stderr.write(f"pyforge: error: {exc.message}\n")
        if exc.detail:
            sys.stderr.write(exc.detail.rstrip("\n") + "\n")
        return exc.exit_code
    except KeyboardInterrupt:
        return _interrupted(in_process=argv is not None)
    except Exception as exc:  # an internal error: say so in one line unless --debug
        if debug:
            traceback.print_exc()
        elif user_code_error_line(exc):  # raised by the user's Python layer: their error
            sys.stderr.write(f"pyforge: error: {user_code_error_line(exc)}\n")
        else:
            sys.stderr.write(f"pyforge: internal error: {type(exc).__name__}: {exc} "
                             "(run with --debug for the traceback)\n")
        return EXIT_ERROR
    return 0


if __name__ == "__main__":
    sys.exit(main())
