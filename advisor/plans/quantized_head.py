"""`combo.quantized_head_partition`: the best single-tensor cut, with the device's head in
static INT8 and the server's tail in FP32."""

from __future__ import annotations

from advisor.plans import Candidate, Compute, PlanContext, Skip, planner
from advisor.plans.costs import best
from advisor.plans.partition_chain import partition_candidate
from advisor.plans.quantize_common import quantize_skip_reason, static_int8


@planner("combo.quantized_head_partition", "best cut with an INT8 head on the device")
def quantized_head(ctx: PlanContext) -> list[Candidate] | Skip:
    if ctx.server is None:
        return Skip("combo.quantized_head_partition", "no edge or cloud target given")
    g = ctx.graph
    if (why := quantize_skip_reason(g)) is not None:
        return Skip("combo.quantized_head_partition", why)
    top = best(
        ctx.costs(g),
        single_only=True,
        proper_only=True,
        n_nodes=len(g.nodes),
    )
    if top is None:
        return Skip("combo.quantized_head_partition", "the model has no inner single-tensor cut")
    if not any(n.op_type in ("Conv", "MatMul", "Gemm") for n in g.nodes[: top.position]):
        return Skip(
            "combo.quantized_head_partition",
            "the best cut's head has no Conv, MatMul or Gemm to quantize",
        )
    base = partition_candidate(ctx, "combo.quantized_head_partition", "", top.position)
    head = base.steps[0]
    if not isinstance(head, Compute):
        raise TypeError("a partition starts with the device compute step")
    names = {i.name for i in head.model.graph.input}
    calib = [{k: v for k, v in s.items() if k in names} for s in ctx.calib_inputs]
    q = ctx.once(
        ("static_int8 head", g.digest, top.position, ctx.calib_key),
        lambda: static_int8(head.model, calib),
    )
    base.steps[0] = Compute(head.name, head.tier, head.target, q, precision="int8")
    base.title = f"INT8 head up to {g.nodes[top.position - 1].layer}, FP32 tail on the server"
    base.speed_claim = False
    return [base]
