"""pycaffe's ``caffe.proto``: the package of Caffe's generated protobuf module, ``caffe_pb2``
(``from caffe.proto import caffe_pb2``)."""

from . import caffe_pb2

__all__ = ["caffe_pb2"]
