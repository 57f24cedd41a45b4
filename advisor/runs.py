"""Past advice runs, stored in SQLite (sqlite-utils) so that any process can reopen them.

`RunStore()` keeps its database at `cache_dir()/runs.sqlite` (or the path given). One row per
run: id, time, the request and the whole Advice as JSON, the folder of its artifacts, and a few
columns to list by. Every call opens its own short-lived connection, so one store object can
be shared across threads (Streamlit sessions) and a run saved by one process is visible to
another at once; the database is in WAL mode so readers do not block a writer.

>>> store = RunStore("/tmp/runs.sqlite")   # doctest: +SKIP
>>> run_id = store.save(advice, artifacts_dir="out/")   # doctest: +SKIP
>>> [r.id for r in store.list()] == [run_id]   # doctest: +SKIP
True
"""

from __future__ import annotations

import json
import os
import sqlite3
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, ValidationError

from advisor.advice import Advice
from advisor.errors import ReportError, UnknownIdError


def _sqlite_utils() -> ModuleType:
    """sqlite-utils, without the pandas import it makes when pandas is installed (0.2-0.4 s
    and ~40 MB of every `edgedl advise` that stores its run): it reads pandas only to map
    pandas Timestamps to TEXT, and no row here holds one. Where pandas is loaded already
    (the Streamlit app), nothing changes; a later `import pandas` works as usual."""
    if "sqlite_utils" in sys.modules or "pandas" in sys.modules:
        import sqlite_utils

        return sqlite_utils
    sys.modules["pandas"] = None  # type: ignore[assignment]  # import pandas -> ImportError
    try:
        import sqlite_utils
    finally:
        del sys.modules["pandas"]
    return sqlite_utils


if TYPE_CHECKING:
    import sqlite_utils
else:
    sqlite_utils = _sqlite_utils()

__all__ = ["RunStore", "RunSummary", "DB_NAME"]

DB_NAME = "runs.sqlite"
TABLE = "runs"
SWEEPS = "sweeps"  # one row per sweep: its id, name and SPEC (advisor.sweep)
MEMBERS = "sweep_members"  # (sweep_id, cell_key): the cells each sweep holds
_COLUMNS = {
    "id": str,
    "saved": str,
    "created": str,
    "model": str,
    "device": str,
    "edge": str,
    "cloud": str,
    "link": str,
    "latency_ms": float,
    "recommended": str,
    "n_plans": int,
    "artifacts_dir": str,
    "request_json": str,
    "advice_json": str,
    # set for runs made by a sweep (advisor.sweep); absent from databases made before sweeps
    "sweep_id": str,
    "cell_key": str,  # content hash of the model's bytes + the cell: what a resumed sweep skips
    "sweep_json": str,  # the sweep's record of the cell: node, fingerprint, timing interval
}
_SUMMARY_COLUMNS = (
    "id",
    "saved",
    "created",
    "model",
    "device",
    "edge",
    "cloud",
    "link",
    "latency_ms",
    "recommended",
    "n_plans",
    "artifacts_dir",
    "sweep_id",
)
MIN_PREFIX = 4
_SweepCells = list[dict[str, object]]  # (RunStore.list shadows `list` inside the class)
_Keys = list[str]


def _artifacts_folder(advice: Advice) -> str | None:
    """The request's out_dir, else the folder that holds every plan's artifacts."""
    if advice.request.out_dir:
        return str(Path(advice.request.out_dir).resolve())
    files = [str(Path(a).resolve()) for p in advice.plans for a in p.artifacts]
    if not files:
        return None
    folder = Path(os.path.commonpath(files))
    return str(folder.parent if len(set(files)) == 1 else folder)


class RunSummary(BaseModel):
    """One stored run, as listed (the Advice itself comes from `RunStore.get`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    saved: str  # when it was stored (UTC, ISO 8601)
    created: str  # when the advice was made
    model: str  # the model's name (the request's model is in the Advice)
    device: str
    edge: str | None = None
    cloud: str | None = None
    link: str | None = None
    latency_ms: float
    recommended: str | None = None
    n_plans: int
    artifacts_dir: str | None = None
    sweep_id: str | None = None  # the sweep that made it (`edgedl sweep`), if any


class RunStore:
    """Advice runs in one SQLite file; safe to share between threads and processes."""

    def __init__(self, path: str | Path | None = None, *, create: bool = True) -> None:
        """Open (with `create`, create when missing) the store at `path`. ReportError when it
        is missing and not to be created, is a folder or an empty file, or is not a database."""
        if path is None:
            from advisor.cache import cache_dir

            path = cache_dir() / DB_NAME
        self.path = Path(path)
        self._check_file(create)
        if not create:
            return  # an existing store is read as it is, never changed by opening it
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._db() as db:
            try:
                db.enable_wal()
            except sqlite3.OperationalError:  # another process holds it mid-switch: fine
                pass
            db.table(TABLE).create(
                _COLUMNS, pk="id", not_null={"id", "saved", "advice_json"}, if_not_exists=True
            )
            have = db.table(TABLE).columns_dict
            for name, kind in _COLUMNS.items():  # a database made before a column existed
                if name not in have:
                    db.table(TABLE).add_column(name, kind)
            db.table(TABLE).create_index(["saved"], if_not_exists=True)
            db.table(TABLE).create_index(["cell_key"], if_not_exists=True)
            db.table(SWEEPS).create(
                {"sweep_id": str, "name": str, "saved": str, "spec_json": str},
                pk="sweep_id",
                if_not_exists=True,
            )
            db.table(MEMBERS).create(
                {"sweep_id": str, "cell_key": str}, pk=("sweep_id", "cell_key"), if_not_exists=True
            )

    def _check_file(self, create: bool) -> None:
        if self.path.is_dir():
            raise ReportError(
                f"the runs database {self.path} is a folder; move it away, or give the file "
                "of a runs database"
            )
        if not self.path.exists():
            if not create:
                raise ReportError(
                    f"no runs database at {self.path}; give the path of an existing one "
                    "(runs are stored by `edgedl advise` and the app)"
                )
            return
        if self.path.is_file() and self.path.stat().st_size == 0:
            raise ReportError(
                f"the runs database {self.path} is an empty file (0 bytes), not a database "
                "(truncated?); move it away or delete it to start a fresh one"
            )

    def __repr__(self) -> str:
        return f"RunStore({str(self.path)!r})"

    @contextmanager
    def _db(self) -> Iterator[sqlite_utils.Database]:
        try:
            conn = sqlite3.connect(self.path, timeout=30.0)
        except sqlite3.Error as exc:
            raise ReportError(f"the runs database {self.path} cannot be opened ({exc})") from None
        try:
            yield sqlite_utils.Database(conn)
        except sqlite3.OperationalError as exc:  # locked, disk full, ...: as it is
            if "no such table" in str(exc):
                raise ReportError(
                    f"{self.path} is not a runs database (it has no {TABLE!r} table); give "
                    "the file that `edgedl advise` stores runs in"
                ) from None
            raise ReportError(f"the runs database {self.path} cannot be used now ({exc})") from None
        except sqlite3.DatabaseError as exc:  # not a database, or a corrupt one
            raise ReportError(
                f"the runs database {self.path} cannot be used ({exc}); move it "
                "away or delete it to start a fresh one"
            ) from None
        finally:
            conn.close()

    def save(
        self,
        advice: Advice,
        artifacts_dir: str | Path | None = None,
        *,
        sweep_id: str | None = None,
        cell_key: str | None = None,
        sweep_record: dict[str, object] | None = None,
    ) -> str:
        """Store a run; returns its new id (12 hex digits). `artifacts_dir` defaults to the
        request's out_dir, else the folder holding every plan's artifact files. A sweep tags
        its runs with `sweep_id`, the cell's `cell_key` and its `sweep_record` (JSON)."""
        run_id = uuid.uuid4().hex[:12]
        req = advice.request
        row = {
            "id": run_id,
            "saved": datetime.now(UTC).isoformat(timespec="microseconds"),
            "created": advice.created,
            "model": advice.model.name,
            "device": req.device,
            "edge": req.edge,
            "cloud": req.cloud,
            "link": req.link or "custom",
            "latency_ms": req.latency_ms,
            "recommended": advice.recommended,
            "n_plans": len(advice.plans),
            "artifacts_dir": str(Path(artifacts_dir).resolve())
            if artifacts_dir
            else _artifacts_folder(advice),
            "request_json": req.model_dump_json(),
            "advice_json": advice.model_dump_json(),
            "sweep_id": sweep_id,
            "cell_key": cell_key,
            "sweep_json": json.dumps(sweep_record) if sweep_record is not None else None,
        }
        with self._db() as db:
            db.table(TABLE).insert(row)  # sqlite-utils commits, so other processes see it now
        return run_id

    def list(self, limit: int | None = None) -> list[RunSummary]:
        """Stored runs, newest first."""
        sql = f"select {', '.join(_SUMMARY_COLUMNS)} from {TABLE} order by saved desc, rowid desc"
        params: list[int] = []
        if limit is not None:
            sql += " limit ?"
            params.append(limit)
        with self._db() as db:
            rows = [
                dict(zip(_SUMMARY_COLUMNS, r, strict=True))
                for r in db.execute(sql, params).fetchall()
            ]
        return [RunSummary(**r) for r in rows]

    def resolve(self, run_id: str) -> str:
        """The full id for `run_id`, a unique prefix of it (at least 4 characters), or
        'latest' (the newest run)."""
        key = run_id.strip()
        if key == "latest":
            newest = self.list(limit=1)
            if not newest:
                raise UnknownIdError(f"no runs stored in {self.path} yet; run `edgedl advise`")
            return newest[0].id
        with self._db() as db:
            if db.execute(f"select 1 from {TABLE} where id = ?", [key]).fetchone():
                return key
            hits = []
            if len(key) >= MIN_PREFIX and all(c in "0123456789abcdef" for c in key.lower()):
                hits = [
                    r[0]
                    for r in db.execute(
                        f"select id from {TABLE} where id like ? limit 2", [key.lower() + "%"]
                    )
                ]
        if len(hits) == 1:
            return hits[0]
        if len(hits) > 1:
            raise UnknownIdError(
                f"run id prefix {key!r} is ambiguous; give more characters (see `edgedl runs list`)"
            )
        raise UnknownIdError(
            f"unknown run id {key!r} in {self.path}; list the stored runs with `edgedl runs list`"
        )

    def summary(self, run_id: str) -> RunSummary:
        """The listing row of one run."""
        rid = self.resolve(run_id)
        with self._db() as db:
            row = db.table(TABLE).get(rid)
        return RunSummary(**{k: row[k] for k in _SUMMARY_COLUMNS})

    def get(self, run_id: str) -> Advice:
        """The stored Advice of a run (id or unique prefix)."""
        rid = self.resolve(run_id)
        with self._db() as db:
            text = db.table(TABLE).get(rid)["advice_json"]
        try:
            return Advice.model_validate_json(text)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(x) for x in first["loc"]) or "(top level)"
            raise ReportError(
                f"run {rid} cannot be read back ({exc.error_count()} problem(s); first at "
                f"{where}: {first['msg']}): it was stored by another version of edgedl, or "
                f"before a check that now refuses its request; run the advice again, and "
                f"delete this one with `edgedl runs delete {rid}`"
            ) from None

    def sweep_cells(self, sweep_id: str | None = None) -> _SweepCells:
        """Runs made by sweeps (all, or of one sweep), oldest first: id, sweep_id, cell_key
        and the sweep's record of the cell (decoded)."""
        sql = f"select id, sweep_id, cell_key, sweep_json from {TABLE} where sweep_id is not null"
        params: _Keys = []
        if sweep_id is not None:
            sql += " and sweep_id = ?"
            params.append(sweep_id)
        with self._db() as db:
            rows = db.execute(sql + " order by saved, rowid", params).fetchall()
        return [
            {"id": r[0], "sweep_id": r[1], "cell_key": r[2], "record": json.loads(r[3] or "{}")}
            for r in rows
        ]

    def record_sweep(
        self, sweep_id: str, name: str | None, spec_json: str, cell_keys: _Keys
    ) -> None:
        """Remember a sweep and the cells it holds (a cell stored by another sweep with the
        same content key belongs to both)."""
        with self._db() as db:
            db.table(SWEEPS).upsert(
                {
                    "sweep_id": sweep_id,
                    "name": name,
                    "saved": datetime.now(UTC).isoformat(timespec="seconds"),
                    "spec_json": spec_json,
                },
                pk="sweep_id",
            )
            db.table(MEMBERS).upsert_all(
                [{"sweep_id": sweep_id, "cell_key": k} for k in cell_keys],
                pk=("sweep_id", "cell_key"),
            )

    def sweeps(self) -> _SweepCells:
        """Recorded sweeps, oldest first: sweep_id, name, saved, cells (how many it holds)."""
        sql = (
            f"select s.sweep_id, s.name, s.saved, count(m.cell_key) from {SWEEPS} s "
            f"left join {MEMBERS} m on m.sweep_id = s.sweep_id group by s.sweep_id "
            "order by s.saved, s.rowid"
        )
        with self._db() as db:
            rows = db.execute(sql).fetchall()
        return [{"sweep_id": r[0], "name": r[1], "saved": r[2], "cells": r[3]} for r in rows]

    def sweep_members(self, sweep_id: str) -> _Keys:
        """The cell keys a recorded sweep holds, in its order."""
        with self._db() as db:
            rows = db.execute(
                f"select cell_key from {MEMBERS} where sweep_id = ? order by rowid", [sweep_id]
            ).fetchall()
        return [r[0] for r in rows]

    def stored_cells(self, cell_keys: _Keys) -> dict[str, str]:
        """{cell_key: run id} for the keys already stored (the newest run of each)."""
        out: dict[str, str] = {}
        with self._db() as db:
            for i in range(0, len(cell_keys), 500):
                chunk = cell_keys[i : i + 500]
                marks = ", ".join("?" for _ in chunk)
                for rid, key in db.execute(
                    f"select id, cell_key from {TABLE} where cell_key in ({marks}) "
                    "order by saved, rowid",
                    chunk,
                ):
                    out[key] = rid
        return out

    def delete(self, run_id: str) -> None:
        """Remove a run (its artifact files stay where they are)."""
        rid = self.resolve(run_id)
        with self._db() as db:
            db.table(TABLE).delete(rid)

    def __len__(self) -> int:
        with self._db() as db:
            return db.table(TABLE).count
