"""Run-time settings, read once from ``PYFORGE_*`` environment variables and from glog's
``GLOG_*`` flags (which Caffe users set for Caffe's logging; pyforge's log honours them).

Nothing else in pyforge reads the environment. :func:`apply_thread_defaults` must run before
the first parallel Numba kernel, so ``pyforge/__init__.py`` calls it on import.
"""

from __future__ import annotations

import contextlib
import functools
import os
import pwd
from dataclasses import dataclass, field


@dataclass(frozen=True)
class GlogFlags:
    """glog's flags, read from the environment as glog reads them (``GLOG_<flag>``)."""

    #: Messages below this severity are dropped (0 INFO, 1 WARNING, 2 ERROR, 3 FATAL).
    minloglevel: int = 0
    #: Whether the line prefix carries the year (``I20261205 ...``, glog >= 0.6's default)
    #: or not (``I1205 ...``, older glog, which Caffe's tools/extra scripts read).
    log_year_in_prefix: bool = True
    #: Log to stderr only, never to files.
    logtostderr: bool = False
    #: Where log files are written too (empty: none; Caffe's glog would use /tmp).
    log_dir: str = ""
    #: The user name in log file names (glog: $USER, else the account's name).
    user_name: str = "invalid-user"


@dataclass(frozen=True)
class Config:
    #: Show tracebacks for user errors (also ``--debug``).
    debug: bool = False
    #: Seconds a rank waits for the others in a collective before declaring them stalled.
    mpi_timeout: float = 60.0
    #: glog's flags for pyforge's log.
    glog: GlogFlags = field(default_factory=GlogFlags)


def _flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def _glog_bool(name: str, default: bool) -> bool:
    """glog's EnvToBool: set means true when its first character is one of t, T, y, Y, 1 (or
    the value is empty)."""
    value = os.environ.get(name)
    if value is None:
        return default
    return value[:1] in ("", "t", "T", "y", "Y", "1")


def _glog_int(name: str, default: int) -> int:
    """glog's EnvToInt: strtol of the value (leading digits, 0 when there are none)."""
    value = os.environ.get(name)
    if value is None:
        return default
    text = value.strip()
    sign = -1 if text.startswith("-") else 1
    digits = ""
    for char in text.lstrip("+-"):
        if not char.isdigit():
            break
        digits += char
    return sign * int(digits) if digits else 0


def _user_name() -> str:
    """glog's MyUserName: $USER, else the name of the process's account, else uid<N>."""
    user = os.environ.get("USER")
    if user:
        return user
    try:
        return pwd.getpwuid(os.getuid()).pw_name or "invalid-user"
    except KeyError:
        return f"uid{os.getuid()}"


def load_glog() -> GlogFlags:
    return GlogFlags(minloglevel=_glog_int("GLOG_minloglevel", 0),
                     log_year_in_prefix=_glog_bool("GLOG_log_year_in_prefix", True),
                     logtostderr=_glog_bool("GLOG_logtostderr", False),
                     log_dir=os.environ.get("GLOG_log_dir", ""), user_name=_user_name())


def load() -> Config:
    try:
        timeout = float(os.environ.get("PYFORGE_MPI_TIMEOUT", "60"))
    except ValueError:
        timeout = 60.0
    return Config(debug=_flag("PYFORGE_DEBUG"), mpi_timeout=timeout, glog=load_glog())


#: PYFORGE_THREADS sizes Numba's thread pool when pyforge starts; more than this many threads
#: per logical CPU only adds switching (64 threads on 2 CPUs made LeNet's forward-backward
#: several times slower, and 100,000 crashed Numba with a segmentation fault), while a few per
#: CPU still let a run repeat, bit for bit, one made with more threads.
THREADS_PER_CPU = 4


def _logical_cpus() -> int:
    return os.cpu_count() or 1


def threads_from_env() -> tuple[int | None, str | None]:
    """The thread count ``PYFORGE_THREADS`` asks for (capped at THREADS_PER_CPU per logical
    CPU; None when unset or unusable) and a warning to log about it, if any."""
    raw = os.environ.get("PYFORGE_THREADS", "").strip()
    if not raw:
        return None, None
    if not raw.isdigit() or int(raw) < 1:
        return None, f"PYFORGE_THREADS={raw!r} ignored: expected a whole number of threads >= 1"
    limit = THREADS_PER_CPU * _logical_cpus()
    if int(raw) > limit:
        return limit, (f"PYFORGE_THREADS={raw} is more than {THREADS_PER_CPU} threads per "
                       f"logical CPU ({_logical_cpus()} CPUs); using {limit}")
    return int(raw), None


def set_threads(count: int) -> int:
    """Use ``count`` threads for Numba's kernels and for BLAS together (``--threads``);
    returns the count used.

    Results are deterministic for a given thread count: parallel kernels split the work
    statically and add partial sums in a fixed order. Numba's pool is sized when pyforge
    starts (PYFORGE_THREADS, else the logical CPUs); a larger count is capped there with a
    warning, so that the kernels and BLAS keep using the same number."""
    import numba
    from threadpoolctl import threadpool_limits

    pool = numba.config.NUMBA_NUM_THREADS
    if count > pool:
        from .log import get_logger

        get_logger().warning("--threads=%d is more than the %d threads of Numba's pool (the "
                             "logical CPUs, or PYFORGE_THREADS when pyforge started); using "
                             "%d", count, pool, pool)
        count = pool
    numba.set_num_threads(count)
    threadpool_limits(limits=count, user_api="blas")
    return count


@functools.lru_cache(maxsize=1)
def _blas_controller():
    """A threadpoolctl controller of the BLAS that Numba's ``np.dot`` calls: SciPy's.

    Only that library is switched: NumPy's wheel carries an OpenBLAS of its own, and setting
    its thread count wakes its threads, which (when NumPy was imported before pyforge, with
    OpenBLAS's default idle spin) then spin for about a tenth of a second after every switch,
    taking the cores from the kernels (CaffeNet's forward took 2.4x as long)."""
    # Importing SciPy's BLAS module loads the library Numba's np.dot calls.
    import scipy
    import scipy.linalg.cython_blas  # noqa: F401
    from threadpoolctl import ThreadpoolController

    controller = ThreadpoolController()
    home = os.path.dirname(os.path.dirname(os.path.abspath(scipy.__file__)))
    own = [lib.filepath for lib in controller.lib_controllers
           if lib.user_api == "blas" and os.path.basename(
               os.path.dirname(lib.filepath)).startswith("scipy")
           and os.path.abspath(lib.filepath).startswith(home)]
    # A SciPy linked to a system BLAS shares it with NumPy: then that one is switched.
    return controller.select(filepath=own) if own else controller


@contextlib.contextmanager
def single_threaded_blas():
    """SciPy's BLAS (the one the kernels' ``np.dot`` calls) on one thread for the duration
    (about 10 us to switch).

    Kernels such as the convolution run ``np.dot`` once per image inside ``prange``: Numba's
    threads share the images, and each GEMM must then run on one thread, or two levels of
    threads fight for the same cores."""
    with _blas_controller().limit(limits=1, user_api="blas"):
        yield


#: Chooses the library of the convolutions' sgemm (pyforge.layers.blas): ``mkl``, ``scipy``
#: (SciPy's OpenBLAS), or unset for MKL where the ``mkl`` package is installed.
BLAS_ENV = "PYFORGE_BLAS"


def blas_choice() -> str:
    """``PYFORGE_BLAS`` lower-cased: ``""`` (unset), ``"mkl"``, ``"scipy"`` or anything else
    the caller refuses."""
    return os.environ.get(BLAS_ENV, "").strip().lower()


def prepare_mkl() -> None:
    """Settings MKL reads when it loads (values the user set are kept). Each Numba thread
    calls its own products: MKL must not start threads of its own (its sequential layer, which
    also keeps Intel's OpenMP runtime out of the process). And a product must give the same
    bits whatever the alignment of its operands, which differs between the arrays of two
    runs: strict conditional numerical reproducibility."""
    os.environ.setdefault("MKL_THREADING_LAYER", "SEQUENTIAL")
    os.environ.setdefault("MKL_CBWR", "AUTO,STRICT")


def mpi_launch_size() -> int:
    """The world size an MPI launcher announced in the environment (0 when none did):
    MPICH/Hydra's, Open MPI's, PMIx's and Intel MPI's variables."""
    for name in ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "PMIX_SIZE", "MPI_LOCALNRANKS"):
        value = os.environ.get(name)
        if value and value.isdigit():
            return int(value)
    return 0


def apply_thread_defaults() -> None:
    """Keep idle worker threads from spinning while other threads compute.

    Two thread pools share the cores: Numba's (OpenMP) for the kernels and OpenBLAS's for
    NumPy's matrix products. Both busy-wait after their work by default, so each steals cores
    from the other's next job. On 2 cores a LeNet iteration took 71 ms with spinning OpenMP
    workers against 15 ms with passive ones, and OpenBLAS's spinning threads after a fully
    connected layer doubled the time of the next convolution (CIFAR-10 quick forward+backward
    92 ms -> 47 ms with a short OpenBLAS spin). Both settings are read when the libraries load,
    so this runs on ``import pyforge``, before NumPy; values the user set are kept.
    """
    threads, _ = threads_from_env()  # the CLI logs the warning, if any
    if threads is not None:
        # Numba and OpenBLAS read these when they start.
        for name in ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            os.environ.setdefault(name, str(threads))
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    # 2^4 cycles of spinning before an idle OpenBLAS thread sleeps (the default is 2^28).
    os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")
