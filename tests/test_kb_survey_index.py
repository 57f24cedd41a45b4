"""The survey coverage index: every listed name has an entry or a one-line reason."""

from __future__ import annotations

import pytest
import yaml

from kb.coverage import SurveyIndex, load_index, problems
from kb.errors import DataError
from kb.loader import DEFAULT_DATA_DIR, load


@pytest.fixture(scope="module")
def entry_ids() -> set[str]:
    return {e.id for e in load().entries}


def test_bundled_index_is_complete(entry_ids):
    index = load_index()
    assert index.names and index.text_reached
    assert problems(index, entry_ids) == []


def test_bundled_index_fails_when_a_name_loses_its_reason(entry_ids):
    """The check on the shipped file can fail: strip one real row of its reason."""
    index = load_index()
    first = index.names[0]
    assert first.entry is None and first.reason
    stripped = first.model_copy(update={"reason": None})
    broken = index.model_copy(update={"names": [stripped, *index.names[1:]]})
    found = problems(broken, entry_ids)
    assert found == [f"{first.name!r} ({first.section}): has neither an entry nor a reason"]


def test_index_is_not_read_as_a_branch_of_entries():
    assert (DEFAULT_DATA_DIR / "survey_index.yaml").is_file()
    load()  # would raise if the index were validated as an EntryFile


BASE = {"survey": "s", "text_reached": ["abstract"]}


def name(**over) -> dict:
    n = {"name": "Edge TPU", "section": "VI-A", "kind": "accelerator", "found_in": "Table II"}
    n.update(over)
    return n


@pytest.mark.parametrize(
    ("item", "expected"),
    [
        (name(), "has neither an entry nor a reason"),
        (name(entry="ghost"), "entry 'ghost' does not exist"),
        (name(entry="edge-tpu", reason="x"), "not both"),
    ],
)
def test_unaccounted_name_fails(entry_ids, item, expected):
    index = SurveyIndex.model_validate({**BASE, "names": [item]})
    found = problems(index, entry_ids)
    assert len(found) == 1 and expected in found[0] and "'Edge TPU' (VI-A)" in found[0]


def test_entry_or_reason_passes(entry_ids):
    index = SurveyIndex.model_validate(
        {**BASE, "names": [name(entry="edge-tpu"), name(name="ZB", reason="a unit")]}
    )
    assert problems(index, entry_ids) == []


def test_bad_file_names_itself(tmp_path):
    p = tmp_path / "survey_index.yaml"
    p.write_text(yaml.safe_dump({**BASE, "names": [name(colour="red")]}))
    with pytest.raises(DataError, match="survey_index.yaml"):
        load_index(p)
