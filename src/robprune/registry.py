"""A small name -> object registry behind ``register_model``, ``register_attack``, ``register_criterion``
and ``register_objective``.

CLI choices, help text, suites and printed labels read the registries, so
adding a model, an attack, a pruning criterion or a training objective is one
file plus one decorator.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """Ordered mapping of unique names to entries, with a decorator to add them."""

    def __init__(self, kind: str) -> None:
        self.kind = kind  # "model", "attack", ...: used in error messages
        self._entries: dict[str, T] = {}
        self._info: dict[str, dict] = {}

    def register(self, name: str | None = None, **info) -> Callable[[T], T]:
        """Decorator: ``@registry.register("name", key=value)``; the function name when no name is given."""

        def add(entry: T) -> T:
            key = name or getattr(entry, "__name__", None)
            if not key:
                raise ValueError(f"a {self.kind} needs a name")
            if key in self._entries and self._entries[key] is not entry:
                raise ValueError(f"{self.kind} {key!r} is already registered")
            self._entries[key] = entry
            self._info[key] = dict(info)
            return entry

        return add

    def get(self, name: str) -> T:
        """The entry called ``name``; ValueError listing the choices otherwise."""
        if not isinstance(name, str) or name not in self._entries:
            raise ValueError(f"unknown {self.kind} {name!r}; choose one of {', '.join(self._entries)}")
        return self._entries[name]

    def info(self, name: str) -> dict:
        self.get(name)
        return dict(self._info[name])

    def names(self) -> list[str]:
        return list(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def describe(self) -> str:
        """'a, b, c': for help texts."""
        return ", ".join(self._entries)
