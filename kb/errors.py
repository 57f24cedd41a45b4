"""Errors raised by the knowledge base.

KBError                      base class; catch this at a program's edge
├── DataError                a data file is malformed or inconsistent (names file and entry)
└── UnknownIdError           an id asked for does not exist (names the id, suggests near ones)
"""

from __future__ import annotations


class KBError(Exception):
    """Base class of every knowledge-base error."""


class DataError(KBError):
    """A file under data/ is malformed, or its entries contradict each other."""

    def __init__(self, message: str, *, file: str | None = None, entry: str | None = None):
        where = ", ".join(
            p for p in (f"file {file}" if file else "", f"entry {entry!r}" if entry else "") if p
        )
        super().__init__(f"{where}: {message}" if where else message)
        self.file = file
        self.entry = entry


class UnknownIdError(KBError, KeyError):
    """No entry or category has the id that was asked for."""

    def __init__(self, ident: str, suggestions: list[str] | None = None):
        hint = f" Did you mean: {', '.join(suggestions)}?" if suggestions else ""
        super().__init__(f"unknown id {ident!r}.{hint} List ids with `edgedl kb search`.")
        self.ident = ident
        self.suggestions = suggestions or []

    def __str__(self) -> str:  # KeyError would otherwise quote the whole message
        return str(self.args[0])
