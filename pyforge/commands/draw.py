"""``pyforge draw-net``: Caffe's ``python/draw_net.py`` (the drawing is in pyforge.insight.draw)."""

from __future__ import annotations

import click

from ..log import get_logger
from . import add_alias, debug_option, existing_path


@click.command("draw-net")
@click.argument("net", type=existing_path)
@click.argument("output")
@click.option("--rankdir", default="LR", show_default=True,
              type=click.Choice(["LR", "RL", "TB", "BT"]),
              help="Direction of the graph: LR (left to right) or TB (top to bottom), or "
                   "their reverses.")
@click.option("--phase", default="ALL", show_default=True,
              type=click.Choice(["TRAIN", "TEST", "ALL"], case_sensitive=False),
              help="Draw only the layers of this phase.")
@click.option("--display_lrm", is_flag=True,
              help="Show the learning-rate multiplier of learning layers.")
@debug_option
def draw_net_cmd(net, output, rankdir, phase, display_lrm, debug) -> None:
    """Draw NET's layer graph into OUTPUT (.png, .svg, .pdf; .dot writes graphviz source).

    Needs matplotlib (pip install 'pyforge[plot]'), not graphviz.
    """
    from ..insight.draw import draw_net_to_file
    from ..proto import caffe_pb2, read_net_param

    param = read_net_param(net)
    phase_value = None if phase.upper() == "ALL" else caffe_pb2.Phase.Value(phase.upper())
    get_logger().info("Drawing net to %s", output)
    draw_net_to_file(param, output, rankdir=rankdir, phase=phase_value,
                     display_lrm=display_lrm)


def register(group: click.Group) -> None:
    group.add_command(draw_net_cmd)
    add_alias(group, draw_net_cmd, "draw_net")  # Caffe's python/draw_net.py
