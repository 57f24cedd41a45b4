"""Planners: one module per plan kind, all registered in `PLANNERS` by the `planner` decorator.

A planner looks at a `PlanContext` (the model graph, its host profile, predictions per target,
the link) and proposes `Candidate`s — concrete pipelines of compute and transfer steps with
real ONNX models — or says why it does not apply (`Skip`). It never measures:
`advisor.validate.core` runs every candidate in ONNX Runtime. Built-in planners register
exactly as an add-on would.
"""

from __future__ import annotations

import hashlib
import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
import onnx

from advisor.graph.model import ModelGraph
from advisor.measure.calibrate import Calibration
from advisor.targets.catalog import Link, Target

if TYPE_CHECKING:
    from advisor.zoo.manifest import ZooModel

T = TypeVar("T")
#: a model larger than this shares no planning work across advise calls: every distinct cut
#: would keep a copy of its weights for the whole sweep task
SHARE_LIMIT_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class Compute:
    """Run `model` on `target`. `nodes`: the original graph's nodes it holds, when unchanged
    (FP32 partitions), so its latency can be predicted node by node."""

    name: str
    tier: str  # 'device' | 'edge' | 'cloud'
    target: Target
    model: onnx.ModelProto
    precision: str = "fp32"
    nodes: frozenset[str] | None = None
    float_activations: bool = False  # int8 weights, float activations (dynamic quantization)

    def runs_on(self, target: Target) -> str | None:
        """None if `target` can run this step, else why not: an int8-only accelerator (an
        Edge TPU) runs fully integer models only. Other targets run any precision; one
        without a sourced peak for it is predicted at its fp32 peak."""
        if not target.int8_only:
            return None
        if self.precision != "int8":
            return f"{target.id} runs only int8 models; this plan runs {self.precision} on it"
        if self.float_activations:
            return (
                f"{target.id} runs only fully integer models; dynamic INT8 keeps float "
                "activations (static INT8 quantizes them too)"
            )
        return None


@dataclass(frozen=True)
class Transfer:
    """Send `tensors` over `link` ('up' towards the server, 'down' back to the device)."""

    name: str
    link: Link
    direction: str
    tensors: tuple[str, ...]


@dataclass(frozen=True)
class Exit:
    """Early exit (BranchyNet): an input leaves here when the entropy of softmax(`tensor`) is
    below `threshold`; a plan's last Exit always lets it leave (threshold inf). With `link`, the
    exit happens on the server and `tensor` is sent back to the device over it."""

    name: str
    tensor: str
    threshold: float
    link: Link | None = None


Step = Compute | Transfer | Exit


@dataclass
class Candidate:
    kind: str
    title: str
    steps: list[Step]
    params: dict[str, object] = field(default_factory=dict)
    extra: dict[str, object] = field(default_factory=dict)
    speed_claim: bool = True  # a compression plan claims to be faster than FP32: guard it
    prediction: str | None = None  # the tensor standing for the model's prediction (an early
    # exit's logits), when the plan does not produce the model's own outputs

    def cannot_run_on(self, device: Target) -> str | None:
        """Why `device` cannot run this plan's device part, or None if it can."""
        for step in self.steps:
            if isinstance(step, Compute) and step.tier == "device":
                why = step.runs_on(device)
                if why:
                    return why
        return None


@dataclass(frozen=True)
class Skip:
    kind: str
    reason: str
    extra: dict[str, object] = field(default_factory=dict)


@dataclass
class PlanContext:
    """Everything a planner may read. Built once per advice run by `advisor.pipeline`."""

    graph: ModelGraph
    device: Target
    server: Target | None  # edge if given, else cloud
    server_tier: str | None
    edge: Target | None
    cloud: Target | None
    link: Link
    cloud_link: Link | None
    device_ms: dict[str, float]  # predicted_target per node on the device
    server_ms: dict[str, float]  # predicted_target per node on the server
    edge_ms: dict[str, float]
    cloud_ms: dict[str, float]
    calib_inputs: list[dict[str, np.ndarray]]
    work_dir: Path
    calibration: Calibration
    torch_source: ZooModel | None = None  # a trained zoo model with its torch source, for pruning
    precision_ok: Callable[[Target, str], bool] = lambda t, p: p in t.precisions
    exits: tuple[str, ...] = ()  # declared exit outputs, shallowest first (advisor.graph.exits)
    eval_inputs: list[dict[str, np.ndarray]] = field(default_factory=list)  # labelled split
    labels: np.ndarray | None = None
    latency_ms: float | None = None  # the request's latency target
    threads: int = 1
    # per-inference call overhead per tier, added once per compute stage (advisor.targets.predict)
    overhead_ms: dict[str, float] = field(default_factory=dict)
    # per tier, the Prediction its per-node figures come from (source, band, threads, method)
    predictions: dict[str, Any] = field(default_factory=dict)
    target_threads: int | None = None  # the request's cap on a target's CPU threads
    # what `once` built, by key, shared by the advise calls of one process that pass the same
    # dict (a sweep's cells: advisor.measure.memo.MeasurementMemo.planning); None: not shared
    shared: dict[tuple, Any] | None = None
    # the file the FP32 model (graph.model) was first written to as an artifact in this run;
    # plans holding it again link that file instead of serializing it once more
    fp32_file: str | None = None

    def once(self, key: tuple, build: Callable[[], T]) -> T:
        """`build()`, or what an earlier advise call built for the same `key`. The key must
        name everything the result depends on by content (the graph's digest, `calib_key`,
        `eval_key`, the figures it reads): a sweep's cells share their model's conversions,
        quantizations, sub-models and exit measurements this way, whatever their target,
        link or latency target. What it returns is shared: never modify it. A model over
        SHARE_LIMIT_BYTES shares nothing (memory)."""
        if self.shared is None or not self._shares:
            return build()
        if key not in self.shared:
            self.shared[key] = build()
        return self.shared[key]  # type: ignore[no-any-return]

    @cached_property
    def _shares(self) -> bool:
        return self.graph.model.ByteSize() <= SHARE_LIMIT_BYTES

    @cached_property
    def calib_key(self) -> str:
        """A content key of the calibration inputs."""
        return _inputs_key(self.calib_inputs)

    @cached_property
    def eval_key(self) -> str:
        """A content key of the labelled evaluation split (inputs and labels)."""
        labels = b"" if self.labels is None else np.ascontiguousarray(self.labels).tobytes()
        return _inputs_key(self.eval_inputs) + hashlib.sha256(labels).hexdigest()

    def overhead(self, tier: str) -> float:
        """Fixed cost of one inference call on `tier` ('device', 'edge', 'cloud', 'server')."""
        if tier == "server":
            tier = self.server_tier or "edge"
        return self.overhead_ms.get(tier, 0.0)

    def costs(self, graph: ModelGraph | None = None, int8_boundary: bool = False):
        """`prefix_costs` for `graph` (the context's by default) between device and server."""
        from advisor.plans.costs import prefix_costs

        return prefix_costs(
            graph or self.graph,
            self.device_ms,
            self.server_ms,
            self.link,
            int8_boundary=int8_boundary,
            device_overhead_ms=self.overhead("device"),
            server_overhead_ms=self.overhead("server"),
        )


def _inputs_key(samples: list[dict[str, np.ndarray]]) -> str:
    from advisor.measure.memo import feeds_key

    h = hashlib.sha256()
    for x in samples:
        h.update(feeds_key(x).encode())
    return h.hexdigest()


def figures_key(ms: dict[str, float]) -> tuple[tuple[str, float], ...]:
    """Per-node figures as a key for `PlanContext.once`."""
    return tuple(sorted(ms.items()))


Planner = Callable[[PlanContext], "list[Candidate] | Skip"]


@dataclass(frozen=True)
class PlannerSpec:
    kind: str
    fn: Planner
    summary: str


PLANNERS: dict[str, PlannerSpec] = {}


def planner(kind: str, summary: str) -> Callable[[Planner], Planner]:
    """Register `fn` as the planner for plan kind `kind`."""

    def deco(fn: Planner) -> Planner:
        if kind in PLANNERS:
            raise ValueError(f"planner {kind!r} registered twice")
        PLANNERS[kind] = PlannerSpec(kind, fn, summary)
        return fn

    return deco


_BUILTINS = (
    "baseline",
    "partition_chain",
    "partition_dag",
    "partition_three_tier",
    "quantize_static",
    "quantize_dynamic",
    "convert_fp16",
    "prune_structured",
    "quantized_head",
    "boundary_int8",
    "early_exit_partition",
    "early_exit_threshold",
)


def load_builtins() -> dict[str, PlannerSpec]:
    for name in _BUILTINS:
        importlib.import_module(f"advisor.plans.{name}")
    return PLANNERS


__all__ = [
    "PLANNERS",
    "planner",
    "load_builtins",
    "PlanContext",
    "Candidate",
    "Skip",
    "Compute",
    "Transfer",
    "Exit",
    "Step",
]
