"""pyforge: a Caffe-compatible trainer in Python on a Numba engine."""

from .config import apply_thread_defaults

apply_thread_defaults()

__version__ = "0.1.0"
