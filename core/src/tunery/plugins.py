"""One registry per plugin kind, filled from entry points; built-ins are declared the same way as third parties.

A plugin that fails to load is a warning (the rest keep working); asking for an unknown name is an error that
lists the valid ones.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable
from importlib.metadata import EntryPoint, entry_points
from typing import Generic, TypeVar

from tunery.errors import InvalidArgument

log = logging.getLogger("tunery.plugins")
T = TypeVar("T")


class PluginLoadWarning(UserWarning):
    pass


class PluginRegistry(Generic[T]):
    def __init__(self, group: str, kind: str, *, check: Callable[[object], bool] | None = None) -> None:
        self.group = group
        self.kind = kind
        self.check = check
        self._loaded: dict[str, T] | None = None
        self._extra: dict[str, T] = {}
        self.failures: dict[str, str] = {}

    def _entry_points(self) -> list[EntryPoint]:
        return sorted(entry_points(group=self.group), key=lambda ep: ep.name)

    def _load(self) -> dict[str, T]:
        if self._loaded is None:
            loaded: dict[str, T] = {}
            for ep in self._entry_points():
                try:
                    obj = ep.load()
                    if self.check is not None and not self.check(obj):
                        raise TypeError(f"{ep.value} does not implement the {self.kind} protocol")
                    loaded[ep.name] = obj
                except Exception as err:
                    msg = f"{self.kind} plugin {ep.name!r} ({ep.value}) failed to load: {type(err).__name__}: {err}"
                    self.failures[ep.name] = msg
                    warnings.warn(msg, PluginLoadWarning, stacklevel=2)
                    log.warning(msg)
            self._loaded = loaded
        return {**self._loaded, **self._extra}

    def register(self, name: str, obj: T) -> None:
        """Add a plugin at run time (tests, embedding applications)."""
        self._extra[name] = obj

    def names(self) -> list[str]:
        return sorted(self._load())

    def all(self) -> dict[str, T]:
        return dict(sorted(self._load().items()))

    def get(self, name: str, *, field: str = "") -> T:
        plugins = self._load()
        if name in plugins:
            return plugins[name]
        valid = ", ".join(sorted(plugins)) or "none installed"
        hint = f" (it failed to load: {self.failures[name]})" if name in self.failures else ""
        raise InvalidArgument(
            f"unknown {self.kind} {name!r}{hint}; valid: {valid}",
            code=f"unknown_{self.kind.replace(' ', '_')}",
            field=field,
        )
