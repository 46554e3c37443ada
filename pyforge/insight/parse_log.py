"""Training logs as tables: Caffe's ``tools/extra/parse_log.py``, made robust.

Reads

- glog text logs written by Caffe (before and after 1.0) or by pyforge, with or without the year
  in the glog prefix (``I0423 12:00:00.123456 ...`` and ``I20261125 12:00:00.123456 ...``),
  plain or ``.gz``. Lines without a glog prefix (continuations of multi-line messages, or logs
  whose prefix was stripped) are read too; they have no time.
- pyforge's metrics JSONL files: one JSON object per line, ``{"kind": "train" | "test",
  "iter": int, ...}`` (see :func:`read_metrics_jsonl`).

and gives a :class:`TrainingLog`: Caffe's two tables (``.train`` and ``.test``: columns
``NumIters, Seconds, LearningRate`` and then each net output) plus the smoothed training loss
and the learning rate as logged.

The tables are Caffe's script's, row for row and cell for cell, on the logs that script
reads (glog prefixes without the year): ``NumIters`` is written as a float (``100.0``);
``Seconds`` counts from the first ``Solving`` line to the row's first output line;
``LearningRate`` is the last ``lr = `` value logged before the row's first output line, which
for a train row is the *previous* display's rate (Caffe prints ``Iteration N, lr = ...`` after
the outputs of iteration N), and the first row of each table takes the second row's rate
(Caffe's ``fix_initial_nan_learning_rate``).

Beyond Caffe's script, which fails or loses rows on these:

- The 1.0 line ``Iteration N (X iter/s, Ys/Z iters), loss = W`` and year-stamped prefixes are
  read (Caffe's script breaks on both: BVLC/caffe#5361, #5422).
- ``nan`` and ``inf`` outputs are kept (Caffe's number pattern skips them, so a diverging run
  lost its rows).
- Outputs of test net #k > 0 get columns ``net<k>/<name>``, in the same row as net #0's, where
  Caffe's overwrote net #0's values. A blob with several elements gives ``name``,
  ``name[1]``, ... where Caffe's kept only the last.
- A table's only row, or a last row with fewer outputs than the first, is kept (Caffe's
  script writes a row only once the next one starts or the row is as full as the first).
- A log without a ``Solving`` line counts Seconds from its first timed line (Caffe's script
  fails). A prefix without the year is read in a calendar of leap years, and a month that goes
  backwards starts the next year, so a run over New Year or 29 February still counts right.
"""

from __future__ import annotations

import csv
import datetime as dt
import gzip
import json
import math
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from ..errors import PyforgeError
from ..log import get_logger

GLOG_PREFIX = re.compile(
    r"^(?P<level>[IWEF])(?P<date>\d{8}|\d{4}) (?P<h>\d\d):(?P<m>\d\d):(?P<s>\d\d)\.(?P<us>\d{6})"
    r" +\d+ [^\]]*\] ?(?P<msg>.*)$")
# Caffe's parse_log.py patterns, extended: a value may be nan/inf, and the 1.0 speed note.
ITERATION = re.compile(r"Iteration (\d+)")
TRAIN_LOSS = re.compile(r"^Iteration (\d+)(?: \([^)]*\))?, loss = (\S+)")
TESTING = re.compile(r"^Iteration (\d+), Testing net \(#(\d+)\)")
# Caffe's pattern has no word boundary before "lr" either.
LEARNING_RATE = re.compile(r"lr = ([-+]?(?:nan|inf|[0-9]*\.?[0-9]+(?:[eE]?[-+]?[0-9]+)?))")
TRAIN_OUTPUT = re.compile(r"Train net output #(\d+): (\S+) = (\S+)")
TEST_OUTPUT = re.compile(r"Test net output #(\d+): (\S+) = (\S+)")
LOSS_NOTE = re.compile(r"\(\* \S+ = \S+ loss\)")

FIXED_COLUMNS = ("NumIters", "Seconds", "LearningRate")
# A leap year, so that a yearless "I0229" parses.
_YEARLESS_BASE = 2000


@dataclass
class Row:
    """One row of a ``.train`` or ``.test`` table."""

    iter: int
    seconds: float
    lr: float
    values: dict[str, float] = field(default_factory=dict)


@dataclass
class TrainingLog:
    """What a training log says, as tables and series."""

    source: str
    #: Caffe's ``.train`` table: one row per display, the train net's outputs.
    train: list[Row] = field(default_factory=list)
    #: Caffe's ``.test`` table: one row per test pass (all test nets of that pass).
    test: list[Row] = field(default_factory=list)
    #: (iteration, smoothed training loss) as displayed (``Iteration N ..., loss = X``).
    loss: list[tuple[int, float]] = field(default_factory=list)
    #: (iteration, learning rate) as logged.
    lr: list[tuple[int, float]] = field(default_factory=list)
    #: Test output columns that carry a loss weight (the ``(* w = v loss)`` note).
    test_losses: set[str] = field(default_factory=set)
    #: Train output columns that carry a loss weight.
    train_losses: set[str] = field(default_factory=set)
    #: Lines of a metrics file that were not complete records (skipped).
    skipped: int = 0

    @property
    def train_columns(self) -> list[str]:
        return list(FIXED_COLUMNS) + _value_columns(self.train)

    @property
    def test_columns(self) -> list[str]:
        return list(FIXED_COLUMNS) + _value_columns(self.test)


def _value_columns(rows: list[Row]) -> list[str]:
    seen: dict[str, None] = {}
    for row in rows:
        for name in row.values:
            seen.setdefault(name, None)
    return list(seen)


def _number(text: str) -> float:
    """A value as Caffe prints it; ``-nan``, ``nan(ind)`` and the like read as NaN."""
    try:
        return float(text)
    except ValueError:
        lowered = text.lower()
        if "nan" in lowered or "ind" in lowered:
            return math.nan
        if "inf" in lowered:
            return -math.inf if lowered.startswith("-") else math.inf
        return math.nan


# --- reading files --------------------------------------------------------------------------
def open_text(path: str | os.PathLike) -> Iterator[str]:
    """The lines of a text file, gunzipped when it is gzip (by its magic bytes, not its name)."""
    path = os.fspath(path)
    try:
        with open(path, "rb") as probe:
            magic = probe.read(2)
    except OSError as exc:
        raise PyforgeError(f"{path}: cannot read the log: {exc.strerror}") from None
    opener = gzip.open if magic == b"\x1f\x8b" else open
    try:
        with opener(path, "rt", encoding="utf-8", errors="replace") as handle:
            yield from handle
    except (OSError, EOFError) as exc:
        raise PyforgeError(f"{path}: cannot read the log: {exc}") from None


def load_log(path: str | os.PathLike) -> TrainingLog:
    """Read a glog text log or a metrics JSONL file, telling them apart by their content."""
    path = os.fspath(path)
    lines = open_text(path)
    first = ""
    buffered: list[str] = []
    for line in lines:
        buffered.append(line)
        if line.strip():
            first = line.lstrip()
            break
    rest = _chain(buffered, lines)
    if first.startswith("{"):
        return read_metrics_jsonl(path, rest)
    log = parse_lines(rest, source=path)
    if not (log.train or log.test or log.loss or log.lr):
        raise PyforgeError(f"{path}: expected a Caffe or pyforge training log (lines such as "
                           "'Iteration 100, loss = 0.2' or 'Train net output #0: loss = 0.2') "
                           "or a metrics JSONL file, found no training lines")
    return log


def _chain(first: list[str], rest: Iterable[str]) -> Iterator[str]:
    yield from first
    yield from rest


# --- glog text ------------------------------------------------------------------------------
class _Clock:
    """glog timestamps to datetimes.

    A yearless prefix is placed in a calendar of leap years (so that "I0229" exists), and a
    month that goes backwards starts the next year. Differences are then exact, except for one
    extra day when a run crosses the end of February of a non-leap year.
    """

    def __init__(self) -> None:
        self.years = 0
        self.last_month = 0

    def read(self, m: re.Match) -> dt.datetime | None:
        date = m.group("date")
        clock = (int(m.group("h")), int(m.group("m")), int(m.group("s")), int(m.group("us")))
        try:
            if len(date) == 8:
                return dt.datetime(int(date[:4]), int(date[4:6]), int(date[6:]), *clock)
            month, day = int(date[:2]), int(date[2:])
            if month < self.last_month:
                self.years += 1
            self.last_month = month
            return (dt.datetime(_YEARLESS_BASE, month, day, *clock)
                    + dt.timedelta(days=366 * self.years))
        except ValueError:
            return None


class _GlogReader:
    """Caffe's parse_log state machine: rows belong to the latest ``Iteration N`` seen."""

    def __init__(self, source: str) -> None:
        self.log = TrainingLog(source=source)
        self.iteration: int | None = None
        self.train_row: Row | None = None
        self.test_row: Row | None = None
        self.test_net = 0
        self.times: dict[int, dt.datetime] = {}  # id(row) -> time of its first output line
        #: The last rate logged (Caffe's learning_rate): what a new row takes.
        self.last_lr = math.nan
        self.first_time: dt.datetime | None = None
        self.solving_time: dt.datetime | None = None

    def feed(self, message: str, when: dt.datetime | None) -> None:
        if when is not None and self.first_time is None:
            self.first_time = when
        if self.solving_time is None and when is not None and "Solving" in message:
            self.solving_time = when
        if m := ITERATION.search(message):
            self.iteration = int(m.group(1))
            self.train_row = None
            self._iteration_line(message)
        if self.iteration is None:
            # As in Caffe's script: nothing counts before the first "Iteration N".
            return
        if m := LEARNING_RATE.search(message):
            self.last_lr = _number(m.group(1))
            self.log.lr.append((self.iteration, self.last_lr))
        if m := TRAIN_OUTPUT.search(message):
            if self.train_row is None:
                self.train_row = self._new_row(self.log.train, when)
            name = _element_name(self.train_row.values, m.group(2))
            self.train_row.values[name] = _number(m.group(3))
            if LOSS_NOTE.search(message):
                self.log.train_losses.add(name)
        elif m := TEST_OUTPUT.search(message):
            if self.test_row is None or self.test_row.iter != self.iteration:
                self.test_row = self._new_row(self.log.test, when)
                self.test_net = 0
            name = m.group(2) if self.test_net == 0 else f"net{self.test_net}/{m.group(2)}"
            name = _element_name(self.test_row.values, name)
            self.test_row.values[name] = _number(m.group(3))
            if LOSS_NOTE.search(message):
                self.log.test_losses.add(name)

    def _iteration_line(self, message: str) -> None:
        if m := TRAIN_LOSS.match(message):
            self.log.loss.append((int(m.group(1)), _number(m.group(2))))
        elif m := TESTING.match(message):
            net = int(m.group(2))
            # Test nets #1.. of the same pass add columns to net #0's row.
            same_pass = (net > 0 and self.test_row is not None
                         and self.test_row.iter == self.iteration)
            if not same_pass:
                self.test_row = None
            self.test_net = net

    def _new_row(self, table: list[Row], when: dt.datetime | None) -> Row:
        assert self.iteration is not None
        row = Row(iter=self.iteration, seconds=math.nan, lr=self.last_lr)
        table.append(row)
        if when is not None:
            self.times[id(row)] = when
        return row

    def finish(self) -> TrainingLog:
        _fix_initial_rate(self.log.train)
        _fix_initial_rate(self.log.test)
        origin = self.solving_time or self.first_time
        for row in self.log.train + self.log.test:
            when = self.times.get(id(row))
            if when is not None and origin is not None:
                row.seconds = (when - origin) / dt.timedelta(microseconds=1) / 1e6
        return self.log


def _fix_initial_rate(rows: list[Row]) -> None:
    """Caffe's fix_initial_nan_learning_rate: the first row (logged before any rate) takes the
    second row's rate."""
    if len(rows) > 1:
        rows[0].lr = rows[1].lr


def _element_name(values: dict[str, float], name: str) -> str:
    """``name`` for a blob's first element, ``name[i]`` for the next ones in the same row."""
    if name not in values:
        return name
    i = 1
    while f"{name}[{i}]" in values:
        i += 1
    return f"{name}[{i}]"


def parse_lines(lines: Iterable[str], source: str = "<log>") -> TrainingLog:
    """Parse glog text lines (with or without the glog prefix) into a :class:`TrainingLog`."""
    reader = _GlogReader(source)
    clock = _Clock()
    for line in lines:
        line = line.rstrip("\r\n")
        if m := GLOG_PREFIX.match(line):
            reader.feed(m.group("msg"), clock.read(m))
        else:
            reader.feed(line, None)
    return reader.finish()


# --- metrics JSONL --------------------------------------------------------------------------
class _BadRecord(Exception):
    """A metrics line that is not a complete record; skipped and counted."""


def read_metrics_jsonl(path: str, lines: Iterable[str] | None = None) -> TrainingLog:
    """Read pyforge's metrics file: one JSON object per line.

    ``{"kind": "train", "iter": 100, "lr": 0.01, "loss": 0.3, "smoothed_loss": 0.31,
    "outputs": {"loss": 0.3}, "wall_time": 12.5, "seconds": 12.431, "iter_per_s": 8.1}`` and
    ``{"kind": "test", "iter": 500, "test_net": 0, "outputs": {"accuracy": 0.97, "loss":
    0.09}, "wall_time": 60.2, "seconds": 60.1}``. Other kinds are skipped, so that new record
    kinds do not break old readers. ``seconds`` (the time of the row's first output line in the
    log, from the "Solving" line) is the Seconds column, as the log of the same run gives it;
    files without it count from the first record's ``wall_time``. The rates follow the log's
    rule: a row takes the rate of the last train record before its iteration, the first row
    the second's. Test outputs whose name contains ``loss`` are taken as losses (the file does
    not carry loss weights).

    A line that is not a complete record (a run killed or a disk filled while writing it) is
    skipped: every complete line is used, and a warning says how many were skipped and why
    the first was (``TrainingLog.skipped``). A file without a single complete record is an
    error.
    """
    log = TrainingLog(source=path)
    origin: list[float] = []
    first_problem = ""
    used = 0
    for lineno, line in enumerate(lines if lines is not None else open_text(path), 1):
        if not line.strip():
            continue
        try:
            _add_record(log, line, path, lineno, origin)
            used += 1
        except _BadRecord as exc:
            log.skipped += 1
            first_problem = first_problem or str(exc)
    if log.skipped and not used:
        raise PyforgeError(f"{first_problem}; no line of the file is a complete metrics "
                           "record")
    if log.skipped:
        get_logger().warning("%s: skipped %d line(s) that are not complete metrics records "
                             "and used the other %d (the first skipped: %s)", path, log.skipped,
                             used, first_problem)
    log.test_losses = {n for n in _value_columns(log.test) if "loss" in n.lower()}
    log.train_losses = {n for n in _value_columns(log.train) if "loss" in n.lower()}
    _fill_rates(log)
    return log


def _add_record(log: TrainingLog, line: str, path: str, lineno: int,
                origin: list[float]) -> None:
    """Add one metrics line to ``log``, or raise _BadRecord (leaving ``log`` unchanged)."""
    try:
        record = json.loads(line)
    except json.JSONDecodeError as exc:
        raise _BadRecord(f"{path}:{lineno}: expected one JSON object per line, found "
                         f"invalid JSON ({exc.msg})") from None
    if not isinstance(record, dict) or not isinstance(record.get("iter"), int):
        raise _BadRecord(f"{path}:{lineno}: expected a JSON object with an integer "
                         f"\"iter\", found {line.strip()[:80]}")
    kind = record.get("kind")
    if kind not in ("train", "test"):
        return
    wall = record.get("wall_time")
    seconds = math.nan
    outputs = record.get("outputs") or {}
    if not isinstance(outputs, dict):
        raise _BadRecord(f"{path}:{lineno}: expected \"outputs\" to be an object of "
                         f"name: value, found {type(outputs).__name__}")
    values: dict[str, float] = {}
    net = record.get("test_net", 0) if kind == "test" else 0
    _add_outputs(values, outputs, "" if not net else f"net{net}/", path, lineno)
    if isinstance(wall, (int, float)):
        if not origin:
            origin.append(float(wall))
        seconds = float(wall) - origin[0]
    if isinstance(record.get("seconds"), (int, float)):
        seconds = float(record["seconds"])
    it = record["iter"]
    if kind == "train":
        lr = _json_number(record.get("lr"))
        # The rates of the rows follow the log's rule (_fill_rates), not the record's own.
        log.train.append(Row(iter=it, seconds=seconds, lr=math.nan, values=values))
        smoothed = record.get("smoothed_loss", record.get("loss"))
        if smoothed is not None:
            log.loss.append((it, _json_number(smoothed)))
        if "lr" in record:
            log.lr.append((it, lr))
    elif net and log.test and log.test[-1].iter == it:
        log.test[-1].values.update(values)
    else:
        log.test.append(Row(iter=it, seconds=seconds, lr=math.nan, values=values))


def _json_number(value) -> float:
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        return _number(value)
    return math.nan


def _add_outputs(values: dict[str, float], outputs: dict, prefix: str, path: str,
                 lineno: int) -> None:
    for name, value in outputs.items():
        items = value if isinstance(value, list) else [value]
        for i, item in enumerate(items):
            if not isinstance(item, (int, float, str)) or isinstance(item, bool):
                raise _BadRecord(f"{path}:{lineno}: expected output '{name}' to be a number "
                                 f"or a list of numbers, found {item!r}")
            values[f"{prefix}{name}" + (f"[{i}]" if i else "")] = _json_number(item)


def _fill_rates(log: TrainingLog) -> None:
    """The rates a glog log of the same run gives: ``Iteration N, lr = `` is logged after the
    outputs of iteration N, so a row takes the rate of the last train record before its
    iteration; then the first row takes the second's (Caffe's script's rule)."""
    rates = sorted(log.lr)
    for table in (log.train, log.test):
        for row in table:
            rate = math.nan
            for it, value in rates:
                if it >= row.iter:
                    break
                rate = value
            row.lr = rate
        _fix_initial_rate(table)


# --- writing Caffe's tables -----------------------------------------------------------------
def _cell(value: float) -> str:
    return repr(float(value))


def write_table(path: str, rows: list[Row], columns: list[str], delimiter: str = ",") -> None:
    """One table as Caffe's parse_log.py writes it (a header row, then one row per entry)."""
    try:
        with open(path, "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle, delimiter=delimiter, lineterminator="\r\n")
            writer.writerow(columns)
            for row in rows:
                # NumIters as Caffe's script writes it: a float (its iteration counter is).
                cells = [_cell(row.iter), _cell(row.seconds), _cell(row.lr)]
                cells += [_cell(row.values[c]) if c in row.values else ""
                          for c in columns[len(FIXED_COLUMNS):]]
                writer.writerow(cells)
    except OSError as exc:
        raise PyforgeError(f"{path}: cannot write: {exc.strerror}") from None


def table_names(log_path: str, output_dir: str) -> tuple[str, str]:
    """``<outdir>/<log name>.train`` and ``.test``; a ``.gz`` suffix is dropped first."""
    base = os.path.basename(log_path)
    if base.endswith(".gz"):
        base = base[: -len(".gz")]
    return (os.path.join(output_dir, base + ".train"), os.path.join(output_dir, base + ".test"))


def write_tables(log_path: str, output_dir: str,
                 delimiter: str = ",") -> tuple[str, str, TrainingLog]:
    """Parse ``log_path`` and write its ``.train`` and ``.test`` tables into ``output_dir``
    (created if missing)."""
    log = load_log(log_path)
    try:
        os.makedirs(output_dir, exist_ok=True)
    except OSError as exc:
        raise PyforgeError(f"{output_dir}: cannot create the output folder: "
                           f"{exc.strerror}") from None
    train_path, test_path = table_names(log_path, output_dir)
    write_table(train_path, log.train, log.train_columns, delimiter)
    write_table(test_path, log.test, log.test_columns, delimiter)
    return train_path, test_path, log


def read_table(path: str, delimiter: str = ",") -> tuple[list[str], list[dict[str, float]]]:
    """Read a table written by :func:`write_table` (or by Caffe's script) back as numbers."""
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle, delimiter=delimiter)
        header = next(reader)
        rows = [{name: (float(cell) if cell else math.nan) for name, cell in zip(header, cells)}
                for cells in reader]
    return header, rows
