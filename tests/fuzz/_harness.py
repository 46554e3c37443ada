"""Shared pieces of the fuzz tests: input mutators, the oracle and the hypothesis settings.

The oracle is pyforge's reliability rule: every input either loads or raises a
:class:`pyforge.errors.PyforgeError` whose message is one non-empty line (naming the file
where the reader was given one); never another exception type, never a hang.

Profiles (environment variable ``PYFORGE_FUZZ``):

- unset or ``ci``: derandomized, the per-test example counts written in the tests; what CI runs.
- ``deep``: random seeds, ``PYFORGE_FUZZ_SCALE`` (default 20) times the examples; run by hand::

      PYFORGE_FUZZ=deep python -m pytest -q -p no:cacheprovider tests/fuzz

Inputs that escape the rule through a bug already recorded in ``test_regressions.py`` are
recognised by :data:`KNOWN_BUGS` and counted, not failed, so that the property tests keep
looking for new bugs while the regression tests stay red until pyforge is fixed.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import signal
import struct
import threading
import traceback
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from numba.core import event as numba_event

from pyforge.errors import PyforgeError

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = ROOT / "tests" / "data" / "caffe_reference"
FUZZ_DATA = ROOT / "tests" / "data" / "fuzz"

# --- settings ------------------------------------------------------------------------------
PROFILE = os.environ.get("PYFORGE_FUZZ", "ci")
DEEP = PROFILE == "deep"
SCALE = int(os.environ.get("PYFORGE_FUZZ_SCALE", "20")) if DEEP else 1
#: Seconds one input may take before it counts as a hang.
HANG_SECONDS = float(os.environ.get("PYFORGE_FUZZ_HANG_S", "30"))

settings.register_profile(
    "pyforge-fuzz-ci",
    derandomize=True,
    deadline=None,
    database=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                           HealthCheck.filter_too_much, HealthCheck.function_scoped_fixture],
)
settings.register_profile(
    "pyforge-fuzz-deep",
    settings.get_profile("pyforge-fuzz-ci"),
    derandomize=False,
)
BASE = settings.get_profile("pyforge-fuzz-deep" if DEEP else "pyforge-fuzz-ci")


def fuzz_settings(max_examples: int) -> settings:
    """The profile's settings with ``max_examples`` (scaled up in the deep profile)."""
    return settings(BASE, max_examples=max_examples * SCALE)


# --- the oracle ----------------------------------------------------------------------------
class Hang(Exception):
    """Raised in the main thread when one input takes longer than HANG_SECONDS."""


class KnownHang(Exception):
    """Raised by a test, before running an input, when the input is known to hang pyforge
    inside a Numba kernel (where no alarm can stop it); counted as ``known:<name>``."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


@dataclass(frozen=True)
class KnownBug:
    """A rule violation already recorded in test_regressions.py.

    It matches a violation when the exception is one of ``exc_types``, the innermost pyforge
    function it passed through (``module:function``) matches the regular expression ``where``,
    and the description of the violation (``escaped as <type> from <where>: <message>``, or,
    for a PyforgeError whose message breaks the rule, ``PyforgeError message ...: <message>``)
    matches the regular expression ``problem``."""

    name: str
    exc_types: tuple[type[BaseException], ...]
    where: str = ".*"
    problem: str = ""
    #: the readers (check_rule's first argument) it is known for, as a regular expression
    readers: str = ".*"

    def matches(self, reader: str, exc: BaseException, origin: str, problem: str) -> bool:
        return (isinstance(exc, self.exc_types) and re.fullmatch(self.where, origin) is not None
                and re.search(self.problem, problem, re.S) is not None
                and re.fullmatch(self.readers, reader) is not None)


_H5PY_ERRORS = (KeyError, RuntimeError, TypeError, ValueError, IndexError, AttributeError,
                UnicodeDecodeError, OSError)

#: Bugs the fuzzing has found and pyforge has not fixed yet, each with a failing test in
#: test_regressions.py (named after ``name``). Escapes that match one are counted as
#: ``known:<name>``, not failed. Every bug found so far is fixed, so the list is empty: any
#: escape fails the property tests.
KNOWN_BUGS: list[KnownBug] = []

#: Per-reader tallies: outcome -> count ("loaded", "PyforgeError", "known:<name>").
TALLY: dict[str, Counter] = {}

#: ``PYFORGE_FUZZ_COLLECT=FILE``: record each new violation as a JSON line in FILE and go on,
#: instead of failing at the first (to survey a reader; the tests then pass vacuously).
COLLECT = os.environ.get("PYFORGE_FUZZ_COLLECT")


def pyforge_origin(exc: BaseException) -> str:
    """``module:function`` of the innermost traceback frame inside the pyforge package."""
    origin = "?"
    for frame in traceback.extract_tb(exc.__traceback__):
        path = frame.filename.replace(os.sep, "/")
        if "/pyforge/" in path and "/tests/" not in path:
            module = path.rsplit("/pyforge/", 1)[1].removesuffix(".py").replace("/", ".")
            origin = f"pyforge.{module}:{frame.name}"
    return origin


class _CompilationPause(numba_event.Listener):
    """Stops the hang alarm while Numba compiles a kernel and starts it again afterwards with
    the time that was left, so that the budget counts running time only. The first input to
    reach a kernel pays for compiling it (seconds, more on a loaded machine); that is not a
    hang of the input."""

    def __init__(self) -> None:
        self.depth = 0  # compiles nest: a kernel compiles the kernels it calls
        self.left = 0.0

    def on_start(self, event) -> None:
        if self.depth == 0:
            self.left = signal.setitimer(signal.ITIMER_REAL, 0)[0]
        self.depth += 1

    def on_end(self, event) -> None:
        self.depth -= 1
        if self.depth == 0 and self.left > 0:
            signal.setitimer(signal.ITIMER_REAL, self.left)


@contextlib.contextmanager
def hang_guard(seconds: float = HANG_SECONDS) -> Iterator[None]:
    """Raise :class:`Hang` in the main thread when the body runs longer than ``seconds``, not
    counting the time Numba spends compiling kernels."""
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal,
                                                                               "SIGALRM"):
        yield
        return

    def on_alarm(signum, frame):
        raise Hang(f"no result after {seconds:g} s (not counting Numba's compilation)")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        with numba_event.install_listener("numba:compile", _CompilationPause()):
            yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _message_problem(message: str, names: tuple[str, ...]) -> str | None:
    if not message or not message.strip():
        return "PyforgeError with an empty message"
    if "\n" in message:
        return f"PyforgeError message is not one line: {message!r}"
    if names and not any(n in message for n in names):
        return f"PyforgeError message names none of {names}: {message!r}"
    return None


def _violation(reader: str, tally: Counter, exc: BaseException, origin: str,
               problem: str, data: object) -> str:
    for bug in KNOWN_BUGS:
        if bug.matches(reader, exc, origin, problem):
            tally[f"known:{bug.name}"] += 1
            return f"known:{bug.name}"
    detail = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    if COLLECT:
        with open(COLLECT, "a", encoding="utf-8") as handle:
            handle.write(json.dumps({"reader": reader, "type": type(exc).__name__,
                                     "origin": origin, "problem": problem[:400],
                                     "input": repr(data)[:3000]}) + "\n")
        tally["violation"] += 1
        return "violation"
    raise AssertionError(f"{reader}: {problem}\n{detail}") from None


def check_rule(reader: str, action: Callable[[], object], names: tuple[str, ...] = (),
               data: object = None) -> str:
    """Run ``action`` under the rule; return the outcome, or fail the test with a clear message.

    ``names``: strings of which at least one must appear in a PyforgeError's message (the file
    the reader was given, or the layer). ``data``: the input, recorded in collect mode."""
    tally = TALLY.setdefault(reader, Counter())
    try:
        with hang_guard(), warnings.catch_warnings(), np.errstate(all="ignore"):
            # pyproject turns warnings into errors; the CLI would just print them, so ignore
            # them here rather than let them escape as exceptions no user would see.
            warnings.simplefilter("ignore")
            action()
    except KnownHang as exc:
        tally[f"known:{exc.name}"] += 1
        return f"known:{exc.name}"
    except PyforgeError as exc:
        problem = _message_problem(exc.message, names)
        if problem is not None:
            return _violation(reader, tally, exc, pyforge_origin(exc), problem, data)
        tally["PyforgeError"] += 1
        return "PyforgeError"
    except Exception as exc:  # noqa: BLE001 - this is exactly what the rule forbids
        origin = pyforge_origin(exc)
        problem = f"escaped as {type(exc).__name__} from {origin}: {exc}"
        return _violation(reader, tally, exc, origin, problem, data)
    tally["loaded"] += 1
    return "loaded"


def quiet_logger() -> logging.Logger:
    """A logger that drops pyforge's (very verbose) build log."""
    logger = logging.getLogger("pyforge.fuzz.quiet")
    logger.handlers[:] = [logging.NullHandler()]
    logger.propagate = False
    logger.setLevel(logging.CRITICAL + 1)
    return logger


# --- text mutators ---------------------------------------------------------------------------
SPECIAL_NUMBERS = [
    "0", "-1", "1", "-0", "2", "3", "7", "-7", "0.5", "-0.5", "1e-45", "1e38", "-1e38", "3.5e39",
    "inf", "-inf", "nan", "2147483647", "2147483648", "-2147483648", "-2147483649",
    "4294967295", "4294967296", "9223372036854775807", "18446744073709551616", "100000",
    "1000000", "0x10", "010", "1.", ".5", "1e", "--1", "+1",
]
ENUM_WORDS = [
    "TRAIN", "TEST", "MAX", "AVE", "STOCHASTIC", "LMDB", "LEVELDB", "CPU", "GPU", "SGD", "ADAM",
    "CAFFE", "CUDNN", "DEFAULT", "FAN_IN", "FAN_OUT", "AVERAGE", "VALID", "FULL", "BATCH_SIZE",
    "NONE", "SUM", "PROD", "STRICT", "PERMISSIVE", "BINARYPROTO", "HDF5", "L1", "L2", "true",
    "false", "True", "t", "f", "1", "0", "BOGUS", "max", "train", "",
]
TYPE_STRINGS = [
    "Data", "DummyData", "Input", "HDF5Data", "ImageData", "MemoryData", "WindowData",
    "Convolution", "Deconvolution", "Pooling", "InnerProduct", "ReLU", "PReLU", "ELU", "Sigmoid",
    "TanH", "Softmax", "SoftmaxWithLoss", "EuclideanLoss", "Accuracy", "Dropout", "Flatten",
    "Reshape", "Split", "Concat", "Slice", "Eltwise", "Silence", "BatchNorm", "Scale", "Bias",
    "LRN", "MVN", "Crop", "Tile", "Embed", "LSTM", "RNN", "SPP", "ArgMax", "Reduction", "Power",
    "Exp", "Log", "AbsVal", "BNLL", "Threshold", "Clip", "Swish", "Filter", "BatchReindex",
    "Parameter", "Im2col", "HDF5Output", "Python", "InfogainLoss", "HingeLoss",
    "ContrastiveLoss", "MultinomialLogisticLoss", "SigmoidCrossEntropyLoss", "LSTMUnit",
    "CONVOLUTION", "POOLING", "xavier", "gaussian", "constant", "msra", "bilinear", "uniform",
    "positive_unitball", "fixed", "step", "inv", "poly", "multistep", "exp", "sigmoid", "SGD",
    "Nesterov", "Adam", "AdaGrad", "RMSProp", "AdaDelta", "L1", "L2", "", "\\x00", "\\377",
    "unknown", "../../etc/passwd", "/", ".", "data", "label",
]
JUNK_TEXT = [
    "{", "}", "{}", ":", "\"", "'", "#", "\\", "\x00", "\x7f", "\ufffd", "\u2028", "\u00e9",
    "\U0001f600", "layer {", "layer { }", "bottom: \"data\"", "top: \"data\"", " : : ",
    "include { phase: TEST }", "exclude { phase: TRAIN }", "param { lr_mult: 0 }",
    "loss_weight: 1", "propagate_down: true", "layers { type: CONVOLUTION }",
    "input: \"data\"", "input_dim: 1", "input_shape { dim: 1 }", "state { phase: TEST }",
    "force_backward: true", "debug_info: true", "[caffe.foo] { }", "<", ">", "\t", "\r",
]

NUMBER = re.compile(r"(?<=:)(\s*)(-?[0-9][0-9.eE+-]*|-?inf|nan)")
ENUM = re.compile(r"(?<=:)(\s*)([A-Za-z_][A-Za-z0-9_]*)\s*$", re.M)
STRING = re.compile(r'"([^"\\\n]*)"')


@st.composite
def text_mutation(draw, text: str) -> bytes:
    """One to four mutations of prototxt ``text``; bytes, since some insert invalid UTF-8."""
    lines = text.split("\n")
    raw_tail: bytes | None = None
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from([
            "delete", "duplicate", "swap", "number", "number", "number", "enum", "string",
            "string", "truncate", "insert_text", "insert_bytes", "move_block",
        ]))
        if not lines:
            lines = [""]
        i = draw(st.integers(0, len(lines) - 1))
        if kind == "delete":
            del lines[i]
        elif kind == "duplicate":
            lines.insert(i, lines[i])
        elif kind == "swap":
            j = draw(st.integers(0, len(lines) - 1))
            lines[i], lines[j] = lines[j], lines[i]
        elif kind == "move_block":
            j = draw(st.integers(i, min(len(lines), i + 12)))
            block = lines[i:j]
            del lines[i:j]
            k = draw(st.integers(0, len(lines)))
            lines[k:k] = block
        elif kind == "number":
            candidates = [k for k, line in enumerate(lines) if NUMBER.search(line)]
            if candidates:
                k = draw(st.sampled_from(candidates))
                value = draw(st.one_of(st.sampled_from(SPECIAL_NUMBERS),
                                       st.integers(-(2**40), 2**40).map(str),
                                       st.floats(allow_nan=True).map(repr)))
                lines[k] = NUMBER.sub(lambda m, v=value: m.group(1) + v, lines[k], count=1)
        elif kind == "enum":
            candidates = [k for k, line in enumerate(lines) if ENUM.search(line)]
            if candidates:
                k = draw(st.sampled_from(candidates))
                word = draw(st.sampled_from(ENUM_WORDS))
                lines[k] = ENUM.sub(lambda m, w=word: m.group(1) + w, lines[k], count=1)
        elif kind == "string":
            candidates = [k for k, line in enumerate(lines) if STRING.search(line)]
            if candidates:
                k = draw(st.sampled_from(candidates))
                word = draw(st.one_of(st.sampled_from(TYPE_STRINGS),
                                      st.text(max_size=8)))
                word = word.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
                lines[k] = STRING.sub(lambda m, w=word: f'"{w}"', lines[k], count=1)
        elif kind == "truncate":
            joined = "\n".join(lines)
            cut = draw(st.integers(0, len(joined)))
            lines = joined[:cut].split("\n")
        elif kind == "insert_text":
            pos = draw(st.integers(0, len(lines[i])))
            junk = draw(st.one_of(st.sampled_from(JUNK_TEXT), st.text(max_size=6)))
            lines[i] = lines[i][:pos] + junk + lines[i][pos:]
        else:  # insert_bytes: invalid UTF-8 or control bytes, at the end of the file
            raw_tail = draw(st.binary(min_size=1, max_size=6))
    data = "\n".join(lines).encode("utf-8", errors="surrogatepass")
    if raw_tail is not None:
        pos = draw(st.integers(0, len(data)))
        data = data[:pos] + raw_tail + data[pos:]
    return data


# --- binary mutators -------------------------------------------------------------------------
@dataclass(frozen=True)
class Mutated:
    """A list of byte-level edits of ``base``, applied on demand.

    Hypothesis keeps the examples it generated; keeping the edits rather than the edited copy
    of a 1.7 MB .caffemodel keeps its memory small, and a failing example prints as its edits.
    """

    base: bytes
    ops: tuple

    def __repr__(self) -> str:
        return f"Mutated(<{len(self.base)} bytes>, ops={self.ops!r})"

    def apply(self) -> bytes:
        buf = bytearray(self.base)
        for op in self.ops:
            kind, args = op[0], op[1:]
            if not buf:
                buf = bytearray(args[-1] if kind == "insert" else b"")
                continue
            i = args[0] % len(buf)
            if kind == "truncate":
                del buf[i:]
            elif kind == "flip":
                buf[i] ^= 1 << args[1]
            elif kind == "set":
                buf[i] = args[1]
            elif kind in ("insert", "varint"):
                buf[i:i + (kind == "varint")] = args[1]
            elif kind == "delete":
                del buf[i:i + args[1]]
            elif kind == "splice":
                j = args[1] % len(buf)
                buf[i:i] = buf[j:j + args[2]]
        return bytes(buf)


def materialize(value) -> bytes:
    """The bytes of a drawn input: a :class:`Mutated` applied, or plain bytes as they are."""
    return value.apply() if isinstance(value, Mutated) else value


POSITION = st.integers(0, 2**31)


@st.composite
def byte_mutation(draw, data: bytes, max_ops: int = 4) -> Mutated:
    """Truncations, bit flips, byte overwrites, insertions, deletions, huge varints and spliced
    regions of ``data`` (positions are taken modulo the current length)."""
    ops = []
    for _ in range(draw(st.integers(1, max_ops))):
        kind = draw(st.sampled_from(["truncate", "flip", "flip", "set", "set", "insert",
                                     "delete", "varint", "splice"]))
        pos = draw(POSITION)
        if kind == "truncate":
            ops.append((kind, pos))
        elif kind == "flip":
            ops.append((kind, pos, draw(st.integers(0, 7))))
        elif kind == "set":
            ops.append((kind, pos, draw(st.sampled_from(
                [0x00, 0xFF, 0x7F, 0x80, 0x08, 0x0A, 0x12, 0x1A, 0x22, 0x0D, 0x05, 0x06, 0x07]))))
        elif kind == "insert":
            ops.append((kind, pos, draw(st.binary(min_size=1, max_size=12))))
        elif kind == "delete":
            ops.append((kind, pos, draw(st.integers(1, 16))))
        elif kind == "varint":  # a huge or negative varint where a length or value was
            ops.append((kind, pos, draw(st.sampled_from(
                [b"\xff\xff\xff\xff\x0f", b"\x80\x80\x80\x80\x80\x01", b"\xff" * 9 + b"\x01",
                 b"\xfe\xff\xff\xff\x07"]))))
        else:
            ops.append((kind, pos, draw(POSITION), draw(st.integers(1, 64))))
    return Mutated(data, tuple(ops))


# --- protobuf wire format (hand-built records with extreme field values) -----------------
def varint(value: int) -> bytes:
    value &= (1 << 64) - 1
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def field_varint(number: int, value: int) -> bytes:
    return varint(number << 3) + varint(value)


def field_bytes(number: int, value: bytes) -> bytes:
    return varint((number << 3) | 2) + varint(len(value)) + value


def field_float(number: int, value: float) -> bytes:
    return varint((number << 3) | 5) + struct.pack("<f", value)
