"""Data-parallel training over MPI (``mpiexec -n N pyforge train ...``).

Two layers: :mod:`.comm`, the communicator (collectives with bounded waits; without an MPI
launch, or without mpi4py, the single-process one makes every call a no-op), and
:mod:`.strategy`, what the training loop asks of the processes it runs in (the gradient
exchange with its control flags, the ranks' agreement, leader-only testing and snapshots),
so that the loop never tests which launch it is in.
"""

from .comm import Communicator, SingleProcess, get_communicator
from .strategy import (
    DataParallelTraining,
    SingleProcessTraining,
    TrainingStrategy,
    training_strategy,
)

__all__ = ["Communicator", "DataParallelTraining", "SingleProcess", "SingleProcessTraining",
           "TrainingStrategy", "get_communicator", "training_strategy"]
