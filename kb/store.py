"""The knowledge base as an SQLite database, built from `data/kb/` with sqlite-utils.

The database is a cache of the YAML files: its file name carries the data's digest, so a change
to any file leads to a rebuild. A rebuild writes a temporary file next to the target and renames
it into place, so a reader never sees a half-built database. It needs no server and works
offline right after install.

A database that cannot be read (random bytes, an empty or truncated file, a folder in its
place, a build of another schema) is not trusted: `problem(path)` says what is wrong with it,
and `move_aside(path)` renames it out of the way so that the caller can build a fresh one.
"""

from __future__ import annotations

import json
import os
import sqlite3
import tempfile
import time
from pathlib import Path

from kb.loader import KBData

SCHEMA_VERSION = 2
FTS_COLUMNS = ["name", "title", "authors", "summary", "mechanism"]
TABLES = ("meta", "categories", "entries", "claims", "relations", "entry_categories")


def default_cache_dir() -> Path:
    """`$EDGEDL_CACHE_DIR`, else `~/.cache/edgedl` (the advisor uses the same folder)."""
    env = os.environ.get("EDGEDL_CACHE_DIR")
    return Path(env) if env else Path.home() / ".cache" / "edgedl"


def db_path_for(digest: str, cache_dir: Path | None = None) -> Path:
    return (cache_dir or default_cache_dir()) / f"kb-v{SCHEMA_VERSION}-{digest}.sqlite"


def _rows(data: KBData):
    parents = {c.id: c.parent for c in data.categories}
    categories = [
        {
            "id": c.id,
            "name": c.name,
            "parent": c.parent,
            "description": c.description,
            "section": c.section,
        }
        for c in data.categories
    ]
    entries, claims, relations, memberships = [], [], [], []
    for e in data.entries:
        entries.append(
            {
                "id": e.id,
                "name": e.name,
                "kind": e.kind.value,
                "year": e.year,
                "venue": e.venue,
                "authors": e.authors,
                "title": e.title,
                "url": e.url,
                "summary": e.summary,
                "mechanism": e.mechanism,
                "model_families": json.dumps([f.value for f in e.applicability.model_families]),
                "tiers": json.dumps([t.value for t in e.applicability.tiers]),
                "advisor_action": e.advisor_action.value if e.advisor_action else None,
                "executable": int(e.executable),
                "n_claims": len(e.claims),
                "file": data.entry_files[e.id],
                "data": e.model_dump_json(),
            }
        )
        for i, c in enumerate(e.claims):
            claims.append(
                {
                    "entry_id": e.id,
                    "idx": i,
                    "metric": c.metric,
                    "value": c.value,
                    "unit": c.unit,
                    "baseline": c.baseline,
                    "setting": c.setting,
                    "source_paper": c.source.paper,
                    "source_location": c.source.location,
                    "source_version": c.source.version,
                    "checked_against": c.checked_against,
                }
            )
        for r in e.relations:
            relations.append({"source": e.id, "type": r.type.value, "target": r.target})
        # membership in each listed category and all its ancestors, for facet filtering
        seen: set[str] = set()
        for cid in e.categories:
            cur: str | None = cid
            while cur and cur not in seen:
                seen.add(cur)
                memberships.append(
                    {"entry_id": e.id, "category_id": cur, "direct": int(cur == cid)}
                )
                cur = parents.get(cur)
    return categories, entries, claims, relations, memberships


def build(data: KBData, path: Path) -> Path:
    """Write the database for `data` to `path` atomically; return `path`."""
    import sqlite_utils  # only needed to build: keeps `import kb` fast

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=".kb-", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        db = sqlite_utils.Database(tmp, recreate=True)
        categories, entries, claims, relations, memberships = _rows(data)
        db.table("meta").insert_all(
            [{"key": "digest", "value": data.digest}, {"key": "source", "value": data.source}],
            pk="key",
        )
        db.table("categories").insert_all(categories, pk="id")
        db.table("entries").insert_all(entries, pk="id")
        db.table("claims").insert_all(
            claims, pk=("entry_id", "idx"), foreign_keys=[("entry_id", "entries", "id")]
        )
        db.table("relations").insert_all(relations, foreign_keys=[("source", "entries", "id")])
        db.table("entry_categories").insert_all(memberships, pk=("entry_id", "category_id"))
        db.table("entry_categories").create_index(["category_id"])
        db.table("entries").enable_fts(FTS_COLUMNS, tokenize="porter", create_triggers=False)
        db.conn.commit()
        db.close()
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def problem(path: Path, digest: str | None = None) -> str | None:
    """None when `path` is a complete knowledge-base database (of `digest`, when given);
    otherwise what is wrong with it, in a few words."""
    if path.is_dir():
        return "it is a folder, not a database file"
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        return f"cannot be opened ({exc})"
    try:
        check = conn.execute("PRAGMA quick_check").fetchone()
        if check is None or check[0] != "ok":
            return f"fails SQLite's integrity check ({check[0] if check else 'no answer'})"
        for table in TABLES:
            conn.execute(f"SELECT 1 FROM {table} LIMIT 1").fetchall()
        conn.execute("SELECT rowid FROM entries_fts WHERE entries_fts MATCH 'x' LIMIT 1")
        row = conn.execute("SELECT value FROM meta WHERE key = 'digest'").fetchone()
        if row is None:
            return "it records no data digest"
        if digest is not None and row[0] != digest:
            return f"it was built from other data (digest {row[0]}, expected {digest})"
    except sqlite3.Error as exc:  # DatabaseError: not a database, malformed, missing table
        return f"cannot be read ({exc})"
    finally:
        conn.close()
    return None


def move_aside(path: Path) -> Path:
    """Rename the unusable database (file or folder) at `path` to a free name beside it."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    dest = path.with_name(f"{path.name}.broken-{stamp}")
    n = 1
    while dest.exists():
        n += 1
        dest = path.with_name(f"{path.name}.broken-{stamp}-{n}")
    os.replace(path, dest)
    return dest


def connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)
    conn.row_factory = sqlite3.Row
    return conn
