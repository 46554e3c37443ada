"""matplotlib, imported only when something is drawn (it is the optional ``plot`` extra)."""

from __future__ import annotations

import os

from ..errors import PyforgeError


def new_figure(what: str, **kwargs):
    """A matplotlib Figure on the Agg canvas, without pyplot.

    pyplot keeps global figures and picks an interactive backend from the environment; a
    Figure with its own Agg canvas does neither, so drawing works on headless machines and
    leaves a user's notebook state alone.
    """
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise PyforgeError(f"{what} needs matplotlib, which is not installed; install it with "
                           "pip install 'pyforge[plot]'") from None
    figure = Figure(**kwargs)
    FigureCanvasAgg(figure)
    return figure


def save_png(figure, path: str | os.PathLike) -> None:
    path = os.fspath(path)
    folder = os.path.dirname(path)
    try:
        if folder:
            os.makedirs(folder, exist_ok=True)
        figure.savefig(path, format="png", dpi=100)
    except OSError as exc:
        raise PyforgeError(f"{path}: cannot write the image: {exc.strerror}") from None
