"""Command modules beyond Caffe's four actions.

Each module in this package defines ``register(group)``, which adds its click commands to the
``pyforge`` group; :func:`register_all` finds them all, so adding a command never means editing
``cli.py``. Commands stay thin: they parse flags and call functions that hold the logic.
"""

from __future__ import annotations

import copy
import importlib
import pkgutil

import click

debug_option = click.option("--debug", is_flag=True, hidden=True,
                            help="Show Python tracebacks for errors.")

#: The type of an argument naming an input file or folder: one that does not exist is a bad
#: command line (exit 2, as for any flag value the command cannot use), while what it holds
#: is checked by its reader (exit 1).
existing_path = click.Path(exists=True)


def _apply_threads(ctx, param, value):
    if value is not None:
        if value < 1:
            raise click.BadParameter("must be at least 1")
        from ..config import set_threads

        set_threads(value)
    return value


threads_option = click.option(
    "--threads", type=int, default=None, expose_value=False, callback=_apply_threads,
    help="Threads for Numba kernels and BLAS together (default: all cores, or "
         "PYFORGE_THREADS). Results are bitwise reproducible for a given count.")


def add_alias(group: click.Group, command: click.Command, name: str) -> None:
    """Register ``command`` under another (Caffe) name too, hidden from ``--help``."""
    alias = copy.copy(command)
    alias.hidden = True
    group.add_command(alias, name)


def register_all(group: click.Group) -> None:
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
        module = importlib.import_module(f"{__name__}.{info.name}")
        register = getattr(module, "register", None)
        if register is not None:
            register(group)
