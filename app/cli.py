"""`edgedl`: the one command-line entry point.

Each command group lives in its own module under `app/commands/`; this file only assembles
them and turns the packages' errors into exit codes (0 ok, 1 no plan met the target,
2 bad input) with a one-line message on stderr, never a traceback.
"""

from __future__ import annotations

import sys

import click

from app.commands import GROUPS


class _Main(click.Group):
    def invoke(self, ctx: click.Context):  # type: ignore[override]
        from app.commands._common import run_guarded

        return run_guarded(lambda: super(_Main, self).invoke(ctx))


@click.group(cls=_Main, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="edgedl-advisor", prog_name="edgedl")
def cli() -> None:
    """EdgeDL Advisor: the Edge DL knowledge base and a design advisor that validates every
    plan it ranks by running it in ONNX Runtime."""


for _group in GROUPS():
    cli.add_command(_group)


def main(argv: list[str] | None = None) -> None:
    cli.main(args=argv, prog_name="edgedl", standalone_mode=True)


if __name__ == "__main__":  # pragma: no cover
    main(sys.argv[1:])
