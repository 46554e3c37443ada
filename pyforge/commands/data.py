"""Dataset tools: Caffe's convert_mnist_data, convert_imageset and compute_image_mean.

Flags are Caffe's (gflags) names, in all of gflags' spellings: ``--flag=value``, ``--flag
value``, ``-flag=value``, ``-flag value``, and for booleans also ``--flag``, ``--flag=true``,
``--flag=false`` and ``--noflag``. A progress bar is drawn only on a terminal.
"""

from __future__ import annotations

import click

from ..log import get_logger
from ..tools.image_mean import compute_image_mean
from ..tools.imageset import convert_imageset
from ..tools.mnist import convert_mnist
from ..tools.progress import progress_bar
from . import add_alias, debug_option, existing_path

_TRUE = {"true", "t", "yes", "y", "1"}
_FALSE = {"false", "f", "no", "n", "0"}


class GflagsCommand(click.Command):
    """A click command that also reads gflags' spellings of its own flags."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        names, booleans = set(), set()
        for param in self.params:
            if isinstance(param, click.Option):
                for opt in param.opts:
                    name = opt.lstrip("-")
                    names.add(name)
                    if param.is_flag and not name.startswith("no"):
                        booleans.add(name)
        out = []
        for arg in args:
            if arg.startswith("-") and not arg.startswith("--") and len(arg) > 2:
                if arg[1:].split("=", 1)[0] in names:
                    arg = "-" + arg  # gflags' single dash
            if arg.startswith("--") and "=" in arg:
                name, value = arg[2:].split("=", 1)
                if name in booleans:
                    if value.lower() in _TRUE:
                        arg = f"--{name}"
                    elif value.lower() in _FALSE:
                        arg = f"--no{name}"
                    else:
                        raise click.BadParameter(f"expected true or false, found {value!r}",
                                                 param_hint=f"--{name}")
            out.append(arg)
        return super().parse_args(ctx, out)


def _flag(name: str, help: str):
    return click.option(f"--{name}/--no{name}", default=False, show_default=True, help=help)


_backend = click.option("--backend", default="lmdb", show_default=True,
                        type=click.Choice(["lmdb", "leveldb"], case_sensitive=False),
                        help="The database backend: lmdb or leveldb.")


@click.command("convert-mnist", cls=GflagsCommand)
@click.argument("images", type=existing_path)
@click.argument("labels", type=existing_path)
@click.argument("db")
@_backend
@debug_option
def convert_mnist_cmd(images, labels, db, backend, debug) -> None:
    """Convert MNIST IDX files (optionally .gz) into an LMDB or LevelDB of Datum records."""
    count = convert_mnist(images, labels, db, backend=backend,
                          progress=progress_bar("convert-mnist"))
    get_logger().info("Processed %d files.", count)


@click.command("convert-imageset", cls=GflagsCommand)
@click.argument("root", type=existing_path)
@click.argument("listfile", type=existing_path)
@click.argument("db")
@click.option("--resize_height", default=0, show_default=True,
              help="Height images are resized to (with --resize_width; 0: no resize).")
@click.option("--resize_width", default=0, show_default=True,
              help="Width images are resized to (with --resize_height; 0: no resize).")
@_flag("gray", "Treat images as grayscale ones.")
@_flag("shuffle", "Randomly shuffle the order of images and their labels.")
@_backend
@_flag("encoded", "Store the encoded image (JPEG, PNG, ...) in the datum.")
@click.option("--encode_type", default="",
              help="What type to encode the image as ('png', 'jpg', ...); implies --encoded.")
@_flag("check_size", "Check that all the datums have the same size.")
@click.option("--random_seed", default=-1, show_default=True,
              help="Seed of --shuffle (-1: a different order at every run, as Caffe).")
@debug_option
def convert_imageset_cmd(root, listfile, db, resize_height, resize_width, gray, shuffle,
                         backend, encoded, encode_type, check_size, random_seed, debug) -> None:
    """Convert images into an LMDB or LevelDB of Datum records.

    LISTFILE holds lines '<path> <label>'; each image is read from ROOT + path (ROOT usually
    ends with '/').
    """
    convert_imageset(root, listfile, db, resize_height=resize_height,
                     resize_width=resize_width, gray=gray, shuffle=shuffle, backend=backend,
                     encoded=encoded, encode_type=encode_type, check_size=check_size,
                     seed=None if random_seed < 0 else random_seed,
                     progress=progress_bar("convert-imageset"))


@click.command("compute-image-mean", cls=GflagsCommand)
@click.argument("db", type=existing_path)
@click.argument("meanfile", required=False)
@_backend
@debug_option
def compute_image_mean_cmd(db, meanfile, backend, debug) -> None:
    """Compute the mean image of a database of Datum records and write it to MEANFILE
    (a BlobProto binaryproto for transform_param.mean_file); log the per-channel means."""
    compute_image_mean(db, meanfile, backend=backend, progress=progress_bar("compute-image-mean"))


def register(group: click.Group) -> None:
    for command in (convert_mnist_cmd, convert_imageset_cmd, compute_image_mean_cmd):
        group.add_command(command)
        # Caffe's tools are spelled with underscores.
        add_alias(group, command, command.name.replace("-", "_"))
