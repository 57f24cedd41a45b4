"""Loading and validation of knowledge-base data: every error names its file and entry."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from kb.errors import DataError
from kb.loader import DEFAULT_DATA_DIR, load

TAXONOMY = {
    "source": "test",
    "categories": [
        {"id": "root", "name": "Root", "description": "top"},
        {"id": "root.leaf", "name": "Leaf", "parent": "root", "description": "leaf"},
    ],
}


def entry(ident: str, **over) -> dict:
    e = {
        "id": ident,
        "name": ident.title(),
        "kind": "technique",
        "categories": ["root.leaf"],
        "summary": "A summary that is long enough.",
        "mechanism": "A mechanism long enough here.",
        "advisor_action": None,
        "advice_only_reason": "test entry",
    }
    e.update(over)
    return e


def write(folder: Path, files: dict[str, object]) -> Path:
    (folder / "taxonomy.yaml").write_text(yaml.safe_dump(TAXONOMY))
    for name, body in files.items():
        (folder / name).write_text(body if isinstance(body, str) else yaml.safe_dump(body))
    return folder


def test_valid_minimal(tmp_path):
    write(tmp_path, {"a.yaml": {"branch": "root", "entries": [entry("alpha"), entry("beta")]}})
    data = load(tmp_path)
    assert [e.id for e in data.entries] == ["alpha", "beta"]
    assert data.entry_files["beta"] == "a.yaml"


BAD = [
    # (files, expected substrings in the message)
    ({"a.yaml": "branch: root\nentries: [\n  - id: x"}, ["file a.yaml", "not valid YAML"]),
    (
        {
            "a.yaml": {
                "branch": "root",
                "entries": [entry("alpha", relations=[{"type": "extends", "target": "ghost"}])],
            }
        },
        ["file a.yaml", "entry 'alpha'", "unknown entry 'ghost'"],
    ),
    (
        {
            "a.yaml": {"branch": "root", "entries": [entry("alpha")]},
            "b.yaml": {"branch": "root", "entries": [entry("alpha")]},
        },
        ["file b.yaml", "entry 'alpha'", "duplicate id", "a.yaml"],
    ),
    (
        {"a.yaml": {"branch": "root", "entries": [entry("alpha", colour="red")]}},
        ["file a.yaml", "entry 'alpha'", "colour", "Extra inputs"],
    ),
    (
        {"a.yaml": {"branch": "root", "entries": [entry("alpha", kind="gadget")]}},
        ["entry 'alpha'", "kind"],
    ),
    (
        {"a.yaml": {"branch": "root", "entries": [entry("alpha", categories=["nowhere"])]}},
        ["entry 'alpha'", "unknown category 'nowhere'"],
    ),
    (
        {"a.yaml": {"branch": "root", "entries": [entry("alpha", advice_only_reason=None)]}},
        ["entry 'alpha'", "advice_only_reason"],
    ),
    (
        {"a.yaml": {"branch": "root", "entries": [entry("alpha", advisor_action="teleport")]}},
        ["entry 'alpha'", "advisor_action"],
    ),
    (
        {
            "a.yaml": {
                "branch": "root",
                "entries": [
                    entry("alpha", claims=[{"metric": "speedup", "value": 2, "unit": "x"}])
                ],
            }
        },
        ["entry 'alpha'", "source", "Field required"],
    ),
    ({"a.yaml": ["not", "a", "mapping"]}, ["file a.yaml", "mapping"]),
    (
        {"a.yaml": {"branch": "nope", "entries": [entry("alpha")]}},
        ["file a.yaml", "unknown branch"],
    ),
]


@pytest.mark.parametrize(("files", "expected"), BAD)
def test_bad_data_names_file_and_entry(tmp_path, files, expected):
    write(tmp_path, files)
    with pytest.raises(DataError) as info:
        load(tmp_path)
    msg = str(info.value)
    for part in expected:
        assert part in msg, (part, msg)


def test_empty_leaf_category_is_an_error(tmp_path):
    tax = dict(TAXONOMY)
    tax["categories"] = [
        *TAXONOMY["categories"],
        {"id": "root.empty", "name": "E", "parent": "root", "description": "d"},
    ]
    write(tmp_path, {"a.yaml": {"branch": "root", "entries": [entry("alpha")]}})
    (tmp_path / "taxonomy.yaml").write_text(yaml.safe_dump(tax))
    with pytest.raises(DataError, match="root.empty"):
        load(tmp_path)


def test_missing_folder(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load(tmp_path / "absent")


def test_bundled_data_copy_detects_broken_relation(tmp_path):
    """The real data, with one relation target renamed, fails naming that file and entry."""
    folder = tmp_path / "kb"
    shutil.copytree(DEFAULT_DATA_DIR, folder)
    data = load(folder)
    victim = next(e for e in data.entries if e.relations)
    fname = data.entry_files[victim.id]
    raw = yaml.safe_load((folder / fname).read_text())
    for e in raw["entries"]:
        if e["id"] == victim.id:
            e["relations"][0]["target"] = "no-such-entry"
    (folder / fname).write_text(yaml.safe_dump(raw, sort_keys=False))
    with pytest.raises(DataError) as info:
        load(folder)
    assert fname in str(info.value) and victim.id in str(info.value)
