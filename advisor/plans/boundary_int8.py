"""`compress.boundary_int8`: JALAD-style — the tensors crossing the cut are quantized to 8
bits (per-tensor scale and zero point) before they are sent, and restored on the server.

The cut is chosen under the cost model with the compressed sizes. The head and tail artifacts
carry the codec as ONNX ops, so the fidelity cost and the codec's time are measured by running
them, and a split run sends the 8-bit tensors."""

from __future__ import annotations

from dataclasses import replace

from advisor.graph.cuts import int8_boundary
from advisor.plans import Candidate, Compute, PlanContext, Skip, Transfer, planner
from advisor.plans.costs import best, is_float, size_text
from advisor.plans.partition_chain import partition_candidate


@planner("compress.boundary_int8", "best cut with the boundary tensor sent as INT8 (JALAD)")
def boundary_int8(ctx: PlanContext) -> list[Candidate] | Skip:
    if ctx.server is None:
        return Skip("compress.boundary_int8", "no edge or cloud target given")
    g = ctx.graph
    # only cuts that send a float tensor have anything to compress (a cut that sends token
    # ids alone would be a plain partition under this plan's name)
    rows = [r for r in ctx.costs(g, int8_boundary=True) if any(is_float(g, t) for t in r.tensors)]
    top = best(rows, proper_only=True, n_nodes=len(g.nodes))
    if top is None:
        return Skip(
            "compress.boundary_int8", "the model has no inner cut that sends a float tensor"
        )
    c = partition_candidate(
        ctx,
        "compress.boundary_int8",
        f"Cut after {g.nodes[top.position - 1].layer}, boundary sent as INT8 "
        f"({size_text(top.bytes)})",
        top.position,
    )
    # the artifacts carry the encoding (DynamicQuantizeLinear at the end of the head,
    # DequantizeLinear at the start of the tail): a deployment or a split run sends what the
    # plan says, and validation measures the real thing, codec time included
    head, up, tail = c.steps[0], c.steps[1], c.steps[2]
    if not (isinstance(head, Compute) and isinstance(up, Transfer) and isinstance(tail, Compute)):
        raise TypeError("a partition is device compute, uplink, server compute")
    q_head, q_tail, sent = ctx.once(
        ("int8_boundary", g.digest, top.position, tuple(up.tensors)),
        lambda: int8_boundary(g, head.model, tail.model, up.tensors),
    )
    c.steps[0] = replace(head, model=q_head)
    c.steps[1] = replace(up, tensors=sent)
    c.steps[2] = replace(tail, model=q_tail)
    c.params["sent"] = list(sent)
    c.params["codec"] = "DynamicQuantizeLinear / DequantizeLinear (uint8, per tensor)"
    return [c]
