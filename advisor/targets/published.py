"""Published inference latencies (`data/published_latency.yaml`), validated.

Each row is one latency figure read in a paper, vendor page, benchmark log or README, for a
catalog target and an architecture defined in `bench/archs.py`. The rows are the reference the
predictor's catalog priors are fitted on and checked against (issue 12); nothing in the file
was measured by this project. Field meanings: `data/published_latency.md`.

>>> rows = load_published()
>>> len(rows) >= 50
True
>>> sorted({r.compute_unit.value for r in rows})
['cpu', 'gpu', 'npu', 'tpu']
"""

from __future__ import annotations

import functools
import math
from enum import StrEnum
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from advisor.errors import CatalogError

__all__ = ["DEFAULT_PUBLISHED", "PublishedLatency", "Source", "load_published"]

DEFAULT_PUBLISHED = Path(__file__).resolve().parents[2] / "data" / "published_latency.yaml"


class Precision(StrEnum):
    fp32 = "fp32"
    fp16 = "fp16"
    int8 = "int8"


class ComputeUnit(StrEnum):
    """Which part of the target ran the model: its CPU cores, a GPU, an NPU/DSP, or a TPU."""

    cpu = "cpu"
    gpu = "gpu"
    npu = "npu"
    tpu = "tpu"


class Statistic(StrEnum):
    """Which summary of repeated runs the source prints."""

    mean = "mean"
    median = "median"
    min = "min"
    p90 = "p90"
    unspecified = "unspecified"


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class Source(_Frozen):
    """Where a figure was read: enough to find the exact number again."""

    title: str = Field(min_length=3)
    publisher: str = Field(min_length=2, description="venue, vendor or repository")
    year: int = Field(ge=1990, le=2100)
    url: str = Field(pattern=r"^https?://\S+$")
    location: str = Field(min_length=3, description="table, figure, section or log line")


class PublishedLatency(_Frozen):
    """One published latency: a model at one input shape on one target, as the source ran it."""

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9_.-]*$")
    model: str = Field(min_length=1, description="an architecture name in bench/archs.py")
    input_shape: tuple[int, ...] = Field(min_length=1)
    batch: int = Field(ge=1)
    device: str = Field(min_length=1, description="a target id in data/hardware.yaml")
    compute_unit: ComputeUnit
    runtime: str = Field(min_length=2)
    runtime_version: str = Field(min_length=1)
    precision: Precision
    threads: int | None = Field(default=None, ge=1)
    latency_ms: float = Field(gt=0)
    statistic: Statistic
    source: Source
    note: str | None = None

    @field_validator("input_shape")
    @classmethod
    def _positive_dims(cls, v: tuple[int, ...]) -> tuple[int, ...]:
        if any(d < 1 for d in v):
            raise ValueError(f"every dimension must be >= 1, got {list(v)}")
        return v

    @field_validator("latency_ms")
    @classmethod
    def _finite(cls, v: float) -> float:
        if not math.isfinite(v):
            raise ValueError("latency_ms must be a finite number of milliseconds")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> PublishedLatency:
        if self.input_shape[0] != self.batch:
            raise ValueError(
                f"batch is {self.batch} but input_shape starts with {self.input_shape[0]}"
            )
        if self.compute_unit is not ComputeUnit.cpu and self.threads is not None:
            raise ValueError(
                "threads applies to CPU rows only; "
                f"set it to null for a {self.compute_unit.value} row"
            )
        if self.compute_unit is ComputeUnit.cpu and self.threads is None and not self.note:
            raise ValueError("a CPU row needs its thread count, or a note saying why it is unknown")
        return self


class _PublishedFile(_Frozen):
    rows: list[PublishedLatency]


def load_published(path: str | Path | None = None) -> tuple[PublishedLatency, ...]:
    """Read and validate a published-latency file (default: data/published_latency.yaml).

    Raises CatalogError with one line naming the file, the row and the field on any problem,
    including duplicate row ids. Cross-references (device ids, model names) are checked by
    tests/test_published_latency.py against the catalog and bench/archs.py.
    """
    path = Path(path) if path is not None else DEFAULT_PUBLISHED
    try:
        st = path.stat()
    except OSError as exc:
        raise CatalogError(
            f"cannot read published latencies {path}: {exc.strerror or exc}"
        ) from exc
    return _load(str(path), st.st_size, st.st_mtime_ns)


@functools.lru_cache(maxsize=4)
def _load(path_str: str, _size: int, _mtime_ns: int) -> tuple[PublishedLatency, ...]:
    path = Path(path_str)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise CatalogError(
            f"cannot read published latencies {path}: {exc.strerror or exc}"
        ) from exc
    except yaml.YAMLError as exc:
        detail = " ".join(str(exc).split())
        raise CatalogError(f"{path.name}: not valid YAML: {detail}") from exc
    if not isinstance(raw, dict):
        raise CatalogError(f"{path.name}: expected a mapping with a 'rows' list")
    try:
        parsed = _PublishedFile.model_validate(raw)
    except ValidationError as exc:
        raise CatalogError(_describe(exc, raw, path.name)) from exc
    seen: set[str] = set()
    for row in parsed.rows:
        if row.id in seen:
            raise CatalogError(
                f"{path.name}: duplicate row id {row.id!r}; give each row its own id"
            )
        seen.add(row.id)
    return tuple(parsed.rows)


def _describe(exc: ValidationError, raw: dict[str, object], name: str) -> str:
    """The first validation error as one line: file, row id, field, message."""
    err = exc.errors()[0]
    loc = list(err["loc"])
    where = ".".join(str(p) for p in loc)
    rows = raw.get("rows")
    if len(loc) >= 2 and loc[0] == "rows" and isinstance(loc[1], int) and isinstance(rows, list):
        row = rows[loc[1]] if loc[1] < len(rows) else None
        row_id = row.get("id") if isinstance(row, dict) else None
        field = ".".join(str(p) for p in loc[2:]) or "(row)"
        where = f"row {loc[1]}" + (f" ({row_id})" if row_id else "") + f", field {field}"
    return f"{name}: {where}: {err['msg']}"
