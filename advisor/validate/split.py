"""Run a partitioned model for real: some stages here in ONNX Runtime, some on agents.

A two-tier split is ``[head here, tail on a server]``; a three-tier chain is
``[head here, middle on an edge agent, tail on a cloud agent]``. Tensors flow through a pool
kept by this client: every stage takes the tensors it needs by name (boundary tensors,
graph inputs) and adds its outputs, so multi-tensor cuts across skip connections and
stages that read an earlier stage's tensors both work. In a chain the client relays each
hop's outputs to the next agent (agents never call each other: no agent forwards requests
to a URL a caller names).

Each request's end-to-end time is broken down (ms, wall clock on this client):

    total = head + serialize + network + server_overhead + tail + return + deserialize

``head`` is local compute, ``tail`` the agents' own session.run time (X-Compute-Ms),
``network`` the upload plus link latency plus HTTP overhead, ``return`` the response's
download. With an :class:`EmulatedLink` the network legs follow the documented model
``one_way = rtt/2 + bytes*8/bandwidth`` each way (see advisor.agent.link).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import onnx
from pydantic import BaseModel, ConfigDict

from advisor.agent.client import AgentClient, RemoteRun
from advisor.agent.link import EmulatedLink
from advisor.errors import InputDataError, RequestError
from advisor.graph.cuts import split_model
from advisor.graph.load import load_model
from advisor.graph.model import ModelGraph
from advisor.measure.profile import make_session

__all__ = [
    "EmulatedLink",
    "HopTiming",
    "LocalStage",
    "RemoteStage",
    "SplitMeasurement",
    "SplitRun",
    "SplitRunner",
    "SplitTiming",
    "max_abs_error",
]

_FIELDS = (
    "head_ms",
    "serialize_ms",
    "network_ms",
    "server_overhead_ms",
    "tail_ms",
    "return_ms",
    "deserialize_ms",
    "total_ms",
)


class HopTiming(BaseModel):
    """One remote stage of one request (ms)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    agent: str
    model_id: str
    bytes_up: int
    bytes_down: int
    serialize_ms: float
    network_ms: float
    server_ms: float
    compute_ms: float
    return_ms: float
    deserialize_ms: float


class SplitTiming(BaseModel):
    """Where one request's time went. Measured on the real stages and agents
    ('measured_target'); ``link`` says whether the network legs were emulated."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    kind: Literal["measured_target"] = "measured_target"
    link: Literal["emulated", "real"]
    head_ms: float  # local stages' compute
    serialize_ms: float
    network_ms: float
    server_overhead_ms: float  # agents' time beyond session.run (decode, queue, encode)
    tail_ms: float  # agents' session.run time, all remote stages
    return_ms: float
    deserialize_ms: float
    total_ms: float
    bytes_up: int
    bytes_down: int
    hops: tuple[HopTiming, ...]


class SplitMeasurement(BaseModel):
    """Medians over repeated requests (ms), the p90 of the total, and every run."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    kind: Literal["measured_target"] = "measured_target"
    link: Literal["emulated", "real"]
    repeats: int
    warmup: int
    median_ms: dict[str, float]  # per field of SplitTiming (head_ms, ..., total_ms)
    p90_total_ms: float
    runs: tuple[SplitTiming, ...]


@dataclass(frozen=True)
class SplitRun:
    outputs: dict[str, np.ndarray]
    timing: SplitTiming


def _graph_inputs(model: onnx.ModelProto) -> tuple[str, ...]:
    initializers = {t.name for t in model.graph.initializer}
    return tuple(i.name for i in model.graph.input if i.name not in initializers)


def _graph_outputs(model: onnx.ModelProto) -> tuple[str, ...]:
    return tuple(o.name for o in model.graph.output)


class LocalStage:
    """A sub-model run here, in an ONNX Runtime CPU session."""

    def __init__(self, model: onnx.ModelProto, threads: int = 1) -> None:
        self.inputs = _graph_inputs(model)
        self.outputs = _graph_outputs(model)
        self.session = make_session(model, threads=threads)

    def run(self, feeds: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], float]:
        start = time.perf_counter()
        values = self.session.run(list(self.outputs), feeds)
        return dict(zip(self.outputs, values, strict=True)), (time.perf_counter() - start) * 1e3


class RemoteStage:
    """A sub-model stored on an agent (uploaded on construction), reached over ``link``."""

    def __init__(
        self, model: onnx.ModelProto, agent: AgentClient, link: EmulatedLink | None = None
    ) -> None:
        self.inputs = _graph_inputs(model)
        self.outputs = _graph_outputs(model)
        self.agent = agent
        self.link = link
        self.model_id = agent.upload_model(model)

    def run(self, feeds: dict[str, np.ndarray]) -> RemoteRun:
        return self.agent.run_timed(self.model_id, feeds, self.link)


class SplitRunner:
    """Runs stages in order over a pool of named tensors; returns ``outputs`` from it."""

    def __init__(
        self, stages: Sequence[LocalStage | RemoteStage], outputs: Sequence[str] | None = None
    ) -> None:
        if not stages:
            raise RequestError("a split needs at least one stage")
        self.stages = tuple(stages)
        self.outputs = tuple(outputs) if outputs is not None else self.stages[-1].outputs
        self.inputs = self._external_inputs()

    def _external_inputs(self) -> tuple[str, ...]:
        """The tensors the caller must supply: read by a stage, made by no earlier one."""
        made: set[str] = set()
        needed: list[str] = []
        for stage in self.stages:
            needed += [n for n in stage.inputs if n not in made and n not in needed]
            made.update(stage.outputs)
        missing = [n for n in self.outputs if n not in made and n not in needed]
        if missing:
            raise RequestError(f"no stage of the split produces the output(s) {missing}")
        return tuple(needed)

    @classmethod
    def build(
        cls,
        parts: Sequence[onnx.ModelProto],
        agents: Sequence[AgentClient | None],
        links: Sequence[EmulatedLink | None] | None = None,
        *,
        outputs: Sequence[str] | None = None,
        threads: int = 1,
    ) -> SplitRunner:
        """Stage i runs ``parts[i]`` here when ``agents[i]`` is None, else on that agent,
        reached over ``links[i]`` (None: the real network only)."""
        links = list(links) if links is not None else [None] * len(parts)
        if not len(parts) == len(agents) == len(links):
            raise RequestError(
                f"a split needs one agent (or None) and one link (or None) per part: got "
                f"{len(parts)} parts, {len(agents)} agents, {len(links)} links"
            )
        stages: list[LocalStage | RemoteStage] = [
            LocalStage(part, threads) if agent is None else RemoteStage(part, agent, link)
            for part, agent, link in zip(parts, agents, links, strict=True)
        ]
        return cls(stages, outputs)

    @classmethod
    def from_heads(
        cls,
        graph: ModelGraph,
        heads: Sequence[Collection[str]],
        agents: Sequence[AgentClient],
        links: Sequence[EmulatedLink | None] | None = None,
        *,
        threads: int = 1,
    ) -> SplitRunner:
        """Split ``graph`` (an advisor.graph.model.ModelGraph) at nested heads (sets of node names,
        each containing the one before) into ``len(heads) + 1`` parts: the first runs here,
        part i+1 on ``agents[i]`` over ``links[i]`` (None: the real network). One head =
        head/tail; two heads = a three-tier chain."""
        if len(agents) != len(heads):
            raise RequestError(
                f"{len(heads)} head(s) need {len(heads)} agent(s), got {len(agents)}"
            )
        parts: list[onnx.ModelProto] = []
        rest, done = graph, frozenset[str]()  # rest: the part not yet split off
        for head in heads:
            head = frozenset(head)
            if not done <= head or head == done:
                raise RequestError("each head must strictly contain the previous one")
            first, tail, _ = split_model(rest, head - done)
            parts.append(first)
            rest, done = load_model(tail), head
        parts.append(rest.model)
        outputs = [o.name for o in graph.outputs]
        return cls.build(
            parts,
            [None, *agents],
            [None, *(links or [None] * len(agents))],
            outputs=outputs,
            threads=threads,
        )

    def run(self, inputs: Mapping[str, np.ndarray]) -> SplitRun:
        """One end-to-end request: outputs and the time breakdown."""
        missing = [n for n in self.inputs if n not in inputs]
        if missing:
            raise InputDataError(f"the split needs input tensor(s) {missing}; got {sorted(inputs)}")
        pool: dict[str, np.ndarray] = {n: np.asarray(inputs[n]) for n in self.inputs}
        head_ms = 0.0
        hops: list[HopTiming] = []
        start = time.perf_counter()
        for stage in self.stages:
            feeds = {n: pool[n] for n in stage.inputs}
            if isinstance(stage, LocalStage):
                produced, ms = stage.run(feeds)
                head_ms += ms
            else:
                remote = stage.run(feeds)
                produced = remote.outputs
                hops.append(_hop(stage, remote))
            pool.update(produced)
        total_ms = (time.perf_counter() - start) * 1e3
        emulated = any(isinstance(s, RemoteStage) and s.link for s in self.stages)
        timing = SplitTiming(
            link="emulated" if emulated else "real",
            head_ms=head_ms,
            serialize_ms=sum(h.serialize_ms for h in hops),
            network_ms=sum(h.network_ms for h in hops),
            server_overhead_ms=sum(h.server_ms - h.compute_ms for h in hops),
            tail_ms=sum(h.compute_ms for h in hops),
            return_ms=sum(h.return_ms for h in hops),
            deserialize_ms=sum(h.deserialize_ms for h in hops),
            total_ms=total_ms,
            bytes_up=sum(h.bytes_up for h in hops),
            bytes_down=sum(h.bytes_down for h in hops),
            hops=tuple(hops),
        )
        return SplitRun({n: pool[n] for n in self.outputs}, timing)

    def measure(
        self, inputs: Mapping[str, np.ndarray], repeats: int = 15, warmup: int = 2
    ) -> SplitMeasurement:
        """Repeat the request (after ``warmup`` unrecorded ones); medians per field."""
        if repeats < 1 or warmup < 0:
            raise RequestError(f"repeats must be >= 1 and warmup >= 0, got {repeats}, {warmup}")
        for _ in range(warmup):
            self.run(inputs)
        runs = tuple(self.run(inputs).timing for _ in range(repeats))
        totals = sorted(r.total_ms for r in runs)
        return SplitMeasurement(
            link=runs[0].link,
            repeats=repeats,
            warmup=warmup,
            median_ms={f: statistics.median(getattr(r, f) for r in runs) for f in _FIELDS},
            p90_total_ms=totals[min(len(totals) - 1, int(0.9 * len(totals)))],
            runs=runs,
        )


def _hop(stage: RemoteStage, remote: RemoteRun) -> HopTiming:
    return HopTiming(
        agent=stage.agent.url,
        model_id=stage.model_id,
        bytes_up=remote.bytes_up,
        bytes_down=remote.bytes_down,
        serialize_ms=remote.serialize_ms,
        network_ms=remote.network_ms,
        server_ms=remote.server_ms,
        compute_ms=remote.compute_ms,
        return_ms=remote.return_ms,
        deserialize_ms=remote.deserialize_ms,
    )


def max_abs_error(got: Mapping[str, np.ndarray], want: Mapping[str, np.ndarray]) -> float:
    """Largest absolute difference over the outputs ``want`` names (inf if one is missing
    or has another shape)."""
    worst = 0.0
    for name, ref in want.items():
        if name not in got or np.shape(got[name]) != np.shape(ref):
            return float("inf")
        if np.size(ref):
            diff = np.abs(np.asarray(got[name], np.float64) - np.asarray(ref, np.float64))
            worst = max(worst, float(np.max(diff)))
    return worst
