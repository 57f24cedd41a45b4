"""What the early-exit planners share: measured exit accuracy and the exit × cut cost table.

For a model with declared exits (`advisor.graph.exits`), every exit's sub-model (trunk up to the
exit plus its branch) is cut like any model: position 0 uploads the input and runs it all on
the server, position N runs it all on the device, the positions between are its prefix cuts.
Each pair's latency comes from the same cost model as the partition planners
(`advisor.plans.costs.prefix_costs`: device prefix + uplink + server suffix + downlink of the
exit's logits); each exit's accuracy is measured by running the model in ONNX Runtime on the
labelled split. Edgent's rule (`edgent_choice`) then takes the most accurate pair that meets
the deadline.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from advisor.graph.exits import exit_submodel, exits_of
from advisor.graph.load import load_model
from advisor.graph.model import ModelGraph
from advisor.measure.timing import make_session
from advisor.plans import PlanContext
from advisor.plans.costs import CutCost


@dataclass(frozen=True)
class ExitData:
    """The declared exits, their sub-models and what was measured on the labelled split."""

    exits: tuple[str, ...]
    graphs: dict[str, ModelGraph]  # exit -> its sub-model, node names as in the full model
    logits: dict[str, np.ndarray]  # exit -> (samples, classes), from ORT
    accuracy: dict[str, float]
    samples: int


def exit_outputs(
    graph: ModelGraph,
    inputs: list[dict[str, np.ndarray]],
    threads: int = 1,
    exits: Sequence[str] | None = None,
) -> dict[str, np.ndarray]:
    """Every exit's logits for each sample, from one ORT run of the full model per sample:
    {exit: array (samples, classes)}."""
    exits = tuple(exits or exits_of(graph))
    sess = make_session(graph.model, threads=threads)
    rows: dict[str, list[np.ndarray]] = {e: [] for e in exits}
    for x in inputs:
        for e, out in zip(exits, sess.run(list(exits), x), strict=True):
            rows[e].append(np.asarray(out).reshape(-1))
    return {e: np.stack(v) for e, v in rows.items()}


def missing(ctx: PlanContext) -> str | None:
    """Why early-exit planning cannot run on `ctx`, or None."""
    if not ctx.exits:
        return (
            "the model declares no early exits (one output only, or none named as exits); "
            "name its exit outputs with --exit NAME (repeatable, shallowest first) or "
            "advisor.graph.exits.declare_exits, or use a multi-exit model such as digits_multiexit"
        )
    if ctx.labels is None or not ctx.eval_inputs:
        return (
            "early-exit planning measures each exit's accuracy on labelled data; pass "
            "--data FILE.npz with inputs and labels y"
        )
    if ctx.latency_ms is None:
        return "early-exit planning needs a latency target"
    return None


def measure_exits(ctx: PlanContext) -> ExitData:
    """Run the model once per labelled sample in ORT; every exit's accuracy and its sub-model
    (once per model and labelled split when the context shares work: `PlanContext.once`)."""
    return ctx.once(
        ("exits", ctx.graph.digest, ctx.exits, ctx.threads, ctx.eval_key),
        lambda: _measure_exits(ctx),
    )


def _measure_exits(ctx: PlanContext) -> ExitData:
    logits = exit_outputs(ctx.graph, ctx.eval_inputs, ctx.threads, ctx.exits)
    labels = np.asarray(ctx.labels).reshape(-1)
    n = min(len(labels), len(ctx.eval_inputs))
    accuracy = {e: float(np.mean(v[:n].argmax(axis=1) == labels[:n])) for e, v in logits.items()}
    graphs = {e: load_model(exit_submodel(ctx.graph, e)) for e in ctx.exits}
    return ExitData(ctx.exits, graphs, logits, accuracy, n)


@dataclass(frozen=True)
class PairCost:
    """One (exit, cut) pair: the exit's sub-model cut at `cut.position`."""

    exit: str
    exit_index: int  # 0 = shallowest
    nodes: int  # nodes in the exit's sub-model; position == nodes: all on the device
    cut: CutCost
    cut_after: str | None  # layer of the last device node (None: all on the server)
    accuracy: float
    meets: bool

    @property
    def total_ms(self) -> float:
        return self.cut.total_ms

    @property
    def placement(self) -> str:
        if self.cut.position == 0:
            return "all on server"
        return "all on device" if self.cut.position == self.nodes else "split"

    def as_row(self) -> dict[str, object]:
        return {
            "exit": self.exit,
            "exit_index": self.exit_index,
            "nodes": self.nodes,
            "placement": self.placement,
            "cut_after": self.cut_after,
            **self.cut.as_row(),
            "predicted_ms": round(self.total_ms, 4),
            "latency_kind": "predicted_target",
            "accuracy": self.accuracy,
            "accuracy_kind": "measured (ONNX Runtime, labelled split)",
            "meets": self.meets,
        }


def pair_costs(ctx: PlanContext, data: ExitData) -> list[PairCost]:
    """Every (exit, cut) pair with its predicted latency and the exit's measured accuracy."""
    deadline = ctx.latency_ms if ctx.latency_ms is not None else float("inf")
    rows = []
    for i, e in enumerate(data.exits):
        g = data.graphs[e]
        n = len(g.nodes)
        if ctx.server is not None:
            cuts = ctx.costs(g)
        else:  # no server: only the all-on-device path exists
            dev = sum(ctx.device_ms[node.name] for node in g.nodes) + ctx.overhead("device")
            cuts = [CutCost(n, (), 0, dev, 0.0, 0.0, 0.0)]
        for c in cuts:
            after = g.nodes[c.position - 1].layer if c.position > 0 else None
            rows.append(PairCost(e, i, n, c, after, data.accuracy[e], c.total_ms <= deadline))
    return rows


def edgent_choice(rows: list[PairCost]) -> PairCost | None:
    """Edgent's rule: the most accurate pair that meets the deadline; ties -> lower latency."""
    ok = [r for r in rows if r.meets]
    return (
        min(ok, key=lambda r: (-r.accuracy, r.total_ms, r.exit_index, r.cut.position))
        if ok
        else None
    )
