"""The survey coverage index: the names the survey's text mentions, each accounted for.

`data/kb/survey_index.yaml` lists every system, framework, platform, accelerator, data set or
benchmark found in the text of the survey (arXiv 1907.08349), with the section where it
appears; each name either points to a knowledge-base entry or says in one line why it has none
(a generic term, a report cited for motivation, ...). `problems(index, entry_ids)` returns what
is wrong: a name with neither, with both, or pointing to an entry that does not exist.

>>> idx = SurveyIndex.model_validate({"survey": "s", "text_reached": ["abstract"],
...     "names": [{"name": "Edge TPU", "section": "VI-A", "kind": "accelerator",
...                "found_in": "abstract", "entry": "edge-tpu"}]})
>>> problems(idx, {"edge-tpu"})
[]
>>> problems(idx, set())
["'Edge TPU' (VI-A): entry 'edge-tpu' does not exist"]
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from kb.errors import DataError
from kb.loader import DEFAULT_DATA_DIR, SURVEY_INDEX_FILE


class NameKind(StrEnum):
    system = "system"
    framework = "framework"
    platform = "platform"
    accelerator = "accelerator"
    dataset = "dataset"
    benchmark = "benchmark"
    application = "application"
    report = "report"
    term = "term"


class IndexedName(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str = Field(min_length=1)
    section: str = Field(min_length=1, description="survey section, e.g. 'V-B' or 'abstract'")
    kind: NameKind
    found_in: str = Field(min_length=1, description="the stored survey text the name was seen in")
    entry: str | None = None
    reason: str | None = Field(default=None, description="one line: why no entry")


class SurveyIndex(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    survey: str
    text_reached: list[str] = Field(min_length=1)
    not_reached: str | None = None
    names: list[IndexedName]


def load_index(path: Path | str | None = None) -> SurveyIndex:
    import yaml

    p = Path(path) if path is not None else DEFAULT_DATA_DIR / SURVEY_INDEX_FILE
    try:
        raw = yaml.safe_load(p.read_text(encoding="utf-8"))
        return SurveyIndex.model_validate(raw)
    except (OSError, yaml.YAMLError, ValidationError) as exc:
        first = str(exc).splitlines()[0:3]
        raise DataError(" ".join(first), file=p.name) from exc


def problems(index: SurveyIndex, entry_ids: set[str]) -> list[str]:
    """One line per listed name that is not accounted for; empty when all are."""
    out: list[str] = []
    seen: set[tuple[str, str]] = set()
    for n in index.names:
        where = f"{n.name!r} ({n.section})"
        if (n.name, n.section) in seen:
            out.append(f"{where}: listed twice")
        seen.add((n.name, n.section))
        if n.entry is None and not n.reason:
            out.append(f"{where}: has neither an entry nor a reason")
        elif n.entry is not None and n.reason:
            out.append(f"{where}: give an entry or a reason, not both")
        elif n.entry is not None and n.entry not in entry_ids:
            out.append(f"{where}: entry {n.entry!r} does not exist")
    return out
