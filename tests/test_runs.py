"""advisor.runs.RunStore (SQLite via sqlite-utils) and `edgedl runs`."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import sqlite_utils
from _advice_fixtures import make_advice
from click.testing import CliRunner

from advisor.advice import Advice
from advisor.errors import ReportError, UnknownIdError
from advisor.report.renderers import render_json
from advisor.runs import DB_NAME, RunStore
from app.cli import cli

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def db(tmp_path) -> Path:
    return tmp_path / "runs.sqlite"


def test_save_list_get_across_instances(db):
    a, b = make_advice(), make_advice(recommended=False)
    first = RunStore(db).save(a, artifacts_dir=db.parent / "art")
    second = RunStore(db).save(b)
    other = RunStore(db)  # a fresh instance on the same file sees both
    rows = other.list()
    assert [r.id for r in rows] == [second, first]  # newest first
    assert rows[1].model == "digits_cnn" and rows[1].device == "rpi4"
    assert rows[1].recommended == "partition.chain" and rows[0].recommended is None
    assert rows[1].n_plans == 4 and rows[1].artifacts_dir == str((db.parent / "art").resolve())
    assert other.get(first) == a and other.get(second) == b
    assert len(other) == 2 and [r.id for r in other.list(limit=1)] == [second]


def test_a_run_saved_by_another_process_is_visible(db, tmp_path):
    src = tmp_path / "advice.json"
    src.write_text(render_json(make_advice()))
    store = RunStore(db)
    code = (
        "import sys; from advisor.runs import RunStore; from advisor.report.renderers import "
        "load_advice; print(RunStore(sys.argv[1]).save(load_advice(sys.argv[2])))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(db), str(src)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    run_id = out.stdout.strip()
    assert [r.id for r in store.list()] == [run_id]
    assert store.get(run_id).recommended == "partition.chain"


def test_one_store_shared_between_threads(db):
    store = RunStore(db)
    ids: list[str] = []
    threads = [
        threading.Thread(target=lambda: ids.append(store.save(make_advice()))) for _ in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(r.id for r in store.list()) == sorted(ids) and len(set(ids)) == 4


def test_unknown_id_names_it_and_how_to_list(db):
    store = RunStore(db)
    with pytest.raises(UnknownIdError, match=r"unknown run id 'nope'.*edgedl runs list"):
        store.get("nope")
    with pytest.raises(UnknownIdError):
        store.delete("nope")


def test_prefix_and_delete(db):
    store = RunStore(db)
    rid = store.save(make_advice())
    assert store.resolve(rid[:5]) == rid and store.get(rid[:5]).model.name == "digits_cnn"
    folder = Path("/tmp/x/partition.chain").resolve()  # the one plan with artifacts
    assert store.summary(rid[:5]).artifacts_dir == str(folder)
    with pytest.raises(UnknownIdError):
        store.resolve(rid[:3])  # too short to be a prefix
    assert store.resolve("latest") == rid
    store.delete(rid)
    assert store.list() == []
    with pytest.raises(UnknownIdError, match="no runs stored"):
        store.resolve("latest")
    with pytest.raises(UnknownIdError, match=rid):
        store.get(rid)


def test_ambiguous_prefix(db):
    store = RunStore(db)
    a = json.loads(render_json(make_advice()))
    rows = [
        {"id": f"abcd{i:08x}", "saved": f"2026-01-0{i + 1}", "advice_json": json.dumps(a)}
        for i in range(2)
    ]
    sqlite_utils.Database(db)["runs"].insert_all(rows)
    with pytest.raises(UnknownIdError, match="ambiguous"):
        store.resolve("abcd")
    assert store.resolve("abcd00000001") == "abcd00000001"


def test_default_path_is_in_the_cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGEDL_CACHE_DIR", str(tmp_path / "cache"))
    store = RunStore()
    assert store.path == tmp_path / "cache" / DB_NAME and store.path.exists()


def test_corrupt_database_and_unreadable_run(db, tmp_path):
    bad = tmp_path / "bad.sqlite"
    bad.write_bytes(b"this is not a database" * 100)
    with pytest.raises(ReportError, match="cannot be used"):
        RunStore(bad)
    store = RunStore(db)
    sqlite_utils.Database(db)["runs"].insert(
        {"id": "feedbeef0000", "saved": "2026", "advice_json": '{"old": 1}'}
    )
    with pytest.raises(
        ReportError, match="first at .*delete this one with `edgedl runs delete feedbeef0000`"
    ):
        store.get("feedbeef0000")


# --- CLI -----------------------------------------------------------------------------------


def run(*args: str):
    return CliRunner().invoke(cli, list(args))


def test_cli_runs_list_show_delete(db):
    rid = RunStore(db).save(make_advice())
    r = run("runs", "list", "--db", str(db), "--json")
    assert r.exit_code == 0 and [row["id"] for row in json.loads(r.output)] == [rid]
    r = run("runs", "list", "--db", str(db))
    assert r.exit_code == 0 and rid in r.output and "partition.chain" in r.output
    r = run("runs", "show", rid, "--db", str(db))
    assert r.exit_code == 0 and "recommended: partition.chain" in r.output
    assert "predicted_target" in r.output and "measured_host" in r.output
    r = run("runs", "show", rid, "--db", str(db), "--json")
    assert r.exit_code == 0 and Advice.model_validate_json(r.output).recommended
    assert run("runs", "delete", rid, "--db", str(db)).exit_code == 0
    r = run("runs", "show", rid, "--db", str(db))
    assert r.exit_code == 2 and len(r.output.strip().splitlines()) == 1
    assert f"unknown run id '{rid}'" in r.output
    assert "no stored runs" in run("runs", "list", "--db", str(db)).output
