"""The export tests run ``pyforge export`` in-process under capsys; each main() call binds the
log handler to that test's stderr. Dropping it before each test keeps a net built before the
command (the seeded weights) from logging into a previous test's closed stream."""

from __future__ import annotations

import pytest

from pyforge.log import get_logger


@pytest.fixture(autouse=True)
def _no_stale_log_handler():
    logger = get_logger()
    for handler in list(logger.handlers):
        if getattr(handler, "_pyforge", False):
            logger.removeHandler(handler)
    yield
