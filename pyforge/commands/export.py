"""``pyforge export``: a deploy net and its weights to ONNX, checked in ONNX Runtime against
pyforge's own forward (see :mod:`pyforge.export`)."""

from __future__ import annotations

import click

from . import debug_option, threads_option


@click.command("export")
@click.option("--model", default="", help="The deploy net definition (prototxt).")
@click.option("--weights", default="",
              help="The trained weights (.caffemodel or .caffemodel.h5).")
@click.option("--output", default="", help="The ONNX file to write (e.g. model.onnx).")
@click.option("--opset", default=None, type=int,
              help="ONNX operator set to target (default 17; 13 or later).")
@click.option("--dynamic-batch", "dynamic_batch", is_flag=True,
              help="Make axis 0 of the inputs and outputs a symbolic batch size N.")
@click.option("--no-check", "no_check", is_flag=True,
              help="Skip the check that runs the model in ONNX Runtime and compares every "
                   "output with pyforge's forward.")
@click.option("--level", default=0, type=int, help="Optional; network level.")
@click.option("--stage", default="", help="Optional; network stages, separated by ','.")
@threads_option
@debug_option
def export_cmd(model, weights, output, opset, dynamic_batch, no_check, level, stage,
               debug) -> None:
    """Export a deploy net with its weights to ONNX, and prove its outputs equal pyforge's."""
    from ..export import DEFAULT_OPSET, export_onnx

    export_onnx(model, weights, output, opset=DEFAULT_OPSET if opset is None else opset,
                dynamic_batch=dynamic_batch, check=not no_check, level=level, stage=stage)


def register(group: click.Group) -> None:
    group.add_command(export_cmd)
