"""The knowledge base as an SQLite database, built from `data/kb/` with sqlite-utils.

The database is a cache of the YAML files: its file name carries the data's digest, so a change
to any file leads to a rebuild. A rebuild writes a temporary file next to the target and renames
it into place, so a reader never sees a half-built database. It needs no server and works
offline right after install.
"""

from __future__ import annotations

import json
import os
import sqlite3
import tempfile
from pathlib import Path

from kb.loader import KBData

SCHEMA_VERSION = 1
FTS_COLUMNS = ["name", "title", "authors", "summary", "mechanism"]


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


def connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)
    conn.row_factory = sqlite3.Row
    return conn
