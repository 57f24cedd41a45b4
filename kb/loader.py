"""Load and validate the knowledge base's YAML files.

`load(data_dir)` reads `taxonomy.yaml` and every other `*.yaml` in the folder, validates each
with the pydantic models of `kb.schema`, then checks the cross-references between files:
unique ids, known categories and parents, existing relation targets, no empty category.
Every error names the file and the entry it is about.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from kb.errors import DataError
from kb.schema import Category, Entry, EntryFile, TaxonomyFile

DEFAULT_DATA_DIR = Path(__file__).resolve().parent.parent / "data" / "kb"
TAXONOMY_FILE = "taxonomy.yaml"
SURVEY_INDEX_FILE = "survey_index.yaml"  # checked by kb.coverage; not a branch of entries


@dataclass(frozen=True)
class KBData:
    """Everything in the data folder, validated: categories and entries in file order."""

    source: str
    categories: tuple[Category, ...]
    entries: tuple[Entry, ...]
    entry_files: dict[str, str]  # entry id -> file name it came from
    digest: str  # hash of the files' bytes; changes whenever the data does


def _read_yaml(path: Path) -> object:
    import yaml  # only needed when (re)building: keeps `import kb` fast

    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read: {exc}", file=path.name) from exc
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise DataError(f"not valid YAML: {exc}".replace("\n", " "), file=path.name) from exc


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    loc = ".".join(str(p) for p in err["loc"])
    return f"{loc}: {err['msg']}" if loc else err["msg"]


def _entry_label(raw: object, path: str) -> str | None:
    """The id of the entry a pydantic error location points into, if any."""
    parts = path.split(".")
    if isinstance(raw, dict) and len(parts) >= 2 and parts[0] == "entries" and parts[1].isdigit():
        entries = raw.get("entries")
        idx = int(parts[1])
        if isinstance(entries, list) and idx < len(entries) and isinstance(entries[idx], dict):
            return str(entries[idx].get("id", f"#{idx}"))
    return None


def _validate(model: type[TaxonomyFile] | type[EntryFile], raw: object, name: str):
    if not isinstance(raw, dict):
        raise DataError("expected a mapping at the top level", file=name)
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in err["loc"])
        raise DataError(_first_error(exc), file=name, entry=_entry_label(raw, loc)) from exc


def data_files(folder: Path) -> list[Path]:
    """taxonomy.yaml first, then the branch files in name order."""
    return [folder / TAXONOMY_FILE] + sorted(
        p for p in folder.glob("*.yaml") if p.name not in (TAXONOMY_FILE, SURVEY_INDEX_FILE)
    )


def data_digest(data_dir: Path | str | None = None) -> str:
    """A hash of every data file's name and bytes: cheap, and changes whenever the data does."""
    folder = Path(data_dir) if data_dir is not None else DEFAULT_DATA_DIR
    h = hashlib.sha256()
    for p in data_files(folder):
        if p.is_file():
            h.update(p.name.encode())
            h.update(p.read_bytes())
    return h.hexdigest()[:16]


def load(data_dir: Path | str | None = None) -> KBData:
    """Load and check every file in `data_dir` (the bundled data by default)."""
    folder = Path(data_dir) if data_dir is not None else DEFAULT_DATA_DIR
    if not folder.is_dir():
        raise DataError(f"knowledge-base folder {folder} does not exist")
    tax_path = folder / TAXONOMY_FILE
    if not tax_path.is_file():
        raise DataError(f"missing {TAXONOMY_FILE} in {folder}", file=TAXONOMY_FILE)
    files = data_files(folder)

    taxonomy = _validate(TaxonomyFile, _read_yaml(tax_path), TAXONOMY_FILE)
    cats: dict[str, Category] = {}
    for c in taxonomy.categories:
        if c.id in cats:
            raise DataError("duplicate category id", file=TAXONOMY_FILE, entry=c.id)
        cats[c.id] = c
    for c in taxonomy.categories:
        if c.parent is not None and c.parent not in cats:
            raise DataError(f"unknown parent category {c.parent!r}", file=TAXONOMY_FILE, entry=c.id)

    entries: dict[str, Entry] = {}
    origin: dict[str, str] = {}
    for path in files[1:]:
        ef = _validate(EntryFile, _read_yaml(path), path.name)
        if ef.branch not in cats:
            raise DataError(f"unknown branch {ef.branch!r}", file=path.name)
        for e in ef.entries:
            if e.id in entries:
                raise DataError(
                    f"duplicate id (first defined in {origin[e.id]})", file=path.name, entry=e.id
                )
            if e.id in cats:
                raise DataError("id is also a category id", file=path.name, entry=e.id)
            for cid in e.categories:
                if cid not in cats:
                    raise DataError(f"unknown category {cid!r}", file=path.name, entry=e.id)
            entries[e.id] = e
            origin[e.id] = path.name

    for e in entries.values():
        for r in e.relations:
            if r.target not in entries:
                raise DataError(
                    f"relation {r.type.value} points to unknown entry {r.target!r}",
                    file=origin[e.id],
                    entry=e.id,
                )
            if r.target == e.id:
                raise DataError("relation points to itself", file=origin[e.id], entry=e.id)

    used = {cid for e in entries.values() for cid in e.categories}
    parents = {c.parent for c in cats.values() if c.parent}
    for cid in cats:
        if cid not in used and cid not in parents:
            raise DataError("leaf category has no entries", file=TAXONOMY_FILE, entry=cid)

    return KBData(
        source=taxonomy.source,
        categories=tuple(taxonomy.categories),
        entries=tuple(entries.values()),
        entry_files=origin,
        digest=data_digest(folder),
    )
