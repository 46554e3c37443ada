"""Dataset tools: Caffe's convert_mnist_data (and, later, convert_imageset, compute_image_mean)."""

from __future__ import annotations

import click

from ..log import get_logger
from ..tools.mnist import convert_mnist
from ..tools.progress import progress_bar
from . import debug_option


@click.command("convert-mnist")
@click.argument("images")
@click.argument("labels")
@click.argument("db")
@click.option("--backend", default="lmdb", show_default=True,
              help="The database backend to write (lmdb).")
@debug_option
def convert_mnist_cmd(images, labels, db, backend, debug) -> None:
    """Convert MNIST IDX files (optionally .gz) into an LMDB of Datum records."""
    count = convert_mnist(images, labels, db, backend=backend,
                          progress=progress_bar("convert-mnist"))
    get_logger().info("Processed %d files.", count)


def register(group: click.Group) -> None:
    group.add_command(convert_mnist_cmd)
    # Caffe's tool is spelled with an underscore.
    group.add_command(convert_mnist_cmd, "convert_mnist")
