"""`early_exit.partition`: pick the exit and the device/server cut together (Edgent).

For each declared exit and each cut of its sub-model (all on the server, every prefix cut, all
on the device) the latency is predicted with the partition cost model and the accuracy is the
exit's accuracy measured on the labelled split. Edgent's rule takes the most accurate pair
whose predicted latency meets the target (ties: lower latency). The whole exit × cut table
goes into the plan's `extra`; the chosen pair becomes a pipeline of the exit's sub-model parts,
which validation runs in ONNX Runtime on the labelled split.
"""

from __future__ import annotations

from advisor.graph.cuts import split_model
from advisor.graph.model import ModelGraph
from advisor.plans import Candidate, Compute, PlanContext, Skip, Step, Transfer, planner
from advisor.plans.costs import size_text
from advisor.plans.exit_costs import PairCost, edgent_choice, measure_exits, missing, pair_costs

KIND = "early_exit.partition"


def exit_candidate(
    ctx: PlanContext,
    graph: ModelGraph,
    pair: PairCost,
    kind: str,
    title: str,
    extra: dict | None = None,
) -> Candidate:
    """The steps that run exit `pair.exit`'s sub-model `graph` cut at `pair.cut.position`."""
    n, pos = len(graph.nodes), pair.cut.position
    names = [node.name for node in graph.nodes]
    tier = ctx.server_tier or "edge"
    ins, out = tuple(t.name for t in graph.inputs), (pair.exit,)
    server = ctx.server
    if server is None and pos != n:
        raise ValueError("a cut needs a server target")  # pair_costs offers none without one
    steps: list[Step]
    if pos == n or server is None:
        steps = [
            Compute("device compute", "device", ctx.device, graph.model, nodes=frozenset(names))
        ]
    elif pos == 0:
        steps = [
            Transfer("uplink transfer", ctx.link, "up", ins),
            Compute(f"{tier} compute", tier, server, graph.model, nodes=frozenset(names)),
            Transfer("downlink transfer", ctx.link, "down", out),
        ]
    else:
        head, tail, crossing = ctx.once(
            ("split", graph.digest, frozenset(names[:pos])),
            lambda: split_model(graph, frozenset(names[:pos])),
        )
        steps = [
            Compute("device compute", "device", ctx.device, head, nodes=frozenset(names[:pos])),
            Transfer("uplink transfer", ctx.link, "up", crossing),
            Compute(f"{tier} compute", tier, server, tail, nodes=frozenset(names[pos:])),
            Transfer("downlink transfer", ctx.link, "down", out),
        ]
    params = {
        "exit": pair.exit,
        "exit_index": pair.exit_index,
        "exits": len(ctx.exits),
        "position": pos,
        "placement": pair.placement,
        "cut_after": pair.cut_after,
        "tensors": list(pair.cut.tensors),
        "measured_exit_accuracy": pair.accuracy,
    }
    return Candidate(
        kind=kind,
        title=title,
        steps=steps,
        params=params,
        extra=extra or {},
        speed_claim=False,
        prediction=pair.exit,
    )


def pair_title(pair: PairCost, exits: int) -> str:
    where = {"all on device": "all on the device", "all on server": "all on the server"}.get(
        pair.placement, f"cut after {pair.cut_after} ({size_text(pair.cut.bytes)} sent)"
    )
    return f"Early exit {pair.exit} ({pair.exit_index + 1} of {exits}), {where}"


@planner(KIND, "early exit and device/server cut chosen together for a deadline (Edgent)")
def early_exit_partition(ctx: PlanContext) -> list[Candidate] | Skip:
    why = missing(ctx)
    if why:
        return Skip(KIND, why)
    data = measure_exits(ctx)
    rows = pair_costs(ctx, data)
    top = edgent_choice(rows)
    extra: dict[str, object] = {
        "exit_cut_table": [r.as_row() for r in rows],
        "exits": [
            {
                "exit": e,
                "accuracy": data.accuracy[e],
                "nodes": len(data.graphs[e].nodes),
                "samples": data.samples,
            }
            for e in data.exits
        ],
        "deadline_ms": ctx.latency_ms,
        "rule": "Edgent: highest measured accuracy among (exit, cut) pairs whose predicted "
        "latency meets the deadline; ties go to the lower latency",
        "link": ctx.link.id,
    }
    if top is None:
        fastest = min(rows, key=lambda r: r.total_ms)
        return Skip(
            KIND,
            f"no (exit, cut) pair meets the {ctx.latency_ms:g} ms target: the fastest "
            f"is {fastest.exit} {fastest.placement} at {fastest.total_ms:.3g} ms "
            "predicted",
            extra,
        )
    extra["chosen"] = {"exit": top.exit, "position": top.cut.position}
    return [
        exit_candidate(
            ctx, data.graphs[top.exit], top, KIND, pair_title(top, len(data.exits)), extra
        )
    ]
