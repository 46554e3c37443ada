"""The Caffe schema (generated ``caffe_pb2``) and the readers and writers of its files."""

from . import caffe_pb2
from .io import (
    parse_text_proto,
    read_binary_proto,
    read_binary_proto_arrays,
    read_net_param,
    read_solver_param,
    read_text_proto,
    resolve_path,
    write_binary_proto,
)

__all__ = [
    "parse_text_proto",
    "caffe_pb2",
    "read_binary_proto",
    "read_binary_proto_arrays",
    "read_net_param",
    "read_solver_param",
    "read_text_proto",
    "resolve_path",
    "write_binary_proto",
]
