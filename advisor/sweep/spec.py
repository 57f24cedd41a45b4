"""The sweep SPEC: models × targets × links × latency targets × accuracy budgets.

A SPEC is YAML validated into `SweepSpec` (unknown keys are errors); the product of its lists
is the set of cells, each one `advise()` request. A cell's key is a content hash of the
model's bytes and the cell's settings, so a re-run of the same SPEC finds what is stored.

>>> spec = SweepSpec(models=["digits_cnn"], targets=["rpi4", "rpi5"], edge="edge_t4",
...                  links=["wifi", "4g"], latency_ms=[10, 50])
>>> len(spec.cells())
8
>>> spec.cells()[0].label()
'rpi4 + edge_t4'
"""

from __future__ import annotations

import hashlib
import itertools
import json
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from advisor.errors import RequestError

__all__ = ["Cell", "SpecError", "SweepSpec", "TargetSpec", "load_spec", "model_digest"]


class SpecError(RequestError):
    """A sweep SPEC is unreadable or invalid (unknown key, bad value, unknown id)."""


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class TargetSpec(_Frozen):
    """Where a model may run: an end device and optionally an edge and a cloud server."""

    device: str = Field(description="hardware id of the end device (`edgedl hardware list`)")
    edge: str | None = Field(default=None, description="edge server id (default: SPEC's edge)")
    cloud: str | None = Field(default=None, description="cloud server id (default: SPEC's)")
    device_agent: str | None = Field(
        default=None, description="URL of an agent on the device: adds measured_target figures"
    )


class Cell(_Frozen):
    """One advice request of the sweep."""

    model: str
    device: str
    edge: str | None = None
    cloud: str | None = None
    device_agent: str | None = None
    link: str
    latency_ms: float
    accuracy_budget: float | None = None

    def label(self) -> str:
        """The target column of the heatmap: 'rpi4 + edge_t4'."""
        return " + ".join(t for t in (self.device, self.edge, self.cloud) if t)

    def key(self, model_hash: str, spec: SweepSpec) -> str:
        """Content hash of the model's bytes, this cell and the measuring settings."""
        body = {
            "model_sha256": model_hash,
            "cell": self.model_dump(mode="json"),
            "runs": spec.runs,
            "threads": spec.threads,
            "plans": spec.plans,
        }
        return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:24]


def _default_budgets() -> list[float | None]:
    return [None]  # the advisor's own default budget


class SweepSpec(_Frozen):
    """What `edgedl sweep SPEC.yaml` runs: the product of the lists below."""

    name: str | None = Field(default=None, description="a title for the report")
    models: list[str] = Field(min_length=1, description="zoo ids or .onnx paths")
    targets: list[str | TargetSpec] = Field(
        min_length=1, description="device ids, or {device, edge, cloud, device_agent} entries"
    )
    edge: str | None = Field(default=None, description="edge server for targets naming none")
    cloud: str | None = Field(default=None, description="cloud server for targets naming none")
    links: list[str] = Field(min_length=1, description="link preset ids (device <-> server)")
    latency_ms: list[float] = Field(min_length=1, description="end-to-end latency targets, ms")
    accuracy_budgets: list[float | None] = Field(
        default_factory=_default_budgets, description="max accuracy drops, percentage points"
    )
    runs: int = Field(default=20, ge=3, le=1000, description="timed runs per measurement")
    threads: int = Field(default=1, ge=1, le=256, description="ORT intra-op threads")
    plans: list[str] | None = Field(default=None, description="only these plan kinds")

    @model_validator(mode="after")
    def _values(self) -> SweepSpec:
        if any(v <= 0 for v in self.latency_ms):
            raise ValueError("latency_ms: every latency target must be > 0 ms")
        if any(b is not None and not 0 <= b <= 100 for b in self.accuracy_budgets):
            raise ValueError("accuracy_budgets: each must be between 0 and 100 points")
        for name in ("models", "links", "latency_ms", "accuracy_budgets"):
            values = getattr(self, name)
            if len(set(values)) != len(values):
                raise ValueError(f"{name}: an entry is listed twice")
        return self

    def target_specs(self) -> list[TargetSpec]:
        return [
            TargetSpec(device=t, edge=self.edge, cloud=self.cloud)
            if isinstance(t, str)
            else t.model_copy(update={"edge": t.edge or self.edge, "cloud": t.cloud or self.cloud})
            for t in self.targets
        ]

    def cells(self) -> list[Cell]:
        """Every cell, models outermost (a model's cells are contiguous)."""
        return [
            Cell(
                model=m,
                device=t.device,
                edge=t.edge,
                cloud=t.cloud,
                device_agent=t.device_agent,
                link=link,
                latency_ms=lat,
                accuracy_budget=budget,
            )
            for m, t, link, lat, budget in itertools.product(
                self.models, self.target_specs(), self.links, self.latency_ms, self.accuracy_budgets
            )
        ]

    def sweep_id(self) -> str:
        """The same SPEC (as data, not as text) always has the same id."""
        return hashlib.sha256(self.model_dump_json().encode()).hexdigest()[:12]

    def check_ids(self) -> None:
        """Every hardware, link and plan id is known; every model resolves to a file."""
        from advisor.errors import AdvisorError
        from advisor.targets.catalog import load_catalog

        catalog = load_catalog()
        try:
            for t in self.target_specs():
                for tid in (t.device, t.edge, t.cloud):
                    if tid and tid != "host":
                        catalog.target(tid)
            for link in self.links:
                catalog.link(link)
            for m in self.models:
                model_path(m)
        except AdvisorError as exc:
            raise SpecError(str(exc)) from None
        if self.plans:
            from advisor.plans import PLANNERS, load_builtins

            load_builtins()
            unknown = [p for p in self.plans if p not in PLANNERS]
            if unknown:
                raise SpecError(
                    f"plans: unknown plan kind {unknown[0]!r}; known: {', '.join(PLANNERS)}"
                )


def model_path(model: str) -> Path:
    """The file a SPEC's model names: an .onnx path, or a zoo id's file."""
    path = Path(model).expanduser()
    if path.suffix == ".onnx":
        if not path.is_file():
            raise SpecError(f"models: {model} is not a file; give an .onnx path or a zoo id")
        return path
    from advisor import zoo

    return Path(zoo.get_zoo(model.removeprefix("zoo:")).path)


def model_digest(model: str) -> str:
    """SHA-256 of the model file's bytes."""
    return hashlib.sha256(model_path(model).read_bytes()).hexdigest()


def load_spec(path: str | Path) -> SweepSpec:
    """Read and validate a SPEC file; every problem is one `SpecError` line."""
    p = Path(path)
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except OSError as exc:
        raise SpecError(f"cannot read sweep SPEC {p}: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        at = f" (line {where.line + 1})" if where is not None else ""
        raise SpecError(f"{p}: not valid YAML{at}; fix the syntax") from None
    if not isinstance(data, dict):
        raise SpecError(f"{p}: a SPEC is a mapping with keys models, targets, links, latency_ms")
    try:
        spec = SweepSpec.model_validate(data)
    except ValidationError as exc:
        raise SpecError(f"{p}: {_first_problem(exc)}") from None
    spec.check_ids()
    return spec


def _first_problem(exc: ValidationError) -> str:
    # a target is a string or a mapping: for a mapping, the mapping branch's error says more
    errors = sorted(
        exc.errors(),
        key=lambda e: (e["type"] != "extra_forbidden", "str" in [str(x) for x in e["loc"]]),
    )
    err = errors[0]
    loc = [str(x) for x in err["loc"]]
    # a target may be a string or a mapping: pydantic tags the branch; drop the tag
    loc = [x for x in loc if x not in ("str", "TargetSpec")]
    where = ".".join(loc)
    if err["type"] == "extra_forbidden":
        field = loc[-1]
        parent = SweepSpec if len(loc) == 1 else TargetSpec
        allowed = ", ".join(parent.model_fields)
        return f"unknown key {field!r} at {where}; allowed keys: {allowed}"
    if err["type"] == "missing":
        return f"missing key {where!r}"
    msg = str(err["msg"]).replace("Value error, ", "")
    return f"{where}: {msg}" if where else msg
