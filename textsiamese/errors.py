"""Exception types: every error a user can cause is a ``TextSiameseError`` with a one-line message.

The CLI turns these into a single line on stderr and exit status 2; anything else is a bug and keeps its
traceback. Input errors name the file, the row and the column so a user can go straight to the bad cell.
"""

from __future__ import annotations

from pathlib import Path


class TextSiameseError(Exception):
    """Base class of the errors a user can cause (bad input, bad model directory, bad option)."""


class InputError(TextSiameseError, ValueError):
    """A data file (or in-memory dataset) that cannot be read as asked.

    ``line`` is the 1-based physical line of the file (the header is line 1), ``column`` the column name.
    """

    def __init__(
        self,
        source: str | Path,
        message: str,
        *,
        line: int | None = None,
        column: str | None = None,
    ) -> None:
        self.source = str(source)
        self.line = line
        self.column = column
        self.reason = message
        where = self.source
        if line is not None:
            where += f", line {line}"
        if column is not None:
            where += f", column {column!r}"
        self.location = where  # "FILE, line N, column 'C'": what precedes the reason in the message
        super().__init__(f"{where}: {message}")

    def __reduce__(self) -> tuple[object, ...]:
        # Pickled as its message and attributes, not its constructor arguments (which subclasses change):
        # an error raised in another process (a Ray worker, a DataLoader worker) arrives whole.
        return (_restore_error, (type(self), self.args, self.__dict__))


def _restore_error(cls: type[Exception], args: tuple[object, ...], state: dict[str, object]) -> Exception:
    error = cls.__new__(cls)
    Exception.__init__(error, *args)
    error.__dict__.update(state)
    return error


class ModelError(TextSiameseError):
    """A model directory that is missing files, has corrupted weights or an unknown layout."""


class ConfigError(TextSiameseError, ValueError):
    """An option or configuration value that is out of range or unknown."""
