"""Errors of the speed models: an unknown name always lists the valid ones."""

from __future__ import annotations

from collections.abc import Iterable


class UnknownNameError(ValueError):
    """A job type, application, model or GPU type the data does not have."""

    def __init__(self, kind: str, name: object, valid: Iterable[object]) -> None:
        self.kind = kind
        self.name = name
        self.valid = tuple(sorted(str(item) for item in valid))
        super().__init__(f"unknown {kind} {name!r}; valid: {', '.join(self.valid)}")


class ProfileDataError(ValueError):
    """A profile file that cannot be used, named with the reason."""

    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"{path}: {reason}")
