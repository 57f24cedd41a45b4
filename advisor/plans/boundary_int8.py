"""`compress.boundary_int8`: JALAD-style — the tensors crossing the cut are quantized to 8
bits (per-tensor scale and zero point) before they are sent, and restored on the server.

The cut is chosen under the cost model with the compressed sizes; the fidelity cost is measured
by `advisor.validate`, which really quantizes and restores the boundary."""

from __future__ import annotations

from advisor.plans import Candidate, PlanContext, Skip, planner
from advisor.plans.costs import best
from advisor.plans.partition_chain import partition_candidate


@planner("compress.boundary_int8", "best cut with the boundary tensor sent as INT8 (JALAD)")
def boundary_int8(ctx: PlanContext) -> list[Candidate] | Skip:
    if ctx.server is None:
        return Skip("compress.boundary_int8", "no edge or cloud target given")
    g = ctx.graph
    rows = ctx.costs(g, int8_boundary=True)
    top = best(rows, proper_only=True, n_nodes=len(g.nodes))
    if top is None:
        return Skip("compress.boundary_int8", "the model has no inner cut")
    c = partition_candidate(
        ctx,
        "compress.boundary_int8",
        f"Cut after {g.nodes[top.position - 1].layer}, boundary sent as INT8 "
        f"({top.bytes / 1024:.1f} KiB)",
        top.position,
        int8=True,
    )
    return [c]
