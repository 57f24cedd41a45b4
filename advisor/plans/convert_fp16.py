"""`convert.fp16`: weights and compute in half precision, for targets that support fp16."""

from __future__ import annotations

from advisor.plans import Candidate, Compute, PlanContext, Skip, planner


@planner("convert.fp16", "FP16 weights and compute on the device (targets with fp16)")
def convert_fp16(ctx: PlanContext) -> list[Candidate] | Skip:
    if ctx.graph.precision == "fp16":
        return Skip("convert.fp16", "the model is already FP16: the baseline plans run it as is")
    if not ctx.precision_ok(ctx.device, "fp16"):
        return Skip(
            "convert.fp16",
            f"{ctx.device.name} does not list fp16 among its precisions "
            f"({', '.join(ctx.device.precisions)})",
        )
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = ctx.once(
        ("convert.fp16", ctx.graph.digest),
        lambda: convert_float_to_float16(ctx.graph.model, keep_io_types=True),
    )
    return [
        Candidate(
            kind="convert.fp16",
            title="FP16 on the device (inputs and outputs stay FP32)",
            steps=[Compute("device compute", "device", ctx.device, model, precision="fp16")],
            params={"keep_io_types": True},
        )
    ]
