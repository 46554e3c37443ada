"""Fixtures shared by the solver tests: capturing the messages of the ``pyforge`` logger."""

from __future__ import annotations

import logging

import pytest


class _ListHandler(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.fixture
def pyforge_log():
    """The list of messages logged to the ``pyforge`` logger during the test (INFO and up).

    A handler on the logger itself, so it works whether or not the logger propagates to the
    root (``pyforge.log.configure`` turns propagation off).
    """
    logger = logging.getLogger("pyforge")
    handler = _ListHandler()
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield handler.messages
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
