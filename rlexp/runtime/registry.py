"""A small generic registry: pluggable parts are looked up by name, unknown names list the choices.

A name of the form ``package.module:attribute`` is an import path (the Hydra/TRL convention): the
user's own function, imported on first use in whichever process looks it up (so it works under
every launcher, with no registration script), e.g. ``reward.components={my_pkg.rewards:brevity: 0.1}``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Generic, TypeVar

T = TypeVar("T")


class Registry(Generic[T]):
    """Maps names to objects (usually functions) of one kind, e.g. advantage estimators."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator: ``@ADVANTAGES.register("gae")``."""

        def wrap(obj: T) -> T:
            if name in self._items:
                raise KeyError(f"{self.kind} {name!r} is registered twice")
            self._items[name] = obj
            return obj

        return wrap

    def get(self, name: str) -> T:
        if name in self._items:
            return self._items[name]
        if ":" in name:
            return self._import(name)
        choices = ", ".join(sorted(self._items)) or "(none)"
        raise KeyError(
            f"unknown {self.kind} {name!r}; choose one of: {choices}, or give an import path "
            "package.module:function"
        )

    def _import(self, path: str) -> T:
        """The object at ``package.module:attribute`` (must be callable); KeyError says why not."""
        module_name, _, attr = path.partition(":")
        try:
            obj = importlib.import_module(module_name)
        except ImportError as err:  # ModuleNotFoundError, or an import inside the module
            raise KeyError(
                f"{self.kind} {path!r}: cannot import {module_name!r} ({err}); is it on "
                "PYTHONPATH or installed?"
            ) from None
        try:
            for part in attr.split("."):
                obj = getattr(obj, part)
        except AttributeError:
            raise KeyError(f"{self.kind} {path!r}: {module_name!r} has no {attr!r}") from None
        if not callable(obj):
            raise KeyError(f"{self.kind} {path!r} is not callable")
        return obj

    __getitem__ = get

    @contextmanager
    def scoped(self, items: Mapping[str, T]) -> Iterator[None]:
        """``items`` registered for the ``with`` block only (the Python API's own objects)."""
        clash = set(items) & set(self._items)
        if clash:
            raise KeyError(f"{self.kind} {', '.join(sorted(clash))} is already registered")
        self._items.update(items)
        try:
            yield
        finally:
            for name in items:
                self._items.pop(name, None)

    def __contains__(self, name: object) -> bool:
        """Registered, or an import path that resolves to a callable."""
        if name in self._items:
            return True
        if not isinstance(name, str) or ":" not in name:
            return False
        try:
            self._import(name)
        except KeyError:
            return False
        return True

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._items))

    def names(self) -> list[str]:
        return sorted(self._items)
