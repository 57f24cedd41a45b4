"""Pieces shared by every command: JSON output and the error-to-exit-code edge."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from typing import Any

import click

EXIT_OK = 0
EXIT_NO_PLAN = 1
EXIT_BAD_INPUT = 2
EXIT_INTERNAL = 3  # a bug in edgedl itself; EDGEDL_DEBUG=1 shows the traceback
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE: the reader of our stdout closed it

json_option = click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")


def echo_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, default=str))


def _known_errors() -> tuple[type[BaseException], ...]:
    from advisor.errors import AdvisorError
    from kb.errors import KBError

    return (KBError, AdvisorError)


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
    except BrokenPipeError:
        # the reader went away (`edgedl kb tree | head`): not an error of ours. Point stdout
        # at /dev/null so the interpreter's final flush does not raise again, and exit as a
        # process stopped by SIGPIPE would.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        sys.exit(EXIT_BROKEN_PIPE)
    except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
        raise  # usage errors and clean exits: click prints and exits as it should
    except Exception as exc:  # noqa: BLE001 - the edge: a one-line message, never a traceback
        if os.environ.get("EDGEDL_DEBUG"):
            raise
        click.echo(
            f"internal error: {type(exc).__name__}: {exc} — this is a bug in edgedl; rerun "
            "with EDGEDL_DEBUG=1 for the traceback and report it",
            err=True,
        )
        sys.exit(EXIT_INTERNAL)
