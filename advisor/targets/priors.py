"""Catalog priors: how far below its datasheet peak each catalog target runs, fitted to
published measurements (`data/published_latency.yaml`).

The model for one node on a target without a measured profile is a roofline with the fixed
costs it leaves out:

    t_node = max(F / P, B / BW) / s  +  d          t_model = sum of t_node  +  c

F = node FLOPs, B = bytes it reads and writes (activations and weights, at the precision's
width), P and BW = the target's datasheet peak and bandwidth (data/hardware.yaml), s = the
attained fraction for that target, compute unit and precision, d = the per-node cost of the
runtime on that kind of unit (kernel launch on a GPU, dispatch on a CPU), c = the
per-inference cost. `fit()` chooses s per (target, unit, precision) and d, c per unit on a
seeded part of the published rows and reports the error on the rest; `data/target_priors.yaml`
holds the result (`python -m bench.target_fit` writes it), with the error band found
by cross-validation on the fitted part.

>>> p = load_priors()
>>> 0 < p.scale_for("rpi4", "cpu", "fp32") < 1
True
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from advisor.errors import CatalogError
from advisor.targets.catalog import Precision, Target

__all__ = [
    "DEFAULT_PRIORS",
    "Priors",
    "NodeWork",
    "load_priors",
    "unit_of",
    "roofline_terms",
    "predict_work",
    "thread_factor",
    "runtime_family",
    "fit",
]

DEFAULT_PRIORS = Path(__file__).resolve().parents[2] / "data" / "target_priors.yaml"
Unit = Literal["cpu", "gpu", "npu", "tpu"]
#: bytes per value at each precision (activations and weights move at the compute width)
WIDTH = {"fp32": 1.0, "fp16": 0.5, "int8": 0.25}


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class Priors(_Frozen):
    """Fitted efficiencies and fixed costs, with how they were fitted and how well they hold."""

    fitted: str = Field(description="date, command and data the fit used")
    scale: dict[str, float] = Field(
        description="'target/unit/precision/runtime' -> attained fraction"
    )
    rows: dict[str, int] = Field(description="fitted rows per scale key")
    unit_scale: dict[str, float] = Field(description="'unit/precision' -> median fraction")
    thread_exponent: float = Field(
        gt=0, le=1, description="CPU speed-up from T threads = T ** exponent"
    )
    per_node_us: dict[str, float] = Field(description="unit -> per-node cost, µs")
    call_ms: dict[str, float] = Field(description="unit -> per-inference cost, ms")
    band: float = Field(gt=0, description="ln-space error band (p80, cross-validated)")
    band_fallback: float = Field(gt=0, description="band for a target without its own rows")
    held_out: dict[str, float] = Field(description="error on the held-out rows")

    def runtime_for(self, target: str, unit: str, precision: str) -> str | None:
        """The runtime most published rows used for this target, unit and precision."""
        prefix = f"{target}/{unit}/{precision}/"
        keys = [k for k in self.scale if k.startswith(prefix)]
        if not keys:
            return None
        best = max(keys, key=lambda k: (self.rows.get(k, 0), k))
        return best.removeprefix(prefix)

    def scale_for(
        self, target: str, unit: str, precision: str, runtime: str | None = None
    ) -> float:
        """The attained fraction with `runtime` (default: the target's most-published one),
        else the median of its unit at that precision (a target without published rows)."""
        if runtime is not None and f"{target}/{unit}/{precision}/{runtime}" in self.scale:
            return self.scale[f"{target}/{unit}/{precision}/{runtime}"]
        runtime = self.runtime_for(target, unit, precision)
        if runtime is not None:
            return self.scale[f"{target}/{unit}/{precision}/{runtime}"]
        return self.unit_scale.get(f"{unit}/{precision}") or self.unit_scale.get(
            f"{unit}/fp32", 0.3
        )

    def has_rows(self, target: str, unit: str, precision: str) -> bool:
        return self.runtime_for(target, unit, precision) is not None


def load_priors(path: str | Path | None = None) -> Priors:
    path = Path(path) if path is not None else DEFAULT_PRIORS
    try:
        st = path.stat()
    except OSError as exc:
        raise CatalogError(f"cannot read target priors {path}: {exc.strerror or exc}") from exc
    return _load(str(path), st.st_mtime_ns)


@functools.lru_cache(maxsize=4)
def _load(path: str, _mtime: int) -> Priors:
    try:
        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
        return Priors.model_validate(raw)
    except (OSError, yaml.YAMLError, ValidationError) as exc:
        detail = " ".join(str(exc).split())[:300]
        raise CatalogError(
            f"{Path(path).name}: not a valid priors file ({detail}); regenerate it with "
            "python -m bench.target_fit"
        ) from exc


def runtime_family(runtime: str) -> str:
    """'ncnn (benchncnn)' -> 'ncnn', 'TensorFlow Lite (QNN delegate)' -> 'tensorflow-lite'.

    >>> runtime_family("TensorRT"), runtime_family("TensorFlow Lite + Edge TPU runtime")
    ('tensorrt', 'tensorflow-lite')
    """
    words = runtime.lower().replace("+", " ").replace("(", " ").split()
    if words[:2] == ["tensorflow", "lite"]:
        return "tensorflow-lite"
    return words[0] if words else "unknown"


def unit_of(target: Target, precision: str) -> Unit:
    """Which part of the target runs a model at `precision`: a phone SoC's int8 peak is its
    NPU's, its fp32/fp16 peaks its CPU cores'."""
    if target.kind == "soc":
        return "npu" if precision == "int8" and "int8" in target.peak_gflops else "cpu"
    return "cpu" if target.kind == "cpu" else target.kind  # type: ignore[return-value]


class NodeWork(_Frozen):
    """What one node costs in work: FLOPs and fp32 bytes moved (inputs, outputs, weights)."""

    flops: float
    bytes: float
    op_class: str = "other"


def roofline_terms(
    nodes: Iterable[NodeWork], target: Target, precision: Precision
) -> tuple[float, int]:
    """(sum over nodes of max(F / P, B / BW) in ms at the precision's peak, node count)."""
    peak = target.peak_gflops.get(precision) or target.peak_gflops.get("fp32")
    if peak is None:
        peak = next(iter(target.peak_gflops.values()))
    width = WIDTH.get(precision, 1.0)
    total, count = 0.0, 0
    for n in nodes:
        total += max(n.flops / (peak * 1e6), n.bytes * width / (target.mem_bandwidth_gbps * 1e6))
        count += 1
    return total, count


def thread_factor(target: Target, unit: str, threads: int | None, exponent: float) -> float:
    """How much longer than on all its cores a CPU target takes on `threads` threads: the
    rate on T of C cores is (T / C) ** exponent of the whole chip's; 1 for other units, for
    targets without a core count, and when `threads` is None (all cores).

    >>> from advisor.targets.catalog import load_catalog
    >>> round(thread_factor(load_catalog(user=False).target("rpi4"), "cpu", 1, 0.9), 3)
    3.482
    """
    if unit != "cpu" or not target.cores or threads is None:
        return 1.0
    used = min(max(threads, 1), target.cores)
    return float((target.cores / used) ** exponent)


def predict_work(
    nodes: Sequence[NodeWork],
    target: Target,
    precision: Precision,
    priors: Priors,
    *,
    threads: int | None = None,
    runtime: str | None = None,
    with_call: bool = True,
) -> float:
    """Predicted ms for running `nodes` on `target` at `precision` from the catalog priors,
    on `threads` CPU threads (None: all the target's cores)."""
    unit = unit_of(target, precision)
    s = priors.scale_for(target.id, unit, precision, runtime)
    roof, count = roofline_terms(nodes, target, precision)
    roof *= thread_factor(target, unit, threads, priors.thread_exponent)
    call = priors.call_ms.get(unit, 0.0) if with_call else 0.0
    return roof / s + count * priors.per_node_us.get(unit, 0.0) / 1e3 + call


# --- fitting --------------------------------------------------------------------------------

_D_GRID = {  # per-node cost candidates, µs
    "cpu": [0.0, 1, 2, 5, 10, 20, 40],
    "gpu": [0.0, 2, 5, 10, 20, 40, 80],
    "npu": [0.0, 2, 5, 10, 20, 40, 80],
    "tpu": [0.0, 2, 5, 10, 20, 40, 80],
}
_C_GRID = [0.0, 0.05, 0.2, 0.5, 1.0]  # per-inference cost candidates, ms


def _best_scale(roof: np.ndarray, fixed: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    """The s minimising sum of squared ln errors of roof / s + fixed against truth."""
    work = truth - fixed
    if np.any(work <= 0):
        grid = np.exp(np.linspace(math.log(1e-4), math.log(2.0), 160))
    else:
        guess = float(np.exp(np.median(np.log(roof / work))))
        grid = guess * np.exp(np.linspace(-2.5, 2.5, 121))
    errs = [float(np.sum(np.log((roof / s + fixed) / truth) ** 2)) for s in grid]
    i = int(np.argmin(errs))
    return float(grid[i]), errs[i]


def fit(
    rows: Sequence[tuple[str, str, float, float, int]],
) -> tuple[dict[str, float], dict[str, float], dict[str, float], float]:
    """Fit (scale per group key, per-node µs per unit, call ms per unit, total squared ln
    error) to rows of (group key 'target/unit/precision/runtime', unit, roofline ms at the
    row's thread count, published ms, node count)."""
    scale: dict[str, float] = {}
    per_node: dict[str, float] = {}
    call: dict[str, float] = {}
    grand = 0.0
    for unit in sorted({r[1] for r in rows}):
        mine = [r for r in rows if r[1] == unit]
        groups = sorted({r[0] for r in mine})
        best: tuple[float, float, float, dict[str, float]] | None = None
        for d in _D_GRID.get(unit, _D_GRID["gpu"]):
            for c in _C_GRID:
                total, scales = 0.0, {}
                for g in groups:
                    sel = [r for r in mine if r[0] == g]
                    roof = np.array([r[2] for r in sel])
                    truth = np.array([r[3] for r in sel])
                    fixed = np.array([r[4] * d / 1e3 + c for r in sel])
                    scales[g], err = _best_scale(roof, fixed, truth)
                    total += err
                if best is None or total < best[0]:
                    best = (total, d, c, scales)
        if best is None:
            continue
        err, per_node[unit], call[unit], found = best
        scale.update(found)
        grand += err
    return scale, per_node, call, grand
