"""Reading and writing data: LMDB/LevelDB readers and writers, Datum decoding, prefetching,
snapshots (the submodules), and pycaffe's ``caffe.io`` functions.

``import pyforge as caffe`` makes this package ``caffe.io``, so pycaffe's names
(``Transformer``, ``load_image``, ``resize_image``, ``oversample`` and the array/proto
conversions, from :mod:`pyforge.pycaffe.io`) are available here. They load on first use:
the engine imports this package's submodules and should not pay for them.
"""

_PYCAFFE_NAMES = frozenset({
    "Transformer", "load_image", "resize_image", "oversample", "blobproto_to_array",
    "array_to_blobproto", "arraylist_to_blobprotovector_str",
    "arraylist_to_blobprotovecor_str", "blobprotovector_str_to_arraylist", "array_to_datum",
    "datum_to_array",
})


def __getattr__(name: str):
    if name in _PYCAFFE_NAMES:
        from ..pycaffe import io as pycaffe_io

        return getattr(pycaffe_io, name)
    raise AttributeError(f"module 'pyforge.io' has no attribute {name!r}")


def __dir__() -> list:
    return sorted(set(globals()) | _PYCAFFE_NAMES)
