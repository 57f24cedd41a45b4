"""`partition.three_tier`: device → edge → cloud with two prefix cuts.

Every pair of cuts i < j over the topological order is scored with the same cost model
(device nodes [0, i), edge nodes [i, j), cloud nodes [j, N), two uplinks and the downlinks);
prefix sums keep it O(N²) with O(1) per pair.
"""

from __future__ import annotations

from advisor.graph.cuts import (
    crossing_tensors,
    returned_bytes_by_position,
    returned_outputs,
    split_model,
)
from advisor.graph.segments import extract_segment
from advisor.plans import Candidate, Compute, PlanContext, Skip, Step, Transfer, planner
from advisor.plans.costs import boundary_bytes
from advisor.targets.catalog import Link, Target, transfer_ms


@planner("partition.three_tier", "device → edge → cloud with two cuts (vertical collaboration)")
def three_tier(ctx: PlanContext) -> list[Candidate] | Skip:
    if ctx.edge is None or ctx.cloud is None or ctx.cloud_link is None:
        return Skip(
            "partition.three_tier", "needs both an edge and a cloud target (--edge, --cloud)"
        )
    g = ctx.graph
    names = [n.name for n in g.nodes]
    n = len(names)
    cuts = {0: tuple(t.name for t in g.inputs)}
    cuts.update({c.position: c.tensors for c in g.cuts() if 0 < c.position < n})
    positions = sorted(cuts)

    def prefix(ms: dict[str, float]) -> list[float]:
        acc = [0.0]
        for name in names:
            acc.append(acc[-1] + ms[name])
        return acc

    dev, edge, cloud = prefix(ctx.device_ms), prefix(ctx.edge_ms), prefix(ctx.cloud_ms)
    up1 = {p: transfer_ms(boundary_bytes(g, t), ctx.link, "up") for p, t in cuts.items()}
    up2 = {p: transfer_ms(boundary_bytes(g, t), ctx.cloud_link, "up") for p, t in cuts.items()}
    # what comes back: the cloud returns the outputs it computes (nodes j..) to the edge, and
    # the edge returns every output not computed on the device (nodes i..) to the device
    returned = returned_bytes_by_position(g)
    back_edge = {p: transfer_ms(returned[p], ctx.link, "down") for p in positions}
    back_cloud = {p: transfer_ms(returned[p], ctx.cloud_link, "down") for p in positions}
    # cost(i, j) = A(i) + B(j) + fixed, so one pass with the running minimum of A over i < j
    # finds the best pair in O(P) instead of trying all O(P^2) pairs.
    fixed = ctx.overhead("edge") + ctx.overhead("cloud")
    best_cost, best_pair = float("inf"), None
    best_a, best_i = float("inf"), None
    for j in positions:
        if best_i is not None:
            cost = best_a + edge[j] + up2[j] + (cloud[n] - cloud[j]) + back_cloud[j] + fixed
            if cost < best_cost:
                best_cost, best_pair = cost, (best_i, j)
        a = dev[j] + (ctx.overhead("device") if j else 0.0) + up1[j] + back_edge[j] - edge[j]
        if a < best_a:
            best_a, best_i = a, j
    if best_pair is None:
        return Skip("partition.three_tier", "the model has too few cut points for two cuts")
    i, j = best_pair
    tiers = (ctx.edge, ctx.cloud, ctx.cloud_link)
    steps, head_nodes, mid_nodes, tail_nodes, c1, c2 = _steps(ctx, tiers, names, cuts[0], i, j)
    return [
        Candidate(
            kind="partition.three_tier",
            title=f"Device {len(head_nodes)} / edge {len(mid_nodes)} / "
            f"cloud {len(tail_nodes)} nodes",
            steps=steps,
            params={
                "cut1_position": i,
                "cut2_position": j,
                "tensors_1": list(c1),
                "tensors_2": list(c2),
            },
            extra={"cost_model_ms": round(best_cost, 4)},
            speed_claim=False,
        )
    ]


def _steps(
    ctx: PlanContext,
    tiers: tuple[Target, Target, Link],
    names: list[str],
    inputs: tuple[str, ...],
    i: int,
    j: int,
) -> tuple[list[Step], frozenset[str], frozenset[str], frozenset[str], tuple, tuple]:
    """The plan's steps for cuts at positions i < j, with the three node sets and the tensors
    crossing each cut."""
    g = ctx.graph
    edge, cloud, cloud_link = tiers
    head_nodes = frozenset(names[:i])
    mid_nodes = frozenset(names[i:j])
    tail_nodes = frozenset(names[j:])
    c1 = crossing_tensors(g, head_nodes) if head_nodes else inputs
    c2 = crossing_tensors(g, head_nodes | mid_nodes)
    head = (
        ctx.once(("split", g.digest, head_nodes), lambda: split_model(g, head_nodes))[0]
        if head_nodes
        else None
    )
    mid = ctx.once(("segment", g.digest, mid_nodes), lambda: extract_segment(g, mid_nodes))
    tail = ctx.once(
        ("split", g.digest, head_nodes | mid_nodes), lambda: split_model(g, head_nodes | mid_nodes)
    )[1]
    steps: list[Step] = []
    if head is not None:
        steps.append(Compute("device compute", "device", ctx.device, head, nodes=head_nodes))
    steps += [
        Transfer("device→edge transfer", ctx.link, "up", c1),
        Compute("edge compute", "edge", edge, mid, nodes=mid_nodes),
        Transfer("edge→cloud transfer", cloud_link, "up", c2),
        Compute("cloud compute", "cloud", cloud, tail, nodes=tail_nodes),
        Transfer(
            "cloud→edge transfer",
            cloud_link,
            "down",
            returned_outputs(g, head_nodes | mid_nodes),
        ),
        Transfer("edge→device transfer", ctx.link, "down", returned_outputs(g, head_nodes)),
    ]
    return steps, head_nodes, mid_nodes, tail_nodes, c1, c2
