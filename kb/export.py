"""Exports of the knowledge base and of comparisons: JSON, CSV, BibTeX, Markdown."""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Sequence

from kb.schema import Entry

FORMATS = ("json", "csv", "bibtex", "md")

CSV_FIELDS = [
    "id",
    "name",
    "kind",
    "categories",
    "year",
    "venue",
    "authors",
    "title",
    "model_families",
    "tiers",
    "advisor_action",
    "n_claims",
    "summary",
]


def _flat(e: Entry) -> dict[str, object]:
    return {
        "id": e.id,
        "name": e.name,
        "kind": e.kind.value,
        "categories": ";".join(e.categories),
        "year": e.year or "",
        "venue": e.venue or "",
        "authors": e.authors or "",
        "title": e.title or "",
        "model_families": ";".join(f.value for f in e.applicability.model_families),
        "tiers": ";".join(t.value for t in e.applicability.tiers),
        "advisor_action": e.advisor_action.value if e.advisor_action else "",
        "n_claims": len(e.claims),
        "summary": e.summary,
    }


def to_json(entries: Sequence[Entry]) -> str:
    return json.dumps([e.model_dump(mode="json") for e in entries], indent=2)


def to_csv(entries: Sequence[Entry]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=CSV_FIELDS)
    w.writeheader()
    for e in entries:
        w.writerow(_flat(e))
    return buf.getvalue()


def _bib_escape(text: str) -> str:
    return re.sub(r"([{}&%$#_])", r"\\\1", text)


def bibtex_record(e: Entry) -> str:
    """One BibTeX record per entry: @inproceedings when it has a venue, else @misc."""
    kind = "inproceedings" if e.venue else "misc"
    fields = {
        "title": e.title or e.name,
        "author": e.authors,
        "year": e.year,
        "booktitle" if e.venue else "note": e.venue or e.summary.split(". ")[0],
        "url": e.url,
    }
    body = ",\n".join(
        f"  {k} = {{{_bib_escape(str(v))}}}" for k, v in fields.items() if v not in (None, "")
    )
    return f"@{kind}{{{e.id},\n{body}\n}}\n"


def to_bibtex(entries: Sequence[Entry]) -> str:
    return "\n".join(bibtex_record(e) for e in entries)


def _md_cell(v: object) -> str:
    return str(v).replace("|", "\\|").replace("\n", " ")


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    lines = [
        "| " + " | ".join(_md_cell(h) for h in header) + " |",
        "|" + "|".join("---" for _ in header) + "|",
    ]
    lines += ["| " + " | ".join(_md_cell(c) for c in r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def to_markdown(entries: Sequence[Entry]) -> str:
    out = ["# Edge DL knowledge base\n"]
    for e in entries:
        meta = ", ".join(str(x) for x in (e.authors, e.venue, e.year) if x)
        out.append(f"## {e.name}\n\n*{e.kind.value}*{' — ' + meta if meta else ''}\n")
        out.append(f"{e.summary}\n\n**Mechanism.** {e.mechanism}\n")
        for c in e.claims:
            out.append(f"- {c.statement()} ({c.source.cite()})")
        out.append("")
    return "\n".join(out)


def export(entries: Sequence[Entry], fmt: str) -> str:
    writers = {"json": to_json, "csv": to_csv, "bibtex": to_bibtex, "md": to_markdown}
    if fmt not in writers:
        raise ValueError(f"unknown export format {fmt!r}; use one of {', '.join(FORMATS)}")
    return writers[fmt](entries)
