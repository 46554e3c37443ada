"""A structural check of an LMDB file, made with ordinary reads before LMDB maps it.

LMDB reads its file through a memory map. A page past the end of a shorter file (a copy cut
short, a disk that filled up) is not an error LMDB can return: touching it raises SIGBUS and
the process dies with "Bus error" and no message. So before LMDB opens a database, pyforge
reads the two meta pages itself (LMDB's own header: page size, last page number, the root of
the main tree), checks that the file is as long as they say, and walks the tree's branch and
leaf pages with ``pread``, checking that every page they point to (children and the overflow
pages of large records) lies inside the file. What passes can be read through the map safely.

The layout is LMDB 0.9's on 64-bit machines (``mdb.c``): a 16-byte page header ``pgno:u64,
pad:u16, flags:u16, lower:u16, upper:u16``, then ``mp_ptrs``, the offsets of the page's nodes;
a node is ``lo:u16, hi:u16, flags:u16, ksize:u16`` then the key and the data. A branch node's
child page number is ``lo | hi << 16 | flags << 32``; a leaf node's data size is ``lo | hi <<
16``, and with ``F_BIGDATA`` its data is the number of the first of its overflow pages.
"""

from __future__ import annotations

import os
import struct

import numpy as np

from ..errors import DataError

_MAGIC = 0xBEEFC0DE
_DATA_VERSION = 1
_PAGE_HEADER = 16
_NODE_HEADER = 8
# Meta page after the page header: magic, version, address, map size, then two MDB_db
# records (free pages, main tree) of pad:u32, flags:u16, depth:u16, branch, leaf, overflow
# page counts, entries and root (u64 each), then the last page number and the transaction id.
_META = struct.Struct("<IIQQ" + "IHHQQQQQ" * 2 + "QQ")
_P_BRANCH, _P_LEAF, _P_META = 0x01, 0x02, 0x08
_F_BIGDATA = 0x01
_NO_PAGE = 0xFFFFFFFFFFFFFFFF


def _meta(fd: int, offset: int, size: int) -> dict | None:
    """The meta page at ``offset`` as a dict, or None when it does not hold one."""
    raw = os.pread(fd, _PAGE_HEADER + _META.size, offset)
    if len(raw) < _PAGE_HEADER + _META.size:
        return None
    flags = struct.unpack_from("<H", raw, 10)[0]
    fields = _META.unpack_from(raw, _PAGE_HEADER)
    if fields[0] != _MAGIC or not flags & _P_META:
        return None
    return {"version": fields[1], "psize": fields[4], "main_depth": fields[14],
            "main_overflow": fields[17], "main_root": fields[19], "last_page": fields[20],
            "txnid": fields[21]}


def check_lmdb_file(data_file: str, name: str) -> None:
    """Raise :class:`DataError` naming ``name`` when ``data_file`` is not a whole LMDB file."""
    try:
        fd = os.open(data_file, os.O_RDONLY)
    except OSError as exc:
        raise DataError(f"LMDB '{name}': cannot read {data_file}: {exc.strerror}") from None
    try:
        _check(fd, name, os.fstat(fd).st_size)
    finally:
        os.close(fd)


def _check(fd: int, name: str, size: int) -> None:
    if size == 0:
        raise DataError(f"LMDB '{name}' is damaged: its data.mdb is empty (0 bytes), as a copy "
                        "or conversion that never finished leaves it")
    first = _meta(fd, 0, size)
    if first is None:
        raise DataError(f"LMDB '{name}' is damaged or not an LMDB: its data.mdb does not start "
                        f"with an LMDB header (magic number 0x{_MAGIC:X})")
    if first["version"] != _DATA_VERSION:
        raise DataError(f"LMDB '{name}' has data format version {first['version']}; this LMDB "
                        f"library reads version {_DATA_VERSION}")
    psize = first["psize"]
    if psize < 256 or psize > 65536 or psize & (psize - 1):
        raise DataError(f"LMDB '{name}' is damaged: its header gives a page size of {psize} "
                        "bytes")
    second = _meta(fd, psize, size)
    if second is None:
        what = "is truncated" if size < 2 * psize else "is damaged"
        raise DataError(f"LMDB '{name}' {what}: its second header page (at byte {psize} of "
                        f"{size}) is missing or unreadable")
    meta = max(first, second, key=lambda m: m["txnid"])  # LMDB uses the newer one
    pages = meta["last_page"] + 1
    if size < pages * psize:
        raise DataError(
            f"LMDB '{name}' is truncated: data.mdb has {size} of the {pages * psize} bytes "
            f"its header gives ({pages} pages of {psize}; "
            f"{100 * size / (pages * psize):.0f}%); copy or convert it again")
    if meta["main_root"] != _NO_PAGE:
        _walk(fd, name, psize, pages, meta["main_root"], meta["main_depth"],
              leaves=meta["main_overflow"] > 0)


def _walk(fd: int, name: str, psize: int, pages: int, root: int, depth: int,
          leaves: bool) -> None:
    """Visit the branch pages from ``root`` (and the leaf pages too when ``leaves``), checking
    each page they point to.

    LMDB itself refuses a page number past the header's last page, so once the file is as
    long as the header says, only a damaged page can send a read past its end; this names
    the page instead of LMDB's "MDB_PAGE_NOTFOUND". Leaf pages matter only for records kept
    in overflow pages (large images), so they are read only when the header counts some."""

    def damaged(pgno: int, what: str) -> DataError:
        return DataError(f"LMDB '{name}' is damaged: page {pgno} of {pages} {what}; copy or "
                         "convert it again")

    if not 2 <= root < pages:
        raise damaged(root, "(the root of its records) lies outside the file")
    stack = [(root, 1)]
    visited = 0
    while stack:
        pgno, level = stack.pop()
        visited += 1
        if visited > pages or level > max(depth, 1):
            raise damaged(pgno, "is part of a loop in the record tree")
        page = np.frombuffer(os.pread(fd, psize, pgno * psize), dtype=np.uint8)
        if page.size < psize:
            raise damaged(pgno, "lies past the end of the file")
        own, _, flags, lower, upper = struct.unpack_from("<QHHHH", page, 0)
        count = (lower - _PAGE_HEADER) >> 1
        if own != pgno or not _PAGE_HEADER <= lower <= upper <= psize:
            raise damaged(pgno, "has a broken page header")
        offsets = page[_PAGE_HEADER : _PAGE_HEADER + 2 * count].view("<u2").astype(np.int64)
        if count and (offsets.min() < upper or offsets.max() > psize - _NODE_HEADER):
            raise damaged(pgno, "has record offsets outside the page")
        field = _node_fields(page, offsets)
        if flags & _P_BRANCH:
            children = field(0, 2) | field(2, 2) << 16 | field(4, 2) << 32
            if count and (children.min() < 2 or children.max() >= pages):
                raise damaged(pgno, "points to a page that lies past the end of the file")
            if leaves or level + 1 < depth:
                stack.extend((int(child), level + 1) for child in children)
        elif flags & _P_LEAF:
            _check_overflow(page, offsets, field, psize, pages, damaged, pgno)
        else:
            raise damaged(pgno, f"has page type 0x{flags:x} where a branch or leaf page "
                                "belongs")


def _node_fields(page: np.ndarray, offsets: np.ndarray):
    """``field(at, width)``: the little-endian field ``at`` bytes into each node, as int64."""

    def field(at: int, width: int) -> np.ndarray:
        value = np.zeros(offsets.shape, dtype=np.uint64)
        for byte in range(width):
            value |= page[offsets + at + byte].astype(np.uint64) << np.uint64(8 * byte)
        return value.astype(np.int64) if width < 8 else value

    return field


def _check_overflow(page, offsets, field, psize: int, pages: int, damaged, pgno: int) -> None:
    big = (field(4, 2) & _F_BIGDATA).astype(bool)
    if not big.any():
        return
    offsets = offsets[big]
    ksize = field(6, 2)[big]
    data_at = offsets + _NODE_HEADER + ksize
    if data_at.max() + 8 > psize:
        raise damaged(pgno, "has a record that runs past the page")
    size = (field(0, 2) | field(2, 2) << 16)[big]
    first = _node_fields(page, data_at)(0, 8)
    count = (_PAGE_HEADER + size + psize - 1) // psize
    if first.min() < 2 or (first.astype(np.float64) + count).max() > pages:
        raise damaged(pgno, "has a large record whose pages lie past the end of the file")
