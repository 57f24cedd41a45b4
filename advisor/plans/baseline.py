"""Baselines: the whole model on the device, or the whole model on the server."""

from __future__ import annotations

from advisor.plans import Candidate, Compute, PlanContext, Skip, Transfer, planner


@planner("baseline.device", "the FP32 model, all on the end device")
def all_on_device(ctx: PlanContext) -> list[Candidate]:
    g = ctx.graph
    return [
        Candidate(
            kind="baseline.device",
            title=f"All on {ctx.device.name} ({g.precision.upper()})",
            steps=[
                Compute(
                    "device compute",
                    "device",
                    ctx.device,
                    g.model,
                    nodes=frozenset(n.name for n in g.nodes),
                )
            ],
            speed_claim=False,
        )
    ]


@planner("baseline.server", "upload the input, run the FP32 model on the server")
def all_on_server(ctx: PlanContext) -> list[Candidate] | Skip:
    if ctx.server is None:
        return Skip("baseline.server", "no edge or cloud target given (--edge / --cloud)")
    g = ctx.graph
    tier = ctx.server_tier or "edge"
    return [
        Candidate(
            kind="baseline.server",
            title=f"All on {ctx.server.name} (input uploaded)",
            steps=[
                Transfer("uplink transfer", ctx.link, "up", tuple(t.name for t in g.inputs)),
                Compute(
                    f"{tier} compute",
                    tier,
                    ctx.server,
                    g.model,
                    nodes=frozenset(n.name for n in g.nodes),
                ),
                Transfer("downlink transfer", ctx.link, "down", tuple(t.name for t in g.outputs)),
            ],
            speed_claim=False,
        )
    ]
