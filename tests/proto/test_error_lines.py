"""Syntax errors in huge or odd files stay short: the source line is cut around the column
(the caret still points at it), long tokens are cut in the message, an invisible character is
named, and a UTF-8 byte order mark at the start is skipped with a warning."""

from __future__ import annotations

import pytest

from pyforge.cli import main
from pyforge.errors import ParseError
from pyforge.proto import caffe_pb2, parse_text_proto, read_solver_param
from pyforge.proto.io import MAX_LINE, source_excerpt
from tests.logcapture import capture_log


def error_output(argv, capsys) -> tuple[int, list[str]]:
    code = main(argv)
    err = capsys.readouterr().err
    lines = err.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("pyforge: error:"))
    return code, lines[start:]


def caret_points_at(lines: list[str], text: str) -> None:
    """The caret line's ^ sits under ``text`` in the excerpt line above it."""
    excerpt, caret = lines[-2], lines[-1]
    assert caret.strip() == "^"
    assert excerpt[caret.index("^"):].startswith(text), (excerpt, caret)


def test_a_50_mb_unterminated_string_gives_a_few_short_lines(tmp_path, capsys):
    path = tmp_path / "solver.prototxt"
    path.write_text('base_lr: 0.1\nnet: "' + "a" * (50 << 20) + "\n")
    code, lines = error_output(["train", str(path)], capsys)
    assert code == 1
    assert len(lines) == 3 and all(len(line) <= MAX_LINE for line in lines), lines
    assert lines[0].startswith(f"pyforge: error: {path}:2:6: String missing ending quote: "
                               "'\"aaaa")
    assert "(52,428,801 characters)" in lines[0]
    caret_points_at(lines, '"aaa')


def test_100000_nested_braces_give_a_few_short_lines(tmp_path, capsys):
    path = tmp_path / "net.prototxt"
    path.write_text('name: "deep"\n' + "layer { " * 100_000 + "\n")
    code, lines = error_output(["time", f"--model={path}"], capsys)
    assert code == 1
    assert len(lines) == 3 and all(len(line) <= MAX_LINE for line in lines), lines
    assert lines[0].startswith(f"pyforge: error: {path}:2:9: ")
    caret_points_at(lines, "layer {")


def test_an_error_far_into_a_long_line_keeps_the_caret_on_the_column(tmp_path):
    line = "base_lr: 0.1 " * 1000 + "momentun: 0.9 " + "display: 1 " * 1000
    column = line.index("momentun") + 1
    excerpt = source_excerpt(line, column).splitlines()
    assert all(len(x) <= MAX_LINE for x in excerpt)
    assert excerpt[0].startswith("  ...") and excerpt[0].endswith("...")
    caret_points_at(excerpt, "momentun")
    # A short line is shown whole.
    assert source_excerpt("momentun: 0.9", 1) == "  momentun: 0.9\n  ^"


def test_a_byte_order_mark_at_the_start_is_skipped_with_a_warning(tmp_path):
    path = tmp_path / "solver.prototxt"
    path.write_bytes(b"\xef\xbb\xbfbase_lr: 0.5\nlr_policy: \"fixed\"\n")
    with capture_log() as log:
        param = read_solver_param(path)
    assert param.base_lr == 0.5
    assert (f"{path} starts with a UTF-8 byte order mark (U+FEFF); reading the file without "
            "it (Caffe's parser would refuse it") in log.text


def test_a_byte_order_mark_inside_the_file_is_named(tmp_path):
    with pytest.raises(ParseError) as info:
        parse_text_proto('base_lr: 0.5\n\ufefflr_policy: "fixed"\n', caffe_pb2.SolverParameter(),
                         "s.prototxt")
    assert str(info.value) == ("s.prototxt:2:1: Expected identifier or number, got U+FEFF (a "
                               "UTF-8 byte order mark, invisible in most editors; only a file's "
                               "first character may be one)")


def test_other_invisible_characters_are_named(tmp_path):
    with pytest.raises(ParseError, match=r"got U\+200B \(zero width space\)"):
        parse_text_proto("base_lr: 0.5\n\u200blr_policy: 1\n", caffe_pb2.SolverParameter(),
                         "s.prototxt")
