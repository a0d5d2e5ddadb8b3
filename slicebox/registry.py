"""A tiny registry of named implementations (policies, backends), with aliases.

An unknown name lists the valid ones; a dotted path ``package.module:Class`` or
``package.module.Class`` loads a user's own implementation.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Generic, TypeVar, cast

from slicebox.errors import InputError

T = TypeVar("T")


class RegistryError(InputError, LookupError):
    pass


class Registry(Generic[T]):
    def __init__(self, what: str, base: type) -> None:
        self._what = what
        self._base = base
        self._entries: dict[str, type[T]] = {}
        self._aliases: dict[str, str] = {}

    def register(self, name: str, *aliases: str) -> Callable[[type[T]], type[T]]:
        def decorator(cls: type[T]) -> type[T]:
            self._entries[name] = cls
            for alias in aliases:
                self._aliases[alias] = name
            return cls

        return decorator

    def names(self) -> list[str]:
        return sorted(self._entries)

    def get(self, name: str) -> type[T]:
        key = name.strip().lower()
        key = self._aliases.get(key, key)
        if key in self._entries:
            return self._entries[key]
        if "." in name or ":" in name:
            return self._load(name)
        raise RegistryError(f"unknown {self._what} {name!r}; valid: {', '.join(self.names())} "
                            f"(or a dotted path to your own class)")

    def _load(self, path: str) -> type[T]:
        module_name, _, attr = path.replace(":", ".").rpartition(".")
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise RegistryError(f"cannot import {module_name!r} for {self._what} {path!r}: "
                                f"{exc}") from None
        cls = getattr(module, attr, None)
        if cls is None:
            raise RegistryError(f"module {module_name!r} has no {attr!r}")
        if not (isinstance(cls, type) and issubclass(cls, self._base)):
            raise RegistryError(f"{path!r} is not a subclass of {self._base.__name__}")
        return cast("type[T]", cls)
