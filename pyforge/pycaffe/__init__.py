"""pycaffe's Python API on pyforge: ``import pyforge as caffe`` runs pycaffe scripts.

The modules follow pycaffe's (``python/caffe``) names and semantics:

- :mod:`.net`: ``Net`` (a subclass of pyforge's internal Net with pycaffe's methods);
- :mod:`.solver`: ``SGDSolver`` ... ``AdamSolver`` and ``get_solver``;
- :mod:`.switches`: ``set_mode_cpu``/``set_mode_gpu``/``set_device``/``set_random_seed`` and
  the other process-wide switches pycaffe has (the only global state of the API);
- :mod:`.io`: ``Transformer``, image loading and resizing, proto/array conversions;
- :mod:`.net_spec`: ``NetSpec``, ``layers``, ``params``, ``to_proto``;
- :mod:`.draw`: drawing a net's layer graph with matplotlib (no graphviz binary needed);
- :mod:`.classifier`: ``Classifier``.

``pyforge/__init__.py`` imports these lazily, so ``import pyforge`` stays cheap.
"""
