"""`edgedl kb` through click's test runner, and the exit-code contract."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from click.testing import CliRunner

from app.cli import cli


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("EDGEDL_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "edgedl-cache"))


def run(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_search_json():
    r = run("kb", "search", "early exit", "--json", "--limit", "30")
    assert r.exit_code == 0
    ids = {h["id"] for h in json.loads(r.output)}
    assert {"branchynet", "edgent", "ddnn"} <= ids


def test_search_facets_and_table():
    r = run("kb", "search", "quantization", "--kind", "technique", "--since", "2015")
    assert r.exit_code == 0 and "technique" in r.output


def test_show_and_json():
    r = run("kb", "show", "neurosurgeon")
    assert r.exit_code == 0 and "Neurosurgeon" in r.output and "partition.chain" in r.output
    data = json.loads(run("kb", "show", "neurosurgeon", "--json").output)
    assert data["id"] == "neurosurgeon" and data["path"][-1] == "inference"


def test_tree():
    r = run("kb", "tree", "inference.partition", "--entries")
    assert r.exit_code == 0 and "Neurosurgeon" in r.output


@pytest.mark.parametrize("fmt", ["md", "csv", "json"])
def test_compare(fmt):
    r = run("kb", "compare", "neurosurgeon", "dads", "jalad", "--format", fmt)
    assert r.exit_code == 0 and "DADS" in r.output


def test_compare_takes_json_like_every_command_that_prints_data():
    r = run("kb", "compare", "neurosurgeon", "dads", "--json")
    assert r.exit_code == 0
    assert json.loads(r.output) == json.loads(run("kb", "compare", "neurosurgeon", "dads",
                                                  "--format", "json").output)  # fmt: skip


def test_a_closed_pipe_is_a_quiet_exit_not_a_bug():
    """`edgedl kb tree | head -2`: the reader goes away; no 'internal error' line."""
    code = (
        "from app.commands._common import run_guarded\n"
        "def write():\n    raise BrokenPipeError(32, 'Broken pipe')\n"
        "run_guarded(write)\n"
    )
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert p.returncode == 141 and p.stderr == ""


@pytest.mark.parametrize("fmt", ["json", "csv", "bibtex", "md"])
def test_export(fmt, tmp_path):
    out = tmp_path / f"kb.{fmt}"
    r = run("kb", "export", "--format", fmt, "-o", str(out))
    assert r.exit_code == 0 and out.stat().st_size > 1000


def test_stats_json():
    s = json.loads(run("kb", "stats", "--json").output)
    assert s["entries"] >= 150 and s["entries_with_claims"] >= 60 and not s["empty_categories"]


def test_unknown_id_exits_2_with_one_line(tmp_path):
    """Through a real process: one line on stderr, no traceback, exit code 2."""
    p = subprocess.run(
        [sys.executable, "-m", "app.cli", "kb", "show", "no-such-thing"],
        capture_output=True,
        text=True,
        timeout=60,
        env={"EDGEDL_CACHE_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"},
    )
    assert p.returncode == 2
    assert p.stderr.strip().count("\n") == 0 and "unknown id 'no-such-thing'" in p.stderr
    assert "Traceback" not in p.stderr


def test_bad_kind_is_usage_error():
    r = CliRunner().invoke(cli, ["kb", "search", "x", "--kind", "gadget"])
    assert r.exit_code == 2 and "unknown kind" in r.output


def test_unexpected_failure_is_one_line_exit_3(monkeypatch):
    """A bug inside a command still reaches the user as one line, exit 3, no traceback."""
    import kb

    def boom(*a, **k):
        raise RuntimeError("simulated bug")

    monkeypatch.setattr(kb.KnowledgeBase, "open", boom)
    r = CliRunner().invoke(cli, ["kb", "stats"])
    assert r.exit_code == 3 and "internal error: RuntimeError: simulated bug" in r.output
    assert "Traceback" not in r.output
