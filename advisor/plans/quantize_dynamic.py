"""`quantize.dynamic_int8`: INT8 weights, activations quantized at run time (ORT tooling).

Meant for MatMul/Gemm-heavy models (Transformers). It is proposed for every model with
quantizable ops, because whether it pays is a measurement, not a rule: on ORT's CPU provider,
dynamically quantized Conv layers (ConvInteger) run far slower than FP32, and the guard in
`advisor.validate.core` rejects the plan with the measured figures.
"""

from __future__ import annotations

from advisor.plans import Candidate, Compute, PlanContext, Skip, planner
from advisor.plans.quantize_common import dynamic_int8, quantize_skip_reason


@planner(
    "quantize.dynamic_int8", "dynamic INT8 on the device (weights INT8, activations at run time)"
)
def quantize_dynamic(ctx: PlanContext) -> list[Candidate] | Skip:
    g = ctx.graph
    if (why := quantize_skip_reason(g)) is not None:
        return Skip("quantize.dynamic_int8", why)
    ops = {n.op_type for n in g.nodes}
    if not ops & {"Conv", "MatMul", "Gemm"}:
        return Skip("quantize.dynamic_int8", "no Conv, MatMul or Gemm to quantize")
    convs = sum(1 for n in g.nodes if n.op_type == "Conv")
    return [
        Candidate(
            kind="quantize.dynamic_int8",
            title="Dynamic INT8 on the device",
            steps=[
                Compute(
                    "device compute",
                    "device",
                    ctx.device,
                    ctx.once(("dynamic_int8", g.digest), lambda: dynamic_int8(g.model, g.digest)),
                    precision="int8",
                    float_activations=True,
                )
            ],
            params={"weight_type": "QInt8", "conv_layers": convs},
        )
    ]
