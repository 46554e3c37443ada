"""Registries keyed by Caffe's type strings (layers, solvers, lr policies, fillers)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from .errors import PyforgeError

T = TypeVar("T")


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
            raise UnknownNameError(
                f"{where}unknown {self.kind} '{name}' (known: {', '.join(self.names())})"
            ) from None

    def __contains__(self, name: object) -> bool:
        return name in self._entries or name in self._aliases

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
