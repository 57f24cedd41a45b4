"""`quantize.static_int8`: QDQ INT8, per-channel, calibrated on sample data (ORT tooling)."""

from __future__ import annotations

from advisor.plans import Candidate, Compute, PlanContext, Skip, planner
from advisor.plans.quantize_common import quantize_skip_reason, static_int8


@planner("quantize.static_int8", "static QDQ INT8 on the device, calibrated on sample data")
def quantize_static(ctx: PlanContext) -> list[Candidate] | Skip:
    g = ctx.graph
    if (why := quantize_skip_reason(g)) is not None:
        return Skip("quantize.static_int8", why)
    if not any(n.op_type in ("Conv", "MatMul", "Gemm", "ConvTranspose") for n in g.nodes):
        return Skip("quantize.static_int8", "no Conv, MatMul or Gemm to quantize")
    model = ctx.once(
        ("static_int8", g.digest, ctx.calib_key),
        lambda: static_int8(g.model, ctx.calib_inputs, digest=g.digest),
    )
    return [
        Candidate(
            kind="quantize.static_int8",
            title="Static INT8 (QDQ, per-channel) on the device",
            steps=[Compute("device compute", "device", ctx.device, model, precision="int8")],
            params={
                "format": "QDQ",
                "per_channel": True,
                "calibration_samples": len(ctx.calib_inputs),
                "calibration": "MinMax",
            },
        )
    ]
