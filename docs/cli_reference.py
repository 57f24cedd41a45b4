"""Generate README's CLI reference from the commands' own `--help`, so it cannot drift.

    python docs/cli_reference.py          # rewrite the section in README.md
    python docs/cli_reference.py --check  # exit 1 if README's section is out of date

tests/test_docs.py runs the check.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

README = Path(__file__).resolve().parent.parent / "README.md"
START, END = "<!-- cli-reference:start -->", "<!-- cli-reference:end -->"


def _walk(cmd: click.Command, path: list[str]):
    yield path, cmd
    if isinstance(cmd, click.Group):
        for name in sorted(cmd.commands):
            yield from _walk(cmd.commands[name], [*path, name])


def render() -> str:
    from app.cli import cli

    out = [START, "", "Generated from `--help` by `python docs/cli_reference.py`.", ""]
    for path, cmd in _walk(cli, ["edgedl"]):
        if isinstance(cmd, click.Group) and len(path) > 1:
            continue  # a group's subcommands carry the detail
        # the root's context settings (-h beside --help) reach every command, as at run time
        with click.Context(
            cmd,
            info_name=" ".join(path),
            terminal_width=100,
            max_content_width=100,
            **cli.context_settings,
        ) as ctx:
            text = cmd.get_help(ctx)
        out += [f"### `{' '.join(path)}`", "", "```text", text.rstrip(), "```", ""]
    out.append(END)
    return "\n".join(out)


def splice(readme: str, section: str) -> str:
    if START not in readme or END not in readme:
        raise SystemExit(f"README.md lacks the markers {START} ... {END}")
    head, rest = readme.split(START, 1)
    _, tail = rest.split(END, 1)
    return head + section + tail


def main() -> int:
    current = README.read_text()
    wanted = splice(current, render())
    if "--check" in sys.argv:
        if current != wanted:
            print("README.md's CLI reference is out of date: run python docs/cli_reference.py")
            return 1
        return 0
    README.write_text(wanted)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
