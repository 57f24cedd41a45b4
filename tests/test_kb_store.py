"""The SQLite store: an unusable cached database is moved aside and rebuilt, with a notice."""

from __future__ import annotations

import os
import shutil

import pytest

from kb import KnowledgeBase, store
from kb.loader import data_digest


@pytest.fixture(scope="module")
def good_db(tmp_path_factory):
    """A correctly built database to damage (built once: building takes a moment)."""
    cache = tmp_path_factory.mktemp("good")
    return KnowledgeBase.open(cache_dir=cache).db_path


def _random_bytes(path, good):
    path.write_bytes(os.urandom(8192))


def _empty(path, good):
    path.write_bytes(b"")


def _half(path, good):
    data = good.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _folder(path, good):
    path.mkdir()
    (path / "something").write_text("x")


def _no_fts(path, good):
    import sqlite3

    shutil.copy(good, path)
    conn = sqlite3.connect(path)
    conn.execute("DROP TABLE entries_fts")
    conn.commit()
    conn.close()


@pytest.mark.parametrize(
    ("damage", "why"),
    [
        (_random_bytes, "cannot be"),
        (_empty, "no such table"),
        (_half, ""),
        (_folder, "folder"),
        (_no_fts, "entries_fts"),
    ],
    ids=["random-bytes", "empty", "half-truncated", "folder", "no-fts-table"],
)
def test_unusable_database_is_moved_aside_and_rebuilt(tmp_path, good_db, damage, why):
    path = store.db_path_for(data_digest(), tmp_path)
    damage(path, good_db)
    assert store.problem(path) is not None
    base = KnowledgeBase.open(cache_dir=tmp_path)
    assert base.db_path == path and store.problem(path) is None
    assert [h.id for h in base.search("neurosurgeon", limit=1)] == ["neurosurgeon"]
    assert len(base.notices) == 1 and why in base.notices[0] and "moved it to" in base.notices[0]
    moved = [p for p in tmp_path.iterdir() if ".broken-" in p.name]
    assert len(moved) == 1 and moved[0].name in base.notices[0]
    again = KnowledgeBase.open(cache_dir=tmp_path)  # the rebuilt one is used as it is
    assert again.notices == () and again._data is None


def test_good_database_has_no_problem(good_db):
    assert store.problem(good_db) is None
    assert store.problem(good_db, digest="0" * 16) is not None  # built from other data


def test_cli_prints_the_notice_on_stderr(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from app.cli import cli

    monkeypatch.setenv("EDGEDL_CACHE_DIR", str(tmp_path))
    store.db_path_for(data_digest(), tmp_path).write_bytes(b"not a database at all" * 100)
    r = CliRunner().invoke(cli, ["kb", "search", "neurosurgeon", "--json"])
    assert r.exit_code == 0, r.output
    assert "notice: the knowledge-base database" in r.stderr
    assert r.stdout.lstrip().startswith("[")
