"""Registries keyed by Caffe's type strings (layers, solvers, lr policies, fillers)."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from .errors import PyforgeError

T = TypeVar("T")

#: Registries up to this size list every name in an unknown-name error.
_LIST_ALL = 12


class UnknownNameError(PyforgeError):
    """A type string that no registry entry has."""


class Registry(Generic[T]):
    """Maps a Caffe type string to an implementation; unknown names list the known ones."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}
        self._aliases: dict[str, str] = {}

    def register(self, name: str, *aliases: str) -> Callable[[T], T]:
        """Decorator: register the decorated object under ``name`` (and legacy ``aliases``)."""

        def decorate(obj: T) -> T:
            if name in self._entries or name in self._aliases:
                raise ValueError(f"{self.kind} {name!r} registered twice")
            self._entries[name] = obj
            for alias in aliases:
                self._aliases[alias] = name
            return obj

        return decorate

    def get(self, name: str, context: str = "") -> T:
        key = self._aliases.get(name, name)
        try:
            return self._entries[key]
        except KeyError:
            where = f"{context}: " if context else ""
            raise UnknownNameError(f"{where}unknown {self.kind} '{name}' {self._hint(name)}"
                                   ) from None

    def _hint(self, name: str) -> str:
        """The known names, or for a long list the closest ones (an error stays one line)."""
        names = self.names()
        if len(names) <= _LIST_ALL:
            return f"(known: {', '.join(names)})"
        by_lower = {n.lower(): n for n in names}
        close = [by_lower[n] for n in difflib.get_close_matches(name.lower(), by_lower, n=3,
                                                                  cutoff=0.5)]
        guess = f"did you mean {' or '.join(repr(n) for n in close)}? " if close else ""
        return f"({guess}{len(names)} {self.kind}s are known)"

    def __contains__(self, name: object) -> bool:
        return name in self._entries or name in self._aliases

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
