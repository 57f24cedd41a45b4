"""Pieces shared by every command: JSON output and the error-to-exit-code edge."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any

import click

EXIT_OK = 0
EXIT_NO_PLAN = 1
EXIT_BAD_INPUT = 2

json_option = click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")


def echo_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, default=str))


def _known_errors() -> tuple[type[BaseException], ...]:
    from kb.errors import KBError

    errors: list[type[BaseException]] = [KBError]
    try:
        from advisor.errors import AdvisorError

        errors.append(AdvisorError)
    except ImportError:  # advisor not built yet in a partial checkout
        pass
    return tuple(errors)


def run_guarded(fn: Callable[[], Any]) -> Any:
    """Run a command; turn expected errors into a one-line message and exit code 2."""
    try:
        return fn()
    except _known_errors() as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_BAD_INPUT)
    except (FileNotFoundError, IsADirectoryError, PermissionError) as exc:
        click.echo(f"error: {exc.strerror or exc}: {exc.filename}", err=True)
        sys.exit(EXIT_BAD_INPUT)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)
