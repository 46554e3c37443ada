"""Caffe's ``extract_features`` tool, with its positional arguments:
``pyforge extract_features pretrained.caffemodel net.prototxt blob1[,blob2] db1[,db2]
num_mini_batches lmdb|leveldb [CPU|GPU] [device_id]``."""

from __future__ import annotations

import click

from ..tools.features import device_note, extract_features, split_names
from . import add_alias, debug_option


# Negative numbers (a device id of -1) are arguments here, to be refused with a clear line.
@click.command("extract-features", context_settings={"ignore_unknown_options": True})
@click.argument("pretrained_net_param")
@click.argument("feature_extraction_proto_file")
@click.argument("blob_names")
@click.argument("dataset_names")
@click.argument("num_mini_batches", type=int)
@click.argument("db_type", type=click.Choice(["lmdb", "leveldb"], case_sensitive=False))
@click.argument("device", required=False, default="CPU")
@click.argument("device_id", required=False, default="")
@debug_option
def extract_features_cmd(pretrained_net_param, feature_extraction_proto_file, blob_names,
                         dataset_names, num_mini_batches, db_type, device, device_id,
                         debug) -> None:
    """Store the values of blobs of a trained net, run in the TEST phase, in new databases.

    BLOB_NAMES and DATASET_NAMES are comma-separated lists of equal length; each dataset gets
    one Datum (float_data, the blob's channels/height/width) per item of every one of
    NUM_MINI_BATCHES batches, keyed by a 10-digit running index. GPU is accepted and ignored
    (pyforge computes on the CPU).
    """
    device_note(device, device_id)
    extract_features(pretrained_net_param, feature_extraction_proto_file,
                     split_names(blob_names), split_names(dataset_names), num_mini_batches,
                     backend=db_type)


def register(group: click.Group) -> None:
    group.add_command(extract_features_cmd)
    # Caffe's tool is spelled with an underscore.
    add_alias(group, extract_features_cmd, "extract_features")
