"""CLI command groups, one module each. Add a group by importing it in `GROUPS`."""

from __future__ import annotations

import importlib

import click

# module name -> attribute holding the click command or group
_GROUP_MODULES: tuple[tuple[str, str], ...] = (
    ("app.commands.kb", "kb"),
    ("app.commands.advise", "advise_command"),
    ("app.commands.sweep", "sweep_command"),
    ("app.commands.appcmd", "app_command"),
    ("app.commands.agent", "agent"),
    ("app.commands.hardware", "hardware"),
    ("app.commands.profile", "profile"),
    ("app.commands.zoo", "zoo"),
    ("app.commands.report", "report"),
    ("app.commands.report", "runs"),
)


def GROUPS() -> list[click.Command]:  # noqa: N802 - reads like a constant at the call site
    return [getattr(importlib.import_module(m), attr) for m, attr in _GROUP_MODULES]
