"""``python -m pyforge`` is the ``pyforge`` command."""

from .cli import main

raise SystemExit(main())
