"""The hardware and link catalog (`data/hardware.yaml`) and the run-time `host` target.

Targets and links are pydantic models that forbid unknown keys; every figure must name its
source in `sources` (keyed by field, e.g. `peak_gflops.int8`), so an unsourced number is a
load error, not a silent guess. `host_target` describes this machine from its fingerprint
and calibration; `transfer_ms` is the link model the partition planners use.
"""

from __future__ import annotations

import difflib
import functools
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from advisor.errors import CatalogError, RequestError, UnknownIdError
from advisor.measure.suite import MeasuredProfile

if TYPE_CHECKING:  # imported lazily at run time: profile/predict import ORT
    from advisor.measure.calibrate import Calibration
    from advisor.measure.profile import Fingerprint

__all__ = [
    "Catalog",
    "Link",
    "Precision",
    "Target",
    "get_link",
    "get_target",
    "host_target",
    "load_catalog",
    "transfer_ms",
]

DEFAULT_CATALOG = Path(__file__).resolve().parents[2] / "data" / "hardware.yaml"
HOST_ID = "host"

Precision = Literal["fp32", "fp16", "int8"]
_ID_PATTERN = r"^[a-z0-9][a-z0-9_]*$"


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class Target(_Frozen):
    """One deployment target: peak compute per precision, memory system, power, sources."""

    id: str = Field(pattern=_ID_PATTERN)
    name: str
    tier: Literal["device", "edge", "cloud"]
    kind: Literal["cpu", "gpu", "npu", "tpu", "soc"]
    peak_gflops: dict[Precision, float] = Field(
        description="GFLOP/s for fp32/fp16, GOP/s for int8; dense peak as sourced"
    )
    mem_bandwidth_gbps: float = Field(gt=0, description="GB/s")
    memory_gb: float = Field(gt=0)
    power_w: float | None = Field(default=None, gt=0)
    precisions: list[Precision]
    sources: dict[str, str] = Field(description="field -> where the figure comes from")
    notes: str | None = None
    cores: int | None = Field(default=None, ge=1, description="CPU cores the peak assumes")
    profile: MeasuredProfile | None = Field(
        default=None, description="attained rates measured by `edgedl hardware calibrate`"
    )

    @property
    def measured(self) -> bool:
        """True for a target whose speed was measured on the machine (a target profile)."""
        return self.profile is not None

    @property
    def int8_only(self) -> bool:
        """A target that runs int8 models only (an Edge TPU)."""
        return self.precisions == ["int8"]

    @field_validator("peak_gflops")
    @classmethod
    def _positive_peaks(cls, v: dict[str, float]) -> dict[str, float]:
        if not v:
            raise ValueError("needs at least one peak figure (fp32, fp16 or int8)")
        bad = [k for k, x in v.items() if not x > 0]
        if bad:
            raise ValueError(f"peak figures must be > 0: {', '.join(bad)}")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> Target:
        if set(self.precisions) != set(self.peak_gflops):
            raise ValueError(
                f"precisions {sorted(self.precisions)} must list exactly the precisions with a "
                f"peak figure {sorted(self.peak_gflops)}"
            )
        needed = {f"peak_gflops.{p}" for p in self.peak_gflops} | {
            "mem_bandwidth_gbps",
            "memory_gb",
        }
        if self.power_w is not None:
            needed.add("power_w")
        if self.cores is not None:
            needed.add("cores")
        missing = sorted(needed - set(self.sources))
        if missing:
            raise ValueError(f"figures without a source: {', '.join(missing)}; add them to sources")
        unknown = sorted(set(self.sources) - needed)
        if unknown:
            raise ValueError(
                f"sources for figures that are not set: {', '.join(unknown)} "
                f"(expected keys: {', '.join(sorted(needed))})"
            )
        empty = sorted(k for k, s in self.sources.items() if not s.strip())
        if empty:
            raise ValueError(f"empty source for: {', '.join(empty)}")
        return self

    def ridge_point(self, precision: Precision = "fp32") -> float:
        """FLOP per byte at which this target turns from memory- to compute-bound."""
        return self.peak_gflops[precision] / self.mem_bandwidth_gbps


class Link(_Frozen):
    """A network link preset: bandwidth each way and round-trip time, with sources."""

    id: str = Field(pattern=_ID_PATTERN)
    name: str
    up_mbps: float = Field(gt=0)
    down_mbps: float = Field(gt=0)
    rtt_ms: float = Field(ge=0)
    sources: dict[Literal["up_mbps", "down_mbps", "rtt_ms"], str]

    @model_validator(mode="after")
    def _sourced(self) -> Link:
        missing = sorted({"up_mbps", "down_mbps", "rtt_ms"} - set(self.sources))
        if missing:
            raise ValueError(f"figures without a source: {', '.join(missing)}; add them to sources")
        return self

    @property
    def source(self) -> str:
        """All sources in one line (the figures usually share one)."""
        unique = dict.fromkeys(self.sources.values())
        return "; ".join(unique)


class Catalog(_Frozen):
    """Targets and links by id, in file order; `origins` names the file each came from."""

    source: str
    targets: dict[str, Target]
    links: dict[str, Link]
    origins: dict[str, str] = {}

    def target(self, target_id: str) -> Target:
        try:
            return self.targets[target_id]
        except KeyError:
            raise _unknown("hardware target", target_id, [*self.targets, HOST_ID]) from None

    def link(self, link_id: str) -> Link:
        try:
            return self.links[link_id]
        except KeyError:
            raise _unknown("link preset", link_id, list(self.links)) from None


def _unknown(what: str, ident: str, known: list[str]) -> UnknownIdError:
    near = difflib.get_close_matches(ident, known, n=3)
    hint = f" Did you mean {', '.join(near)}?" if near else ""
    return UnknownIdError(f"unknown {what} {ident!r}.{hint} Known: {', '.join(known)}.")


def _describe(exc: ValidationError, raw: dict, file: str) -> str:
    err = exc.errors()[0]
    loc = list(err["loc"])
    where = ".".join(str(p) for p in loc)
    # name the entry by its id rather than its list index
    if len(loc) >= 2 and loc[0] in ("targets", "links") and isinstance(loc[1], int):
        entries = raw.get(loc[0]) or []
        entry = entries[loc[1]] if loc[1] < len(entries) else {}
        ident = entry.get("id", f"#{loc[1]}") if isinstance(entry, dict) else f"#{loc[1]}"
        where = f"{loc[0][:-1]} {ident!r}" + (
            f", field {'.'.join(str(p) for p in loc[2:])}" if loc[2:] else ""
        )
    msg = err["msg"].removeprefix("Value error, ")
    return f"{file}: {where}: {msg}"


class _CatalogFile(_Frozen):
    targets: list[Target] = []
    links: list[Link] = []


def user_catalog_dir() -> Path:
    """Where `edgedl hardware calibrate --save` writes target files and where they are read:
    $EDGEDL_HARDWARE, else $XDG_CONFIG_HOME/edgedl/hardware (~/.config/edgedl/hardware)."""
    env = os.environ.get("EDGEDL_HARDWARE")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "edgedl" / "hardware"


def load_catalog(
    path: str | Path | None = None, *, extra: Sequence[str | Path] = (), user: bool | None = None
) -> Catalog:
    """Read and validate the hardware catalog: the bundled data/hardware.yaml (or `path`),
    every *.yaml target file in the user catalog folder (`user_catalog_dir`; read by default
    only with the bundled catalog), and `extra` files (`--catalog FILE`).

    Parsed files are memoized per (path, size, mtime): a frozen result is reused until the
    file changes. An id defined twice fails with both files named.
    """
    files = [Path(path) if path is not None else DEFAULT_CATALOG]
    if user if user is not None else path is None:
        folder = user_catalog_dir()
        if folder.is_dir():
            files += sorted(folder.glob("*.yaml"))
    files += [Path(f) for f in extra]
    parts = [(f, _load(str(f), *_stamp(f))) for f in files]
    if len(parts) == 1:
        return parts[0][1]
    targets: dict[str, Target] = {}
    links: dict[str, Link] = {}
    origins: dict[str, str] = {}
    for f, cat in parts:
        for kind, items, out in (("target", cat.targets, targets), ("link", cat.links, links)):
            for ident, item in items.items():
                if ident in out:
                    raise CatalogError(
                        f"{f}: {kind} id {ident!r} is already defined in {origins[ident]}; "
                        "give it another id"
                    )
                out[ident] = item  # type: ignore[assignment]
                origins[ident] = str(f)
    return Catalog(source=str(files[0]), targets=targets, links=links, origins=origins)


def _stamp(path: Path) -> tuple[int, int]:
    try:
        st = path.stat()
    except OSError as exc:
        raise CatalogError(f"cannot read hardware catalog {path}: {exc.strerror or exc}") from exc
    if not path.is_file():
        raise CatalogError(f"hardware catalog {path} is not a file; give a .yaml target file")
    return st.st_size, st.st_mtime_ns


@functools.lru_cache(maxsize=32)
def _load(path_str: str, _size: int, _mtime_ns: int) -> Catalog:
    path = Path(path_str)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        why = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise CatalogError(f"cannot read hardware catalog {path}: {why or exc}") from exc
    except yaml.YAMLError as exc:
        detail = " ".join(str(exc).split())
        raise CatalogError(f"{path.name}: not valid YAML: {detail}") from exc
    if not isinstance(raw, dict):
        raise CatalogError(f"{path.name}: expected a mapping with 'targets' and 'links' lists")
    try:
        parsed = _CatalogFile.model_validate(raw)
    except ValidationError as exc:
        raise CatalogError(_describe(exc, raw, path.name)) from exc
    targets: dict[str, Target] = {}
    links: dict[str, Link] = {}
    for kind, items, out in (("target", parsed.targets, targets), ("link", parsed.links, links)):
        for item in items:
            if item.id in out:
                raise CatalogError(f"{path.name}: duplicate {kind} id {item.id!r}")
            if item.id == HOST_ID:
                raise CatalogError(f"{path.name}: id 'host' is reserved for this machine")
            out[item.id] = item  # type: ignore[assignment]
    origins = {i: str(path) for i in [*targets, *links]}
    return Catalog(source=str(path), targets=targets, links=links, origins=origins)


def save_target(target: Target, folder: Path | None = None) -> Path:
    """Write `target` as a one-target catalog file `<id>.yaml` in the user catalog folder
    (made if missing); it is read back (and validated) before returning its path."""
    folder = folder or user_catalog_dir()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{target.id}.yaml"
    body = target.model_dump(mode="json", exclude_none=True)
    header = (
        f"# Target profile {target.id}: written by edgedl hardware calibrate.\n"
        "# Same schema as data/hardware.yaml (README: Target profiles); edit with care.\n"
    )
    path.write_text(header + yaml.safe_dump({"targets": [body]}, sort_keys=False), "utf-8")
    load_catalog(path, user=False)
    return path


def get_target(target_id: str, catalog: Catalog | None = None, *, threads: int = 1) -> Target:
    """A catalog target, or `host` (built from this machine's fingerprint and calibration)."""
    if target_id == HOST_ID:
        from advisor.measure.calibrate import calibrate
        from advisor.measure.profile import fingerprint

        return host_target(calibrate(threads=threads), fingerprint(threads))
    return (catalog or load_catalog()).target(target_id)


def get_link(link_id: str, catalog: Catalog | None = None) -> Link:
    """A link preset by id; UnknownIdError lists the known ids."""
    return (catalog or load_catalog()).link(link_id)


def host_target(calibration: Calibration, fingerprint: Fingerprint) -> Target:
    """This machine as a target: measured ceilings, the fingerprint's CPU, total RAM."""
    import psutil

    if calibration.fingerprint_key != fingerprint.key():
        raise RequestError(
            "calibration was measured under a different fingerprint (host or thread count); "
            f"run calibrate(threads={fingerprint.threads}) on this machine"
        )
    peaks: dict[Precision, float] = {"fp32": calibration.gflops_fp32}
    bench = f"ONNX Runtime micro-benchmark at {calibration.threads} thread(s), best of repeats"
    sources = {
        "peak_gflops.fp32": f"measured on this host: fp32 MatMul GEMM ({bench})",
        "mem_bandwidth_gbps": f"measured on this host: large element-wise pass ({bench})",
        "memory_gb": "psutil.virtual_memory().total on this machine",
    }
    if calibration.gops_int8 is not None:
        peaks["int8"] = calibration.gops_int8
        sources["peak_gflops.int8"] = f"measured on this host: uint8 x int8 MatMulInteger ({bench})"
    flags = ", ".join(fingerprint.isa_flags) or "none detected"
    return Target(
        id=HOST_ID,
        name=f"This host: {fingerprint.cpu_model} ({fingerprint.threads} thread(s))",
        tier="device",
        kind="cpu",
        peak_gflops=peaks,
        mem_bandwidth_gbps=calibration.bandwidth_gbps,
        memory_gb=round(psutil.virtual_memory().total / 1e9, 1),
        power_w=None,
        precisions=list(peaks),
        sources=sources,
        notes=(
            f"{fingerprint.physical_cores} physical / {fingerprint.logical_cores} logical cores; "
            f"ISA: {flags}; onnxruntime {fingerprint.ort_version}. Ceilings are attained "
            f"single-session figures at {fingerprint.threads} thread(s), not datasheet peaks."
        ),
    )


def link_for(
    link_id: str | None,
    custom: tuple[float | None, float | None, float | None],
    catalog: Catalog | None = None,
) -> Link:
    """The device <-> server link: the preset `link_id`, else a custom one from (uplink
    Mbit/s, downlink Mbit/s, RTT ms) as the user gave them."""
    if link_id:
        return get_link(link_id, catalog)
    up, down, rtt = custom
    if up is None or down is None or rtt is None:
        raise RequestError("a custom link needs --up-mbps, --down-mbps and --rtt-ms")
    return Link(
        id="custom",
        name="custom link",
        up_mbps=up,
        down_mbps=down,
        rtt_ms=rtt,
        sources={"up_mbps": "user", "down_mbps": "user", "rtt_ms": "user"},
    )


def transfer_ms(nbytes: int, link: Link, direction: Literal["up", "down"] = "up") -> float:
    """One-way transfer time: half the round trip plus the bytes at the link's nominal rate.

    The model ignores protocol overhead, TCP slow start and loss, so it is a lower bound for
    real transfers. `up` is device -> server (uplink), `down` the reverse.

    >>> link = Link(id="x", name="x", up_mbps=8, down_mbps=8, rtt_ms=10,
    ...             sources={"up_mbps": "s", "down_mbps": "s", "rtt_ms": "s"})
    >>> transfer_ms(1_000_000, link)  # 5 ms + 8 Mbit at 8 Mbit/s
    1005.0
    """
    if nbytes < 0:
        raise RequestError(f"cannot transfer a negative number of bytes ({nbytes})")
    if direction not in ("up", "down"):
        raise RequestError(f"direction must be 'up' or 'down', not {direction!r}")
    mbps = link.up_mbps if direction == "up" else link.down_mbps
    return link.rtt_ms / 2 + nbytes * 8 / (mbps * 1e6) * 1e3
