"""Training insight: reading training logs, plotting them, lr schedules and net diagnosis.

- :mod:`.parse_log`: Caffe's and pyforge's glog logs (and pyforge's metrics JSONL) as tables,
  written as Caffe's ``tools/extra/parse_log.py`` writes them (``pyforge parse-log``).
- :mod:`.plot`: loss, test metrics and learning rate against iterations (``pyforge plot``).
- :mod:`.lr_schedule`: a solver's learning-rate schedule without training (``pyforge lr``).
- :mod:`.diagnose`: per-layer activation, gradient and update statistics over a few training
  iterations, with findings (``pyforge diagnose``).

The modules that draw import matplotlib only when they draw; it is the optional ``plot`` extra.
"""
