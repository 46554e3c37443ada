"""Reading and writing data: LMDB/LevelDB readers and writers, Datum decoding, prefetching and
snapshots (the submodules).

This is pyforge's engine package, not pycaffe's ``caffe.io``: ``Transformer``, ``load_image``
and the other pycaffe functions are in the ``caffe`` package (``import caffe`` then
``caffe.io.load_image(...)``).
"""

#: pycaffe's caffe.io names, answered with a pointer to the caffe package.
_PYCAFFE_NAMES = frozenset({
    "Transformer", "load_image", "resize_image", "oversample", "blobproto_to_array",
    "array_to_blobproto", "arraylist_to_blobprotovector_str",
    "arraylist_to_blobprotovecor_str", "blobprotovector_str_to_arraylist", "array_to_datum",
    "datum_to_array",
})


def __getattr__(name: str):
    if name in _PYCAFFE_NAMES:
        raise AttributeError(f"module 'pyforge.io' has no attribute {name!r}: pycaffe's "
                             f"caffe.io is the caffe package's (`import caffe`, then "
                             f"caffe.io.{name})")
    raise AttributeError(f"module 'pyforge.io' has no attribute {name!r}")
