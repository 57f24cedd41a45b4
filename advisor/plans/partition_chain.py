"""`partition.chain`: Neurosurgeon-style scan of every single-tensor cut.

Each cut's latency is predicted with the cost model (device prefix + uplink + server suffix +
downlink); the cheapest single-tensor cut wins. Endpoints (all on device, all on server) are
part of the scan; when one of them wins, the plan is the matching baseline and this planner
says so instead of proposing a duplicate.
"""

from __future__ import annotations

from advisor.graph.cuts import returned_outputs, split_model
from advisor.plans import Candidate, Compute, PlanContext, Skip, Transfer, planner
from advisor.plans.costs import best, size_text


def split_candidate(
    ctx: PlanContext,
    kind: str,
    title: str,
    head_nodes: frozenset[str],
    params: dict,
    extra: dict | None = None,
) -> Candidate:
    """`head_nodes` (closed under predecessors) on the device, the rest on the server: the
    steps every two-tier partition shares (device compute, uplink, server compute, downlink of
    the outputs the server computes)."""
    g = ctx.graph
    if ctx.server is None:
        raise ValueError("a partition needs a server target")
    head, tail, crossing = ctx.once(
        ("split", g.digest, frozenset(head_nodes)), lambda: split_model(g, head_nodes)
    )
    tier = ctx.server_tier or "edge"
    return Candidate(
        kind=kind,
        title=title,
        steps=[
            Compute("device compute", "device", ctx.device, head, nodes=head_nodes),
            Transfer("uplink transfer", ctx.link, "up", crossing),
            Compute(
                f"{tier} compute",
                tier,
                ctx.server,
                tail,
                nodes=frozenset(n.name for n in g.nodes) - head_nodes,
            ),
            Transfer("downlink transfer", ctx.link, "down", returned_outputs(g, head_nodes)),
        ],
        params={**params, "tensors": list(crossing)},
        extra=extra or {},
        speed_claim=False,
    )


def partition_candidate(
    ctx: PlanContext,
    kind: str,
    title: str,
    position: int,
    extra: dict | None = None,
) -> Candidate:
    """Head = first `position` nodes on the device, tail on the server."""
    g = ctx.graph
    return split_candidate(
        ctx,
        kind,
        title,
        frozenset(n.name for n in g.nodes[:position]),
        {
            "position": position,
            "cut_after": g.nodes[position - 1].name,
            "cut_layer": g.nodes[position - 1].layer,
        },
        extra,
    )


@planner("partition.chain", "best single-tensor cut between device and server (Neurosurgeon)")
def chain(ctx: PlanContext) -> list[Candidate] | Skip:
    if ctx.server is None:
        return Skip("partition.chain", "no edge or cloud target given (--edge / --cloud)")
    g = ctx.graph
    rows = ctx.costs(g)
    table: dict[str, object] = {"cuts": [r.as_row() for r in rows if r.single]}
    top = best(rows, single_only=True)
    n = len(g.nodes)
    if top is None:
        return Skip("partition.chain", "the model has no single-tensor cut", table)
    if top.position in (0, n):
        where = "all on the server" if top.position == 0 else "all on the device"
        return Skip(
            "partition.chain",
            f"the cheapest single-tensor cut is an endpoint ({where}, predicted "
            f"{top.total_ms:.3g} ms): the matching baseline covers it",
            {**table, "chosen_position": top.position},
        )
    return [
        partition_candidate(
            ctx,
            "partition.chain",
            f"Cut after {g.nodes[top.position - 1].layer} ({size_text(top.bytes)} sent)",
            top.position,
            extra={**table, "chosen_position": top.position},
        )
    ]
