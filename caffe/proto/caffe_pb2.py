"""Caffe's protobuf messages, ``caffe.proto.caffe_pb2``: pyforge's generated module
(``pyforge/proto/caffe_pb2.py``, from ``solver_proto/caffe.proto``, wire-compatible with Caffe
1.0), re-exported. The classes are the same objects as pyforge's, so messages pass freely
between ``caffe`` and ``pyforge`` code."""

from pyforge.proto.caffe_pb2 import *  # noqa: F403
from pyforge.proto.caffe_pb2 import DESCRIPTOR  # noqa: F401
