"""Caffe's upgrade tools: rewrite old nets and solvers in the current format.

``pyforge upgrade-net IN OUT`` is Caffe's ``upgrade_net_proto_text`` and
``upgrade_net_proto_binary`` in one: the output has the input's format. ``pyforge
upgrade-solver IN OUT`` is ``upgrade_solver_proto_text``. Caffe's tool names are accepted too.
"""

from __future__ import annotations

import click

from ..atomic_write import write_text_atomically
from ..errors import PyforgeError
from ..log import get_logger
from ..proto import caffe_pb2, read_binary_proto, read_text_proto, write_binary_proto
from ..proto.io import debug_string
from ..proto.upgrade import (
    net_needs_upgrade,
    solver_needs_upgrade,
    upgrade_net,
    upgrade_solver_param,
)
from . import add_alias, debug_option, existing_path

#: Extensions read and written as binary NetParameter when no --binary/--text is given.
BINARY_EXTENSIONS = (".caffemodel", ".binaryproto", ".pb")


def is_binary_net_file(path: str) -> bool:
    return path.lower().endswith(BINARY_EXTENSIONS)


def upgrade_net_file(source: str, target: str, binary: bool | None = None) -> bool:
    """Upgrade the net in ``source`` and write it to ``target`` in the same format.

    ``binary`` None picks the format from ``source``'s extension. Returns whether the upgrade
    had no problems; the file is written either way, as Caffe's tools do.
    """
    log = get_logger()
    if binary is None:
        binary = is_binary_net_file(source)
    param = caffe_pb2.NetParameter()
    if binary:
        read_binary_proto(source, param)
    else:
        read_text_proto(source, param)
    success = True
    if net_needs_upgrade(param):
        success = upgrade_net(param, source)
        if not success:
            log.error("Encountered error(s) while upgrading prototxt; see details above.")
    else:
        log.error("File already in latest proto format: %s", source)
    if binary:
        write_binary_proto(target, param)
        log.info("Wrote upgraded NetParameter binary proto to %s", target)
    else:
        write_text_atomically(target, debug_string(param))
        log.info("Wrote upgraded NetParameter text proto to %s", target)
    return success


def upgrade_solver_file(source: str, target: str) -> None:
    """Upgrade the solver prototxt ``source`` (and the nets inside it) into ``target``."""
    log = get_logger()
    param = read_text_proto(source, caffe_pb2.SolverParameter())
    if solver_needs_upgrade(param):
        # No snapshot_prefix default here: that is a reading-time rule, not a format upgrade.
        upgrade_solver_param(param, source, default_snapshot_prefix=False)
    else:
        log.error("File already in latest proto format: %s", source)
    write_text_atomically(target, debug_string(param))
    log.info("Wrote upgraded SolverParameter text proto to %s", target)


def _net_command(name: str, fixed: bool | None) -> click.Command:
    format_help = {
        None: "The output has the input's format: binary with --binary, text with --text, and "
              "otherwise binary when IN ends in .caffemodel, .binaryproto or .pb, text for "
              "anything else.",
        False: "Text in, text out (Caffe's upgrade_net_proto_text).",
        True: "Binary in, binary out (Caffe's upgrade_net_proto_binary).",
    }[fixed]

    def run(input_file: str, output_file: str, debug: bool, binary: bool | None = None) -> None:
        if not upgrade_net_file(input_file, output_file, fixed if fixed is not None else binary):
            raise PyforgeError(f"{input_file}: part of the net could not be upgraded (the log "
                               f"above says what); {output_file} was written anyway")

    params: list[click.Parameter] = [
        click.Argument(["input_file"], metavar="IN", type=existing_path),
        click.Argument(["output_file"], metavar="OUT"),
    ]
    if fixed is None:
        params.append(click.Option(["--binary/--text"], default=None,
                                   help="Read and write a binary NetParameter (.caffemodel), or "
                                        "a text prototxt."))
    command = click.Command(
        name, callback=run, params=params,
        help="Upgrade a net written in an old format (V0 'layers { layer {...} }', V1 'layers { "
             "type: CONVOLUTION }', deprecated data transformation or input fields) to the "
             f"current one and write it to OUT. {format_help} Exits with status 1 if part of "
             "the net could not be upgraded (the log says what); OUT is written anyway.",
        short_help="Upgrade an old-format net (prototxt or .caffemodel).",
    )
    debug_option(command)
    return command


@click.command("upgrade-solver")
@click.argument("input_file", metavar="IN", type=existing_path)
@click.argument("output_file", metavar="OUT")
@debug_option
def upgrade_solver_cmd(input_file: str, output_file: str, debug: bool) -> None:
    """Upgrade a solver prototxt (the deprecated solver_type enum becomes the type string, and
    nets written inside it in an old format are upgraded) and write it to OUT as text.

    snapshot_prefix is written as given (it is defaulted when a solver is read for training, not
    here).
    """
    upgrade_solver_file(input_file, output_file)


def register(group: click.Group) -> None:
    group.add_command(_net_command("upgrade-net", None))
    # Caffe's tools, with their fixed formats.
    for name, binary in (("upgrade_net_proto_text", False), ("upgrade_net_proto_binary", True)):
        command = _net_command(name, binary)
        command.hidden = True  # Caffe's tool names
        group.add_command(command)
    group.add_command(upgrade_solver_cmd)
    add_alias(group, upgrade_solver_cmd, "upgrade_solver_proto_text")
