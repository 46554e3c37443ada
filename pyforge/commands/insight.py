"""Training insight: parse-log, plot, lr and diagnose (the logic is in pyforge.insight)."""

from __future__ import annotations

import click

from ..log import get_logger
from . import debug_option, existing_path


@click.command("parse-log")
@click.argument("log", type=existing_path)
@click.argument("outdir")
@click.option("--delimiter", default=",", show_default=True, help="Column delimiter.")
@debug_option
def parse_log_cmd(log, outdir, delimiter, debug) -> None:
    """Write LOG's training and test tables as OUTDIR/<log name>.train and .test.

    LOG is a Caffe or pyforge glog log (plain or .gz; Caffe before and after 1.0) or a
    pyforge metrics JSONL file. The tables are those of Caffe's tools/extra/parse_log.py:
    NumIters, Seconds, LearningRate, then one column per net output.
    """
    from ..insight.parse_log import write_tables

    train_path, test_path, parsed = write_tables(log, outdir, delimiter)
    get_logger().info("Wrote %s (%d rows) and %s (%d rows)", train_path, len(parsed.train),
                      test_path, len(parsed.test))


@click.command("plot")
@click.argument("logs", nargs=-1, required=True, type=existing_path,
                metavar="LOG_OR_JSONL [MORE...]")
@click.option("-o", "--output", default="curves.png", show_default=True,
              help="The PNG file to write.")
@click.option("--title", default=None, help="The figure title (default: the file names).")
@click.option("--log-loss", is_flag=True, help="Draw the loss on a log scale.")
@debug_option
def plot_cmd(logs, output, title, log_loss, debug) -> None:
    """Plot loss, test outputs and learning rate against iterations, one colour per run."""
    from ..insight.plot import plot_files

    plot_files(logs, output, title=title, log_loss=log_loss)
    get_logger().info("Wrote %s", output)


@click.command("lr")
@click.argument("solver", type=existing_path)
@click.option("--iters", default="", metavar="A:B",
              help="Iterations A to B-1 (default: 0 to max_iter).")
@click.option("--every", default=0, type=int,
              help="Print every N-th iteration (default: the solver's display).")
@click.option("-o", "--output", default="", help="Also draw the schedule into this PNG.")
@debug_option
def lr_cmd(solver, iters, every, output, debug) -> None:
    """Print (and optionally plot) SOLVER's learning-rate schedule without training.

    Warns about lr parameters the policy ignores, or reads but leaves at 0.
    """
    from ..insight.lr_schedule import lr_command

    _, lines = lr_command(solver, iters=iters, every=every, output=output or None)
    for line in lines:
        click.echo(line)
    if output:
        get_logger().info("Wrote %s", output)


@click.command("diagnose")
@click.argument("model", metavar="SOLVER_OR_NET", type=existing_path)
@click.option("--weights", default=None, type=existing_path,
              help="Initial weights (.caffemodel) instead of fillers.")
@click.option("--iters", default=10, type=int, show_default=True,
              help="Training iterations to look at.")
@click.option("--lr", default=0.01, type=float, show_default=True,
              help="Step size of the plain SGD steps for a bare net (a solver uses its own).")
@click.option("-o", "--output", "outdir", default="diagnose_report", show_default=True,
              help="The folder for layers.csv, params.csv, histograms.png and findings.txt.")
@debug_option
def diagnose_cmd(model, weights, iters, lr, outdir, debug) -> None:
    """Train a few iterations and report per-layer activation, gradient and update statistics,
    flagging dead ReLUs, saturated units and vanishing or exploding gradients."""
    from ..insight.diagnose import diagnose, findings_text, log_findings

    report = diagnose(model, weights=weights or "", iterations=iters, lr=lr, output_dir=outdir)
    click.echo(findings_text(report), nl=False)
    log_findings(report)


def register(group: click.Group) -> None:
    for command in (parse_log_cmd, plot_cmd, lr_cmd, diagnose_cmd):
        group.add_command(command)
