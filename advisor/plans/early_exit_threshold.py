"""`early_exit.threshold`: BranchyNet's confidence cascade under a latency target.

The model runs stage by stage (`advisor.graph.exits.cascade_stages`); after each exit an input
leaves when the entropy of its softmax is below a threshold T, else it goes on; the final exit
takes whatever is left. For a range of thresholds, measured on the labelled split: the
accuracy, the share of inputs leaving at each exit (the shares sum to 1) and the expected
latency, sum over exits of share × the latency of the path that ends there. Paths run on the
device by default; where a server is given, the cascade may also hand over to it at a stage
boundary (the first m stages on the device, the rest on the server, SPINN-style), each
placement costed with the partition cost model. The most accurate (threshold, placement)
whose expected latency meets the target is offered only when it beats the best fixed exit
(Edgent's choice over every exit × cut pair); otherwise the planner says why, with the numbers.
The expected latency is an average: inputs that reach the final exit take the slowest path,
reported as `worst_path_ms`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from advisor.graph.exits import CascadeStage, cascade_stages, entropy
from advisor.plans import Candidate, Compute, Exit, PlanContext, Skip, Step, Transfer, planner
from advisor.plans.exit_costs import edgent_choice, measure_exits, missing, pair_costs
from advisor.targets.catalog import transfer_ms

KIND = "early_exit.threshold"
#: thresholds, as fractions of the largest possible entropy ln(classes)
FRACTIONS = (0.0, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0)


@dataclass(frozen=True)
class Placement:
    """The first `device_stages` stages on the device, the rest on the server."""

    device_stages: int
    path_ms: tuple[float, ...]  # predicted_target latency of leaving at each exit
    uplink: tuple[str, ...]  # tensors sent up when an input goes past the device stages

    def label(self, stages: int) -> str:
        if self.device_stages == stages:
            return "all on device"
        return (
            "all on server"
            if self.device_stages == 0
            else f"device to stage {self.device_stages}, then server"
        )


def placements(ctx: PlanContext, stages: list[CascadeStage]) -> list[Placement]:
    """Path latencies for every stage-boundary placement (only all-on-device without a server)."""
    k = len(stages)
    # each stage is its own session run: one per-inference call cost per stage, as validated
    dev = [sum(ctx.device_ms[n] for n in s.nodes) + ctx.overhead("device") for s in stages]
    out = [Placement(k, tuple(float(x) for x in np.cumsum(dev)), ())]
    if ctx.server is None:
        return out
    srv = [sum(ctx.server_ms[n] for n in s.nodes) + ctx.overhead("server") for s in stages]
    graph_inputs = {t.name for t in ctx.graph.inputs}
    for m in range(k - 1, -1, -1):
        produced = {o for s in stages[:m] for o in s.outputs} | graph_inputs
        up = tuple(dict.fromkeys(t for s in stages[m:] for t in s.inputs if t in produced))
        up_ms = transfer_ms(sum(ctx.graph.tensor(t).nbytes for t in up), ctx.link, "up")
        paths = []
        for j, s in enumerate(stages):
            if j < m:
                paths.append(sum(dev[: j + 1]))
            else:
                down = transfer_ms(ctx.graph.tensor(s.exit).nbytes, ctx.link, "down")
                paths.append(sum(dev[:m]) + up_ms + sum(srv[m : j + 1]) + down)
        out.append(Placement(m, tuple(float(x) for x in paths), up))
    return out


def cascade_exits(entropies: np.ndarray, threshold: float) -> np.ndarray:
    """Per sample, the index of the exit it leaves at: the first whose entropy is below
    `threshold`, else the last. `entropies`: (exits, samples)."""
    k = entropies.shape[0]
    confident = entropies[:-1] < threshold
    first = np.where(confident.any(axis=0), confident.argmax(axis=0), k - 1)
    return np.asarray(first)


@dataclass(frozen=True)
class ThresholdRow:
    threshold: float
    placement: Placement
    accuracy: float
    shares: tuple[float, ...]  # per exit, sums to 1
    expected_ms: float
    meets: bool

    def as_row(self, exits: tuple[str, ...]) -> dict[str, object]:
        p = self.placement
        return {
            "threshold": self.threshold,
            "placement": p.label(len(exits)),
            "device_stages": p.device_stages,
            "accuracy": self.accuracy,
            "shares": dict(zip(exits, self.shares, strict=True)),
            "path_ms": {e: round(v, 4) for e, v in zip(exits, p.path_ms, strict=True)},
            "expected_ms": round(self.expected_ms, 4),
            "worst_path_ms": round(max(p.path_ms), 4),
            "latency_kind": "predicted_target",
            "meets": self.meets,
        }


def threshold_row(
    entropies: np.ndarray, correct: np.ndarray, threshold: float, place: Placement, deadline: float
) -> ThresholdRow:
    """Accuracy, exit shares and expected latency of one (threshold, placement)."""
    taken = cascade_exits(entropies, threshold)
    n = taken.size
    shares = np.bincount(taken, minlength=entropies.shape[0]) / n
    acc = float(np.mean(correct[taken, np.arange(n)]))
    expected = float(np.dot(shares, place.path_ms))
    return ThresholdRow(
        threshold, place, acc, tuple(float(x) for x in shares), expected, expected <= deadline
    )


def cascade_steps(
    ctx: PlanContext, stages: list[CascadeStage], place: Placement, threshold: float
) -> list[Step]:
    tier = ctx.server_tier or "edge"
    steps: list[Step] = []
    for j, s in enumerate(stages):
        on_device = j < place.device_stages
        if j == place.device_stages and place.uplink:
            steps.append(Transfer("uplink transfer", ctx.link, "up", place.uplink))
        target, where = (ctx.device, "device") if on_device else (ctx.server, tier)
        if target is None:  # placements() offers server stages only when there is a server
            raise ValueError("a server stage needs a server target")
        steps.append(
            Compute(f"{where} compute (to {s.exit})", where, target, s.model, nodes=s.nodes)
        )
        last = j == len(stages) - 1
        steps.append(
            Exit(s.exit, s.exit, math.inf if last else threshold, None if on_device else ctx.link)
        )
    return steps


@planner(KIND, "entropy-threshold early-exit cascade (BranchyNet), expected latency vs target")
def early_exit_threshold(ctx: PlanContext) -> list[Candidate] | Skip:
    why = missing(ctx)
    if why:
        return Skip(KIND, why)
    data = measure_exits(ctx)
    stages = cascade_stages(ctx.graph, ctx.exits)
    labels = np.asarray(ctx.labels).reshape(-1)[: data.samples]
    logits = [data.logits[e][: data.samples] for e in data.exits]
    ent = np.stack([entropy(v) for v in logits])
    correct = np.stack([v.argmax(axis=1) == labels for v in logits])
    deadline = float(ctx.latency_ms or math.inf)
    top_entropy = math.log(logits[0].shape[1])
    places = placements(ctx, stages)
    rows = [
        threshold_row(ent, correct, f * top_entropy, p, deadline) for p in places for f in FRACTIONS
    ]
    fixed = edgent_choice(pair_costs(ctx, data))
    k = len(stages)
    extra: dict[str, object] = {
        "threshold_table": [r.as_row(data.exits) for r in rows],
        "deadline_ms": deadline,
        "samples": data.samples,
        "measure": "entropy (nats) of softmax over each exit's logits; an input leaves at the "
        "first exit whose entropy is below the threshold",
        "expected_latency": "sum over exits of measured share × predicted_target path latency",
        "best_fixed_exit": (
            {
                "exit": fixed.exit,
                "position": fixed.cut.position,
                "accuracy": fixed.accuracy,
                "predicted_ms": fixed.total_ms,
            }
            if fixed
            else None
        ),
    }
    ok = [r for r in rows if r.meets]
    if not ok:
        fast = min(rows, key=lambda r: r.expected_ms)
        return Skip(
            KIND,
            f"no threshold meets the {deadline:g} ms target on expected latency: "
            f"the fastest, T={fast.threshold:.3g} {fast.placement.label(k)}, "
            f"expects {fast.expected_ms:.3g} ms",
            extra,
        )
    best = min(ok, key=lambda r: (-r.accuracy, r.expected_ms, -r.threshold))
    where = best.placement.label(k)
    if fixed is not None and best.accuracy <= fixed.accuracy:
        return Skip(
            KIND,
            f"the most accurate threshold meeting {deadline:g} ms (T="
            f"{best.threshold:.3g}, {where}) measures {best.accuracy * 100:.2f}% "
            f"accuracy, not better than the best fixed exit ({fixed.exit}, "
            f"{fixed.placement}: {fixed.accuracy * 100:.2f}% at "
            f"{fixed.total_ms:.3g} ms)",
            extra,
        )
    extra["chosen"] = {"threshold": best.threshold, "device_stages": best.placement.device_stages}
    title = f"Entropy-threshold cascade over {k} exits (T={best.threshold:.3g} nats), {where}"
    return [
        Candidate(
            kind=KIND,
            title=title,
            steps=cascade_steps(ctx, stages, best.placement, best.threshold),
            params={
                "threshold": best.threshold,
                "placement": where,
                "device_stages": best.placement.device_stages,
                "exits": list(data.exits),
                "planned_shares": dict(zip(data.exits, best.shares, strict=True)),
                "planned_accuracy": best.accuracy,
                "planned_expected_ms": best.expected_ms,
                "worst_path_ms": max(best.placement.path_ms),
            },
            extra=extra,
            speed_claim=False,
        )
    ]
