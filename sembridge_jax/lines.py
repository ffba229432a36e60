"""Numbered lines of a UTF-8 file and the error that names a bad one: the one reader every data file goes
through (data/, the bias text of bridge/frequency.py), so every layer reports `file:line` the same way."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path


class DataError(ValueError):
    """A malformed data record; the message names the file and line (or dataset row)."""


def numbered_lines(path: str | Path) -> Iterator[tuple[int, str | None]]:
    """(1-based line number, line without its line break) for every non-blank line of a UTF-8 file;
    the line is None when its bytes are not valid UTF-8, so the caller can name file:line or skip it."""
    with open(path, "rb") as f:
        for number, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8").rstrip("\n").rstrip("\r")
            except UnicodeDecodeError:
                yield number, None
                continue
            if line.strip():
                yield number, line
