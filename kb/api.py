"""`KnowledgeBase`: the query API over the Edge DL knowledge base.

>>> kb = KnowledgeBase.open()                      # bundled data, cached SQLite database
>>> [h.id for h in kb.search("early exit")][:3]    # doctest: +SKIP
['branchynet', 'edgent', 'ddnn']
"""

from __future__ import annotations

import difflib
import json
import re
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict

from kb import export as _export
from kb import store
from kb.errors import UnknownIdError
from kb.loader import DEFAULT_DATA_DIR, KBData, data_digest, load
from kb.schema import Category, Entry, EntryKind

if TYPE_CHECKING:
    import networkx as nx


def _graph_module():
    """kb.graph, imported on first use: networkx is slow to import, and `import kb` is kept
    light for the CLI (search needs no graph)."""
    from kb import graph

    return graph


_WORD = re.compile(r"[A-Za-z0-9]+")


class SearchHit(BaseModel):
    model_config = ConfigDict(frozen=True)
    id: str
    name: str
    kind: str
    year: int | None
    categories: list[str]
    advisor_action: str | None
    score: float
    snippet: str


class TreeNode(BaseModel):
    model_config = ConfigDict(frozen=True)
    id: str
    name: str
    type: str  # 'category' | 'entry'
    count: int  # entries in this subtree (1 for an entry)
    children: list[TreeNode] = []


class Comparison(BaseModel):
    """Entries side by side: one row per attribute, one column per entry."""

    model_config = ConfigDict(frozen=True)
    ids: list[str]
    names: list[str]
    rows: list[tuple[str, list[str]]]

    def to_markdown(self) -> str:
        return _export.markdown_table(
            ["attribute", *self.names], [[a, *vals] for a, vals in self.rows]
        )

    def to_csv(self) -> str:
        import csv
        import io

        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(["attribute", *self.names])
        for a, vals in self.rows:
            w.writerow([a, *vals])
        return buf.getvalue()

    def to_json(self) -> str:
        return json.dumps(
            {
                "ids": self.ids,
                "names": self.names,
                "rows": {a: dict(zip(self.ids, v, strict=True)) for a, v in self.rows},
            },
            indent=2,
        )


def _fts_query(text: str) -> str:
    """Words of the query, each as a prefix term, OR-ed; bm25 ranks entries matching more first.

    Quoting every word keeps FTS5 syntax characters in user text from raising errors.
    """
    words = _WORD.findall(text)
    return " OR ".join(f'"{w.lower()}"*' for w in words)


class KnowledgeBase:
    """Read-only access to the knowledge base. Open with `KnowledgeBase.open()`."""

    def __init__(
        self,
        data_dir: Path,
        db_path: Path,
        data: KBData | None = None,
        notices: tuple[str, ...] = (),
    ):
        self.data_dir = data_dir
        self.db_path = db_path
        self._data = data
        self.notices = notices  # e.g. that an unreadable database was moved aside and rebuilt
        self._conn = store.connect(db_path)

    # --- construction -------------------------------------------------------------
    @classmethod
    def open(
        cls, data_dir: Path | str | None = None, cache_dir: Path | str | None = None
    ) -> KnowledgeBase:
        """Open the knowledge base in `data_dir` (bundled data by default).

        The SQLite database is (re)built atomically when the data changed since it was last
        built; otherwise the cached one is opened without parsing any YAML. A cached database
        that cannot be read is moved aside and rebuilt, and `notices` says so.
        """
        folder = Path(data_dir) if data_dir is not None else DEFAULT_DATA_DIR
        digest = data_digest(folder)
        path = store.db_path_for(digest, Path(cache_dir) if cache_dir else None)
        data = None
        notices: list[str] = []
        if path.exists() or path.is_symlink():
            why = store.problem(path, digest)
            if why is not None:
                moved = store.move_aside(path)
                notices.append(
                    f"the knowledge-base database {path} was unusable ({why}); "
                    f"moved it to {moved.name} and rebuilt it from {folder}"
                )
        if not path.exists():
            data = load(folder)  # validates everything; raises DataError naming file and entry
            store.build(data, path)
        return cls(folder, path, data, tuple(notices))

    @cached_property
    def data(self) -> KBData:
        if self._data is not None:
            return self._data
        cats = [
            Category.model_validate(dict(r))
            for r in self._conn.execute(
                "SELECT id, name, parent, description, section FROM categories"
            )
        ]
        rows = self._conn.execute("SELECT id, file, data FROM entries ORDER BY rowid").fetchall()
        entries = tuple(Entry.model_validate_json(r["data"]) for r in rows)
        source = self._conn.execute("SELECT value FROM meta WHERE key='source'").fetchone()[0]
        digest = self._conn.execute("SELECT value FROM meta WHERE key='digest'").fetchone()[0]
        return KBData(source, tuple(cats), entries, {r["id"]: r["file"] for r in rows}, digest)

    @cached_property
    def graph(self) -> nx.DiGraph:
        return _graph_module().build_graph(self.data)

    @cached_property
    def _entries(self) -> dict[str, Entry]:
        return {e.id: e for e in self.data.entries}

    @cached_property
    def _categories(self) -> dict[str, Category]:
        return {c.id: c for c in self.data.categories}

    # --- lookups ------------------------------------------------------------------
    def _unknown(self, ident: str) -> UnknownIdError:
        ids = [
            r[0]
            for r in self._conn.execute("SELECT id FROM entries UNION SELECT id FROM categories")
        ]
        return UnknownIdError(ident, difflib.get_close_matches(ident, ids, n=3, cutoff=0.6))

    def get(self, ident: str) -> Entry:
        row = self._conn.execute("SELECT data FROM entries WHERE id = ?", (ident,)).fetchone()
        if row is None:
            raise self._unknown(ident)
        return Entry.model_validate_json(row["data"])

    def category(self, ident: str) -> Category:
        if ident not in self._categories:
            raise self._unknown(ident)
        return self._categories[ident]

    def exists(self, ident: str) -> bool:
        return ident in self._entries or ident in self._categories

    @property
    def entries(self) -> list[Entry]:
        return list(self.data.entries)

    @property
    def categories(self) -> list[Category]:
        return list(self.data.categories)

    def by_action(self, action: str) -> list[Entry]:
        """Entries whose technique the advisor plan kind `action` executes."""
        rows = self._conn.execute(
            "SELECT data FROM entries WHERE advisor_action = ? ORDER BY year", (action,)
        )
        return [Entry.model_validate_json(r["data"]) for r in rows]

    # --- search -------------------------------------------------------------------
    def search(
        self,
        text: str = "",
        *,
        category: str | None = None,
        kind: str | None = None,
        since: int | None = None,
        model_family: str | None = None,
        tier: str | None = None,
        executable: bool | None = None,
        limit: int = 50,
    ) -> list[SearchHit]:
        """Full-text search (FTS5, porter stemming, bm25 weighted to names) with facets."""
        if category is not None and category not in self._category_ids():
            raise self._unknown(category)
        if kind is not None and kind not in {k.value for k in EntryKind}:
            raise ValueError(
                f"unknown kind {kind!r}; use one of {', '.join(k.value for k in EntryKind)}"
            )
        where: list[str] = []
        params: list[object] = []
        if category:
            where.append("e.id IN (SELECT entry_id FROM entry_categories WHERE category_id = ?)")
            params.append(category)
        if kind:
            where.append("e.kind = ?")
            params.append(kind)
        if since is not None:
            where.append("e.year >= ?")
            params.append(since)
        if model_family:
            where.append(
                "(EXISTS (SELECT 1 FROM json_each(e.model_families) WHERE value IN (?, 'any')))"
            )
            params.append(model_family)
        if tier:
            where.append("(EXISTS (SELECT 1 FROM json_each(e.tiers) WHERE value = ?))")
            params.append(tier)
        if executable is not None:
            where.append("e.executable = ?")
            params.append(int(executable))
        q = _fts_query(text)
        cond = (" AND " + " AND ".join(where)) if where else ""
        if q:
            sql = (
                "SELECT e.id, e.name, e.kind, e.year, e.advisor_action, "
                "bm25(entries_fts, 10.0, 4.0, 2.0, 2.0, 1.0) AS rank, "
                "snippet(entries_fts, 3, '[', ']', '…', 12) AS snip "
                "FROM entries_fts JOIN entries e ON e.rowid = entries_fts.rowid "
                f"WHERE entries_fts MATCH ?{cond} ORDER BY rank LIMIT ?"
            )
            rows = self._conn.execute(sql, [q, *params, limit]).fetchall()
        else:
            sql = (
                "SELECT e.id, e.name, e.kind, e.year, e.advisor_action, 0.0 AS rank, "
                "substr(e.summary, 1, 120) AS snip FROM entries e "
                f"WHERE 1=1{cond} ORDER BY e.name COLLATE NOCASE LIMIT ?"
            )
            rows = self._conn.execute(sql, [*params, limit]).fetchall()
        cats = self._direct_categories([r["id"] for r in rows])
        return [
            SearchHit(
                id=r["id"],
                name=r["name"],
                kind=r["kind"],
                year=r["year"],
                categories=cats.get(r["id"], []),
                advisor_action=r["advisor_action"],
                score=round(-float(r["rank"]), 4),
                snippet=r["snip"] or "",
            )
            for r in rows
        ]

    def _category_ids(self) -> set[str]:
        return {r[0] for r in self._conn.execute("SELECT id FROM categories")}

    def _direct_categories(self, ids: list[str]) -> dict[str, list[str]]:
        if not ids:
            return {}
        marks = ",".join("?" * len(ids))
        out: dict[str, list[str]] = {}
        for r in self._conn.execute(
            "SELECT entry_id, category_id FROM entry_categories "
            f"WHERE direct = 1 AND entry_id IN ({marks})",
            ids,
        ):
            out.setdefault(r[0], []).append(r[1])
        return out

    # --- structure ----------------------------------------------------------------
    def tree(self, root: str | None = None, with_entries: bool = False) -> list[TreeNode]:
        """The taxonomy (optionally with entries as leaves) below `root`, or all of it."""
        G = self.graph
        if root is not None and root not in G:
            raise self._unknown(root)

        def node(n: str) -> TreeNode:
            a = G.nodes[n]
            if a["type"] == "entry":
                return TreeNode(id=n, name=a["name"], type="entry", count=1)
            kids = [v for v in G.successors(n) if G.edges[n, v]["type"] == _graph_module().CONTAINS]
            cat_kids = [node(v) for v in kids if G.nodes[v]["type"] == "category"]
            entry_kids = sorted(
                (v for v in kids if G.nodes[v]["type"] == "entry"),
                key=lambda v: G.nodes[v]["name"].lower(),
            )
            count = len({v for v in _graph_module().subtree(G, n) if G.nodes[v]["type"] == "entry"})
            children = cat_kids + ([node(v) for v in entry_kids] if with_entries else [])
            return TreeNode(id=n, name=a["name"], type="category", count=count, children=children)

        roots = [root] if root else [c.id for c in self.data.categories if c.parent is None]
        return [node(r) for r in roots]

    def path_to_root(self, ident: str) -> list[str]:
        if ident not in self.graph:
            raise self._unknown(ident)
        return _graph_module().path_to_root(self.graph, ident)

    def related(
        self, ident: str, depth: int = 1, types: list[str] | None = None
    ) -> list[tuple[Entry, int]]:
        """Entries within `depth` relation hops, nearest first."""
        if ident not in self._entries:
            raise self._unknown(ident)
        found = _graph_module().related(self.graph, ident, depth=depth, types=types)
        return [(self._entries[i], d) for i, d in sorted(found.items(), key=lambda x: (x[1], x[0]))]

    def applicable(
        self,
        family: str | None = None,
        tier: str | None = None,
        constraints: list[str] | tuple[str, ...] = (),
    ) -> list[Entry]:
        return [
            self._entries[i]
            for i in _graph_module().applicable(self.graph, family, tier, constraints)
        ]

    def compare(self, ids: list[str]) -> Comparison:
        """A table of the entries' attributes and claims side by side."""
        if len(ids) < 2:
            raise ValueError("compare needs at least two ids")
        es = [self.get(i) for i in ids]

        def col(f) -> list[str]:
            return [f(e) for e in es]

        def claims(e: Entry) -> str:
            return "; ".join(f"{c.statement()} ({c.source.cite()})" for c in e.claims) or "—"

        rows = [
            ("kind", col(lambda e: e.kind.value)),
            ("categories", col(lambda e: ", ".join(e.categories))),
            ("year", col(lambda e: str(e.year or "—"))),
            ("venue", col(lambda e: e.venue or "—")),
            ("authors", col(lambda e: e.authors or "—")),
            (
                "model families",
                col(lambda e: ", ".join(f.value for f in e.applicability.model_families)),
            ),
            ("tiers", col(lambda e: ", ".join(t.value for t in e.applicability.tiers) or "—")),
            ("needs retraining", col(lambda e: "yes" if e.requirements.retraining else "no")),
            ("needs a server", col(lambda e: "yes" if e.requirements.server else "no")),
            ("needs labelled data", col(lambda e: "yes" if e.requirements.labelled_data else "no")),
            (
                "needs special hardware",
                col(lambda e: "yes" if e.requirements.special_hardware else "no"),
            ),
            (
                "advisor action",
                col(
                    lambda e: (
                        e.advisor_action.value
                        if e.advisor_action
                        else f"advice only: {e.advice_only_reason}"
                    )
                ),
            ),
            ("summary", col(lambda e: e.summary)),
            ("claims", col(claims)),
        ]
        return Comparison(ids=ids, names=[e.name for e in es], rows=rows)

    def export(self, fmt: str, ids: list[str] | None = None) -> str:
        """The whole knowledge base (or the given entries) as json, csv, bibtex or md."""
        es = [self.get(i) for i in ids] if ids else self.entries
        return _export.export(es, fmt)

    def _per_branch(self) -> dict[str, dict[str, int]]:
        """For each top-level branch: entries with and without claims, claims, checked claims.

        An entry counts once in every top-level branch that one of its categories lies under.
        """
        parents = {c.id: c.parent for c in self.data.categories}

        def top(cid: str) -> str:
            while parents.get(cid):
                cid = parents[cid]  # type: ignore[assignment]
            return cid

        out = {
            c.id: {
                "entries": 0,
                "with_claims": 0,
                "without_claims": 0,
                "claims": 0,
                "claims_checked": 0,
            }
            for c in self.data.categories
            if c.parent is None
        }
        for e in self.data.entries:
            for branch in sorted({top(cid) for cid in e.categories}):
                row = out[branch]
                row["entries"] += 1
                row["with_claims" if e.claims else "without_claims"] += 1
                row["claims"] += len(e.claims)
                row["claims_checked"] += sum(1 for c in e.claims if c.checked_against)
        return out

    def stats(self) -> dict:
        G = self.graph
        per_category = {
            c.id: len(
                {v for v in _graph_module().subtree(G, c.id) if G.nodes[v]["type"] == "entry"}
            )
            for c in self.data.categories
        }
        per_kind: dict[str, int] = {}
        for e in self.data.entries:
            per_kind[e.kind.value] = per_kind.get(e.kind.value, 0) + 1
        return {
            "entries": len(self.data.entries),
            "entries_with_claims": sum(1 for e in self.data.entries if e.claims),
            "claims": sum(len(e.claims) for e in self.data.entries),
            "relations": sum(len(e.relations) for e in self.data.entries),
            "categories": len(self.data.categories),
            "executable_entries": sum(1 for e in self.data.entries if e.executable),
            "claims_checked": sum(
                1 for e in self.data.entries for c in e.claims if c.checked_against
            ),
            "per_branch": self._per_branch(),
            "empty_categories": [c for c, n in per_category.items() if n == 0],
            "per_category": per_category,
            "per_kind": dict(sorted(per_kind.items())),
            "digest": self.data.digest,
        }
