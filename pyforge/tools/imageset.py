"""Caffe's ``tools/convert_imageset``: image files named in a list file to an LMDB or LevelDB
of Datum records.

Each line of the list file is ``<path> <label>`` (split at the last space); the image read
is ``root + path`` (plain concatenation, as Caffe does; a missing trailing slash on ``root`` is
forgiven). Records are keyed ``%08d_<path>`` by line number (after the optional shuffle) and
committed every 1000, with Caffe's ``Processed N files.`` log lines.

A record holds the decoded pixels (C x H x W bytes, BGR) or, with ``encoded`` (or an
``encode_type``), the image file: the original bytes when nothing changes them (no resize,
colour as asked, the same format), else the image re-encoded by cv::imencode (JPEG at OpenCV's
quality 95). Decoding, grey conversion and resizing are OpenCV's (cv::imread with IMREAD_COLOR
or IMREAD_GRAYSCALE, cv::resize INTER_LINEAR), as in Caffe's ReadImageToDatum.
Unlike Caffe, which logs an unreadable image and skips it, an unreadable image is an error
naming the list line, so a dataset never silently lacks images; the partly written database
is removed.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Callable

import numpy as np

from ..errors import DataError
from ..io.datum import (
    COLOR,
    GRAY,
    decode_image,
    encode_image,
    file_extension,
    image_datum,
    image_path,
    native_channels,
    read_file,
    read_image_list,
    resize_image,
)
from ..io.db import backend_from_name, open_writer
from ..log import get_logger
from ..proto import caffe_pb2

COMMIT_EVERY = 1000

Progress = Callable[[int, int], object]

def _extension_matches(path: str, encoding: str) -> bool:
    """Caffe's matchExt: the text after the path's last '.', lower-cased, is the encoding, or
    the encoding is "jpg" and the extension "jpeg" (only that way round)."""
    ext = path[path.rfind(".") + 1:].lower()
    encoding = encoding.lower()
    return ext == encoding or (encoding == "jpg" and ext == "jpeg")


def convert_imageset(
    root: str,
    list_file: str | os.PathLike,
    db_path: str | os.PathLike,
    *,
    resize_height: int = 0,
    resize_width: int = 0,
    gray: bool = False,
    shuffle: bool = False,
    backend: str | int = "lmdb",
    encoded: bool = False,
    encode_type: str = "",
    check_size: bool = False,
    seed: int | None = None,
    progress: Progress | None = None,
) -> int:
    """Convert the images of ``list_file`` into a new database at ``db_path``.

    Returns the number of records written. ``seed`` fixes the ``shuffle`` order (Caffe's is
    random at every run). ``progress(done, total)`` is called after each commit.
    """
    log = get_logger()
    backend_from_name(backend)  # an unknown backend fails before any work
    list_file, db_path = os.fspath(list_file), os.fspath(db_path)
    if os.path.lexists(db_path):
        raise DataError(f"'{db_path}' already exists; remove it or choose another output path")
    if resize_height < 0 or resize_width < 0:
        raise DataError(f"resize_height and resize_width must be >= 0, found {resize_height} "
                        f"and {resize_width}")
    lines = read_image_list(list_file, "convert_imageset")
    if shuffle:
        log.info("Shuffling data")
        order = np.random.default_rng(seed).permutation(len(lines))
        lines = [lines[i] for i in order]
    log.info("A total of %d images.", len(lines))
    if encode_type and not encoded:
        log.info("encode_type specified, assuming encoded=true.")
    encode_type = encode_type.lower().lstrip(".")
    encoded = encoded or bool(encode_type)
    # Caffe resizes only when both sizes are given.
    resize = resize_height > 0 and resize_width > 0
    is_color = not gray
    total = len(lines)
    first_shape = None
    writer = open_writer(db_path, backend, commit_every=COMMIT_EVERY)
    try:
        for line_id, (name, label) in enumerate(lines):
            path = image_path(root, name)
            where = f"{list_file}: image {line_id} ({name})"
            raw = read_file(path, where)
            image = decode_image(raw, where, COLOR if is_color else GRAY)
            if resize:
                image = resize_image(image, resize_height, resize_width)
            if check_size:
                if first_shape is None:
                    first_shape = image.shape
                elif image.shape != first_shape:
                    raise DataError(f"{where}: image is {'x'.join(map(str, image.shape))} "
                                    f"(CxHxW), the first image {'x'.join(map(str, first_shape))}"
                                    " (--check_size)")
            if encoded:
                fmt = encode_type or file_extension(name)
                if not fmt:
                    raise DataError(f"{where}: cannot guess the encoding from the file name; "
                                    "give --encode_type")
                datum = caffe_pb2.Datum(label=label, encoded=True)
                original = _original_fits(raw, is_color, resize, path, fmt, where)
                datum.data = raw if original else encode_image(image, fmt, where)
            else:
                datum = image_datum(image, label)
            key = b"%08d_" % line_id + name.encode("utf-8")
            writer.put(key, datum.SerializeToString())
            done = line_id + 1
            if done % COMMIT_EVERY == 0:
                # put() has just committed this transaction.
                log.info("Processed %d files.", done)
                if progress is not None and done < total:
                    progress(done, total)
        writer.close()
    except BaseException:
        with contextlib.suppress(Exception):
            writer.close()
        shutil.rmtree(db_path, ignore_errors=True)
        raise
    if total % COMMIT_EVERY:
        log.info("Processed %d files.", total)
    if progress is not None:
        progress(total, total)
    return total


def _original_fits(raw: bytes, is_color: bool, resize: bool, path: str, fmt: str,
                   where: str) -> bool:
    """Caffe stores the file's own bytes when nothing was resized and the file's extension is
    the encoding asked for (matchExt). Beyond Caffe, the file's own channels must also be what
    was asked (3 for colour, 1 for --gray): Caffe would store a colour file under --gray, and
    the records would decode to different shapes."""
    if resize or not _extension_matches(path, fmt):
        return False
    return native_channels(raw, where) == (3 if is_color else 1)
