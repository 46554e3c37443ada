"""One exit-status rule for every command and flag (the README's table): 2 when the command
line alone is wrong (an unknown flag or command, a missing argument, a value the flag does not
accept, a file named on the command line that does not exist), 1 when what it names is wrong,
130 when interrupted before training; always one ``pyforge: error`` line. SIGTERM before
training behaves as Ctrl-C there."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import numba
import pytest

from pyforge import config
from pyforge.cli import main
from pyforge.errors import EXIT_ERROR, EXIT_INTERRUPTED, EXIT_USAGE
from tests.cli.test_errors import error_lines, make_solver, write
from tests.logcapture import capture_log


@pytest.fixture
def files(tmp_path):
    solver = make_solver(tmp_path)
    return {"solver": solver, "net": str(tmp_path / "net.prototxt"),
            "missing": str(tmp_path / "missing.prototxt"),
            "weights": write(tmp_path, "w.caffemodel", "")}


USAGE_CASES = [
    ["train", "--threads=0", "{solver}"],
    ["train", "--threads=-4", "{solver}"],
    ["train", "--early_stop_mode=sideways", "{solver}"],
    ["train", "--sigint_effect=explode", "{solver}"],
    ["train", "--sighup_effect=explode", "{solver}"],
    ["test", "--model={net}", "--weights={weights}", "--iterations=0"],
    ["time", "--model={net}", "--iterations=-1"],
    ["time", "--model={net}", "--phase=VALIDATE"],
    ["train", "{missing}"],
    ["train"],
    ["train", "{solver}", "--solver={net}"],
    ["test", "--model={net}"],
    ["test", "--weights={weights}"],
    ["time"],
    ["time", "--model={missing}"],
    ["test", "--model={missing}", "--weights={weights}"],
    ["train", "{solver}", "--weights={missing}"],
    ["train", "{solver}", "--snapshot={missing}"],
    ["train", "{solver}", "--snapshot={weights}", "--weights={weights}"],
    ["train", "{solver}", "--bogus"],
    ["train", "{solver}", "--iterations=5"],
    ["trian", "{solver}"],
    ["compute-image-mean", "{missing}"],
    ["parse-log", "{missing}", "out"],
    ["lr", "{missing}"],
    ["draw-net", "{missing}", "x.png"],
    ["upgrade-net", "{missing}", "x.prototxt"],
    ["export", "--model={missing}", "--weights={weights}", "--output=x.onnx"],
    ["export", "--model={net}", "--output=x.onnx"],
]


@pytest.mark.parametrize("argv", USAGE_CASES, ids=lambda a: " ".join(a))
def test_a_bad_command_line_exits_2_with_one_line(files, capsys, argv):
    code = main([arg.format(**files) for arg in argv])
    err = capsys.readouterr().err
    assert code == EXIT_USAGE, err
    assert len(error_lines(err)) == 1, err
    assert "Usage:" not in err and "Traceback" not in err


def test_bad_content_exits_1(files, tmp_path, capsys):
    cases = {
        "a syntax error": write(tmp_path, "a.prototxt", "base_lr: 0.1\nmomentun: 0.9\n"),
        "a non-finite setting": write(tmp_path, "b.prototxt", Path(files["solver"]).read_text()
                                      .replace("base_lr: 0.01", "base_lr: nan")),
        "a missing net": write(tmp_path, "c.prototxt", 'net: "nowhere.prototxt"\n'),
    }
    for what, solver in cases.items():
        code = main(["train", solver])
        err = capsys.readouterr().err
        assert code == EXIT_ERROR, (what, err)
        assert len(error_lines(err)) == 1, (what, err)


@pytest.fixture
def restore_threads():
    before = numba.get_num_threads()
    yield
    config.set_threads(before)


def test_threads_beyond_the_pool_are_capped_with_a_warning(files, restore_threads, capsys):
    pool = numba.config.NUMBA_NUM_THREADS
    with capture_log() as log:
        assert main(["time", f"--model={files['net']}", "--iterations=1",
                     "--threads=100000"]) == 0
    assert (f"--threads=100000 is more than the {pool} threads of Numba's pool (the logical "
            f"CPUs, or PYFORGE_THREADS when pyforge started); using {pool}") in log.text
    assert numba.get_num_threads() == pool


@pytest.mark.parametrize("value,threads,warning", [
    ("2", 2, None),
    ("100000", config.THREADS_PER_CPU * (os.cpu_count() or 1),
     f"PYFORGE_THREADS=100000 is more than {config.THREADS_PER_CPU} threads per logical CPU"),
    ("0", None, "PYFORGE_THREADS='0' ignored: expected a whole number of threads >= 1"),
    ("many", None, "PYFORGE_THREADS='many' ignored"),
])
def test_pyforge_threads_is_checked(monkeypatch, capsys, value, threads, warning):
    monkeypatch.setenv("PYFORGE_THREADS", value)
    count, note = config.threads_from_env()
    assert count == threads
    assert (note is None) if warning is None else note.startswith(warning)
    if warning:  # the CLI logs it when it starts
        assert main(["device_query"]) == 0
        assert warning in capsys.readouterr().err


SLOW_LAYER = '''import sys
import time

import pyforge as caffe


class Slow(caffe.Layer):
    def setup(self, bottom, top):
        sys.stderr.write("SLOW SETUP\\n")
        sys.stderr.flush()
        time.sleep(120)

    def reshape(self, bottom, top):
        top[0].reshape(*bottom[0].data.shape)

    def forward(self, bottom, top):
        top[0].data[...] = bottom[0].data

    def backward(self, top, propagate_down, bottom):
        pass
'''

SLOW_NET = """name: "slow"
layer { name: "data" type: "DummyData" top: "x" dummy_data_param { shape { dim: 1 } } }
layer { name: "slow" type: "Python" bottom: "x" top: "y"
  python_param { module: "slow_layer" layer: "Slow" } }
"""


@pytest.mark.parametrize("command", ["train", "time"])
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_while_the_net_is_built_interrupts_at_once(tmp_path, command, signum):
    (tmp_path / "slow_layer.py").write_text(SLOW_LAYER)
    net = write(tmp_path, "net.prototxt", SLOW_NET)
    solver = write(tmp_path, "solver.prototxt",
                   f'net: "{net}"\nbase_lr: 0.1\nlr_policy: "fixed"\nmax_iter: 1\n')
    argv = ["train", solver] if command == "train" else ["time", f"--model={net}"]
    proc = subprocess.Popen([sys.executable, "-m", "pyforge", *argv], cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    for line in proc.stderr:
        if "SLOW SETUP" in line:
            break
    proc.send_signal(signum)
    err = proc.communicate(timeout=60)[1]
    assert proc.returncode == EXIT_INTERRUPTED, err
    assert err.strip().splitlines()[-1] == "pyforge: interrupted"
    assert "Traceback" not in err


def test_an_interrupt_in_process_gives_the_handlers_back(files, monkeypatch, capsys):
    """main() called with argv (tests, scripts) restores the handlers it set aside; the
    command-line process keeps ignoring further presses while it exits."""
    from pyforge import api

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(api, "time_net", interrupted)
    before = (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM))
    assert main(["time", f"--model={files['net']}"]) == EXIT_INTERRUPTED
    assert capsys.readouterr().err.endswith("pyforge: interrupted\n")
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before
