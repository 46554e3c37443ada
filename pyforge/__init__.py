"""pyforge: a Caffe-compatible trainer in Python on a Numba engine."""

__version__ = "0.1.0"
