"""Data-parallel training over MPI (``mpiexec -n N pyforge train ...``).

Communication sits behind :class:`~pyforge.parallel.comm.Communicator`; without an MPI launch
(or without mpi4py) the single-process implementation makes every call a no-op, so training
runs exactly as before.
"""

from .comm import Communicator, SingleProcess, get_communicator

__all__ = ["Communicator", "SingleProcess", "get_communicator"]
