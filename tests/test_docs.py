"""README is the front door: every `edgedl` command it shows must exist, and the quick start
and test commands must be the ones the Makefile and CI run."""

from __future__ import annotations

import re
import shlex
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from app.cli import cli

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def _commands() -> list[list[str]]:
    found = []
    for block in re.findall(r"```(?:bash|sh|console)?\n(.*?)```", README, flags=re.S):
        for line in block.splitlines():
            line = line.strip().removeprefix("$ ")
            if line.startswith("edgedl "):
                words = shlex.split(line.split(" #")[0])[1:]
                path = []
                for w in words:
                    if w.startswith("-") or not re.fullmatch(r"[a-z][a-z0-9-]*", w):
                        break
                    path.append(w)
                found.append(path)
    return found


def _resolve(path: list[str]) -> list[str]:
    """The longest prefix of `path` that names a command (the rest are arguments)."""
    cmd, used = cli, []
    for w in path:
        sub = getattr(cmd, "commands", {}).get(w)
        if sub is None:
            break
        cmd, used = sub, [*used, w]
    return used


def test_readme_shows_commands():
    assert len(_commands()) >= 10


@pytest.mark.parametrize("path", _commands(), ids=lambda p: " ".join(p) or "edgedl")
def test_readme_command_exists(path):
    used = _resolve(path)
    assert used, f"`edgedl {' '.join(path)}` in README is not a command"
    r = CliRunner().invoke(cli, [*used, "--help"])
    assert r.exit_code == 0, r.output


def test_quick_start_and_ci_agree():
    assert "make test" in README and "make app" in README
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in ci
    makefile = (ROOT / "Makefile").read_text()
    assert "pip install --quiet torch==2.13.0" in makefile


def test_cli_reference_is_generated_from_help():
    import subprocess
    import sys

    r = subprocess.run(
        [sys.executable, str(ROOT / "docs" / "cli_reference.py"), "--check"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert r.returncode == 0, r.stdout + r.stderr


def test_cli_reference_shows_each_command_s_real_options():
    """The reference renders with the settings the CLI runs with (-h beside --help)."""
    from click.testing import CliRunner

    from app.cli import cli

    sys.path.insert(0, str(ROOT / "docs"))
    try:
        import cli_reference
    finally:
        sys.path.remove(str(ROOT / "docs"))
    section = cli_reference.render()
    blocks = section.count("```text")
    assert blocks > 10 and section.count("-h, --help") == blocks
    r = CliRunner().invoke(cli, ["kb", "stats", "-h"])
    assert r.exit_code == 0 and "-h, --help" in r.output
