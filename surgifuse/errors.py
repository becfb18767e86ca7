"""Errors that mean "the input is wrong", as opposed to a bug in SurgiFuse.

Every check of what a caller, a user or a file gave us raises ``InputError`` (or ``InputTypeError``
for a value of the wrong type), carrying what it is about: ``field`` (an option or setting name),
``file`` (a path or upload name) and ``allowed`` (what would have been accepted). The CLI prints an
``InputError`` as one line and exits 2, the service answers 4xx with ``field`` and ``file`` in the
JSON body; anything else is a bug and keeps its traceback.

Both subclass the built-in ``ValueError`` (and ``TypeError``), so callers that catch those still do.
"""

from __future__ import annotations

__all__ = ["INPUT_ERRORS", "InputError", "InputTypeError"]


class InputError(ValueError):
    """Bad input: the message names the problem; ``field``, ``file`` and ``allowed`` say where and what."""

    def __init__(self, message: str, *, field: str | None = None, file: str | None = None,
                 allowed: str | None = None) -> None:
        super().__init__(message)
        self.field = field
        self.file = None if file is None else str(file)
        self.allowed = allowed

    def as_dict(self) -> dict:
        """``{"detail": message, "field": ..., "file": ..., "allowed": ...}`` for a JSON error body."""
        return {"detail": str(self), "field": self.field, "file": self.file, "allowed": self.allowed}


class InputTypeError(InputError, TypeError):
    """Bad input of the wrong type (a ``TypeError`` too)."""


#: What the CLI reports as bad input (one line, exit 2) rather than as a bug: ``InputError`` and the
#: file-system errors that name a path the user gave.
INPUT_ERRORS = (InputError, FileNotFoundError, NotADirectoryError, IsADirectoryError, PermissionError)
