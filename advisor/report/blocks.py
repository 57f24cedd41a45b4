"""The neutral document a report is made of, and how its numbers are written.

`advisor.report.content` builds a list of `Section`s of these blocks from an Advice; the
renderers in `advisor.report.renderers` escape and lay them out as HTML or Markdown. Every
string in a block is untrusted text, escaped by the renderer; only `Chart.svg` is markup (built by
`advisor.report.charts`, every text in it escaped there).

>>> num(0.000123456), num(12345), pct(0.98333), yes(None)
('0.0001235', '12,345', '98.33', '—')
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from advisor.advice import Latency

__all__ = [
    "Para",
    "Bullets",
    "Table",
    "Code",
    "Chart",
    "Heading",
    "Block",
    "Section",
    "DASH",
    "num",
    "ms",
    "pct",
    "yes",
    "shape",
    "value",
]

DASH = "—"


@dataclass(frozen=True)
class Para:
    text: str
    strong: bool = False


@dataclass(frozen=True)
class Bullets:
    items: tuple[str, ...]


@dataclass(frozen=True)
class Table:
    header: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    row_classes: tuple[str, ...] = ()  # one CSS class per row (HTML only), e.g. the status


@dataclass(frozen=True)
class Code:
    text: str


@dataclass(frozen=True)
class Chart:
    svg: str  # markup from advisor.report.charts; every text in it is already escaped


@dataclass(frozen=True)
class Heading:
    text: str  # a sub-heading inside a section


Block = Para | Bullets | Table | Code | Chart | Heading


@dataclass(frozen=True)
class Section:
    anchor: str
    title: str
    blocks: tuple[Block, ...] = field(default_factory=tuple)


# --- formatting ---------------------------------------------------------------------------------


def num(v: float | int | None, digits: int = 4) -> str:
    if v is None:
        return DASH
    if isinstance(v, bool):
        return yes(v)
    if isinstance(v, int):
        return f"{v:,}"
    return f"{v:.{digits}g}"


def ms(lat: Latency | None) -> str:
    return num(lat.ms) if lat is not None else DASH


def pct(v: float | None, digits: int = 2) -> str:
    return f"{v * 100:.{digits}f}" if v is not None else DASH


def yes(v: bool | None) -> str:
    return DASH if v is None else ("yes" if v else "no")


def shape(dims: Iterable[int]) -> str:
    return "×".join(str(d) for d in dims) or "scalar"


def value(v: object) -> str:
    """A dict value from the environment, calibration or link, as one line of text."""
    if isinstance(v, float):
        return num(v)
    if isinstance(v, list | tuple):
        return ", ".join(str(x) for x in v) or DASH
    if isinstance(v, dict):
        return json.dumps(v, sort_keys=True, default=str)
    return DASH if v is None else str(v)
