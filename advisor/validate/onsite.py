"""Measurements away from this host: plans timed on the real device through its agent
(`measured_target`), and the recommended partition run end to end through a server agent.

Both take a finished list of validated plans and return them with the new figures added;
they never change what was predicted or measured here.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import onnx

from advisor.advice import AdviceRequest, Latency, PlanResult, SplitValidation, Stage
from advisor.errors import AgentError

if TYPE_CHECKING:
    from advisor.graph.model import ModelGraph
    from advisor.plans import Candidate
    from advisor.targets.catalog import Link, Target
    from advisor.targets.predict import Prediction
    from advisor.validate.fidelity import EvalSet


def _device_stage_models(plan: PlanResult) -> list[tuple[int, str]]:
    """(stage index, artifact path) for each compute stage on the device tier."""
    out, k = [], 0
    for i, s in enumerate(plan.stages):
        if s.kind != "compute":
            continue
        if s.name.startswith("device"):
            out.append((i, plan.artifacts[k]))
        k += 1
    return out


def measure_on_device_agent(
    plans: list[PlanResult], url: str, token: str | None, inputs: dict[str, np.ndarray], runs: int
) -> list[PlanResult]:
    """Time every validated plan's device-side models on the device agent.

    Adds `measured_target` to each device compute stage and to the plan: the device stages as
    measured on the target, the server stages as predicted and the transfers from the link
    model (the method says which). `prediction_error` becomes |predicted − measured| /
    measured over the device compute, where both exist for the same models.
    """
    from advisor.agent import AgentClient

    client = AgentClient(url, token)
    client.health()  # fails early with a clear AgentError when the agent is unreachable
    cache: dict[str, float] = {}
    done: list[PlanResult] = []
    for p in plans:
        device_parts = _device_stage_models(p) if p.artifacts and p.stages else []
        if not device_parts:
            done.append(p)
            continue
        stages, pred_dev, meas_dev = _device_stages_on_agent(
            p, device_parts, client, url, inputs, runs, cache
        )
        best_known = [s.measured_target or s.predicted for s in stages]
        total = sum(lat.ms for lat in best_known if lat is not None)
        cascade = p.extra.get("cascade")
        if isinstance(cascade, dict) and cascade.get("paths"):  # early exit: expected latency
            ms_of = [lat.ms if lat is not None else 0.0 for lat in best_known]
            total = sum(x["share"] * sum(ms_of[i] for i in x["stages"]) for x in cascade["paths"])
        server_part = any(s.kind == "compute" and not s.name.startswith("device") for s in stages)
        method = (
            ("expected over the measured exit shares: " if cascade else "")
            + "device compute measured on the device agent"
            + ("; server compute predicted_target" if server_part else "")
            + (
                "; transfers from the link model"
                if any(s.kind == "transfer" for s in stages)
                else ""
            )
        )
        err = abs(pred_dev - meas_dev) / meas_dev if meas_dev > 0 else None
        done.append(
            p.model_copy(
                update={
                    "stages": stages,
                    "measured_target": Latency(
                        ms=total, kind="measured_target", method=method, target=stages[0].target
                    ),
                    "prediction_error": err,
                    "extra": {**p.extra, "device_prediction_error": err},
                }
            )
        )
    return done


def _device_stages_on_agent(
    p: PlanResult,
    device_parts: list[tuple[int, str]],
    client: Any,
    url: str,
    inputs: dict[str, np.ndarray],
    runs: int,
    cache: dict[str, float],
) -> tuple[list[Stage], float, float]:
    """The plan's stages with `measured_target` on each device stage (each artifact timed once
    per run, `cache`), and the device compute's (predicted, measured) sums."""
    from advisor.agent import measure_on_agent
    from advisor.measure.timing import make_session

    stages = list(p.stages)
    env = dict(inputs)
    pred_dev = meas_dev = 0.0
    fp_key = ""
    for idx, path in device_parts:
        sess = make_session(path)
        feeds = {i.name: env[i.name] for i in sess.get_inputs()}
        env.update(
            dict(zip([o.name for o in sess.get_outputs()], sess.run(None, feeds), strict=True))
        )
        if path not in cache:
            prof = measure_on_agent(client, onnx.load(path), runs=runs, inputs=feeds)
            cache[path] = prof.end_to_end_ms
            fp_key = prof.fingerprint.cpu_model or ""
        ms = cache[path]
        s = stages[idx]
        stages[idx] = s.model_copy(
            update={
                "measured_target": Latency(
                    ms=ms,
                    kind="measured_target",
                    target=s.target,
                    method=f"ORT on the device agent {url}"
                    f"{' (' + fp_key + ')' if fp_key else ''}, median of {runs} runs",
                )
            }
        )
        pred_dev += s.predicted.ms if s.predicted else 0.0
        meas_dev += ms
    return stages, pred_dev, meas_dev


def validate_split(
    plan: PlanResult,
    url: str,
    token: str | None,
    inputs: dict[str, np.ndarray],
    reference: list[np.ndarray],
    output_names: list[str],
    link=None,
    repeats: int = 15,
    threads: int = 1,
) -> SplitValidation:
    """Run `plan` (a partition) with its device part here and the rest on the server agent."""
    from advisor.agent import AgentClient, EmulatedLink
    from advisor.validate.split import SplitRunner

    computes = [s for s in plan.stages if s.kind == "compute"]
    if len(computes) < 2 or not computes[0].name.startswith("device"):
        raise AgentError(
            f"plan {plan.id} is not a partition (it has no server part to run "
            "remotely); pick a partition plan"
        )
    client = AgentClient(url, token)
    client.health()
    parts = [onnx.load(Path(a)) for a in plan.artifacts]
    agents = [None] + [client] * (len(parts) - 1)
    emu = EmulatedLink.from_link(link) if link is not None else None
    links = [None] + [emu] * (len(parts) - 1)
    runner = SplitRunner.build(parts, agents, links, outputs=output_names, threads=threads)
    m = runner.measure(inputs, repeats=repeats)
    got = runner.run(inputs).outputs
    err = max(
        float(np.max(np.abs(got[n].astype(np.float64) - r.astype(np.float64))))
        for n, r in zip(output_names, reference, strict=True)
    )
    med = m.median_ms
    return SplitValidation(
        plan_id=plan.id,
        server_agent=url,
        link=f"emulated {link.id}" if link is not None else "real",
        repeats=repeats,
        end_to_end=Latency(
            ms=med["total_ms"],
            kind="measured_target",
            p90_ms=m.p90_total_ms,
            method=f"split runner: head here, tail on {url}; median of {repeats} requests",
        ),
        p90_ms=m.p90_total_ms,
        breakdown_ms={k.removesuffix("_ms"): round(v, 4) for k, v in med.items()},
        planned_ms=plan.measured_host.ms if plan.measured_host else float("nan"),
        max_abs_error=err,
        output_matches=err <= (plan.fidelity.max_abs_error if plan.fidelity else 0.0) + 1e-5,
    )


def _split_choice(
    candidates: list[tuple[str, Candidate]], final: list[PlanResult], recommended: str | None
) -> tuple[PlanResult | None, list[str]]:
    """The partition `--validate split` runs (the recommended one when it is a partition of
    the full model, else the best-ranked one), with notices saying which and why."""
    from advisor.plans import Exit

    own_outputs = {
        pid
        for pid, c in candidates
        if c.prediction is None and not any(isinstance(s, Exit) for s in c.steps)
    }
    parts = [
        p
        for p in final
        if p.status in ("recommended", "candidate")
        and sum(1 for s in p.stages if s.kind == "compute") >= 2
        and p.id in own_outputs
    ]
    notes = []
    if recommended and recommended not in own_outputs:
        notes.append(
            f"--validate split: {recommended} ends at an early exit, which the "
            "split runner does not check; a partition of the full model is run"
        )
    if not parts:
        notes.append("--validate split: no validated partition plan to run")
        return None, notes
    chosen = next((p for p in parts if p.status == "recommended"), parts[0])
    if chosen.status != "recommended" and (recommended is None or recommended in own_outputs):
        why = (
            f"the recommended plan {recommended} is not a partition"
            if recommended
            else "no plan is recommended"
        )
        notes.append(f"--validate split: {why}; ran {chosen.id}, the best-ranked partition")
    return chosen, notes


def split_check(
    request: AdviceRequest,
    candidates: list[tuple[str, Candidate]],
    final: list[PlanResult],
    recommended: str | None,
    ev: EvalSet,
    output_names: list[str],
    link: Link,
) -> tuple[SplitValidation | None, list[str]]:
    """`--validate split`: run the chosen partition through the server agent (the link
    emulated unless `--no-emulate-link`); (its measurement or None, notices)."""
    chosen, notes = _split_choice(candidates, final, recommended)
    if chosen is None or request.server_agent is None:
        return None, notes
    result = validate_split(
        chosen,
        request.server_agent,
        request.agent_token,
        ev.inputs[0],
        ev.reference[0],
        output_names,
        link=link if request.emulate_link else None,
        threads=request.threads,
    )
    return result, notes


def target_prediction(
    graph: ModelGraph,
    target: Target,
    url: str,
    token: str | None,
    inputs: dict[str, np.ndarray],
    runs: int,
) -> Prediction:
    """Per-node times of `graph` measured on the agent's machine (`measured_target`), the
    figures every cut and plan for that tier is then chosen from (Neurosurgeon's method).

    Each node is its median at ORT_ENABLE_BASIC there, scaled by that machine's own
    ORT_ENABLE_ALL whole-run time over the per-node sum; the band is that profile's own
    self-check error (per-node sum against the whole run)."""
    import math

    from advisor.agent import AgentClient, measure_on_agent
    from advisor.targets.predict import Prediction

    with AgentClient(url, token) as client:
        client.health()  # fails early with a clear AgentError when the agent is unreachable
        remote = measure_on_agent(client, graph.model, runs=runs, inputs=inputs)
    prof = remote.profile
    scale = (
        min(2.0, max(0.1, prof.end_to_end_ms / prof.node_sum_ms)) if prof.node_sum_ms > 0 else 1.0
    )
    missing = [n.name for n in graph.nodes if n.name not in prof.nodes]
    nodes = {n.name: prof.nodes[n.name].median_ms * scale if n.name in prof.nodes else 0.0
             for n in graph.nodes}  # fmt: skip
    notes = (
        [f"{len(missing)} node(s) had no kernel on the agent (folded there): 0 ms"]
        if missing
        else []
    )
    where = remote.fingerprint.cpu_model or url
    return Prediction(
        target_id=target.id,
        precision=graph.precision,
        precision_used=graph.precision,
        nodes=nodes,
        bounds={},
        total_ms=sum(nodes.values()),
        kind="measured_target",
        method=f"measured on the target through the agent {url} ({where}, {prof.threads} "
        f"thread(s)): per-node medians of {prof.runs} runs at ORT_ENABLE_BASIC x {scale:.3g} "
        "(its ORT_ENABLE_ALL whole-run time over the per-node sum)",
        notes=notes,
        run_overhead_ms=0.0,
        opt_scale=scale,
        source="measured_target",
        band=round(math.log1p(min(prof.self_check_error, 1.0)), 4),
        threads=prof.threads,
    )


def target_guard(plans: list[PlanResult], noise: float = 0.05) -> list[PlanResult]:
    """With a device agent, the speed guard's verdict comes from the target: each plan the
    host guard timed (`extra["paired_timing"]`) is compared with the FP32 baseline, both as
    measured on the device. Slower there beyond `noise`: rejected, saying so; rejected here
    only for speed but faster there: back to candidate, saying the host verdict was
    overridden. Statuses are left for `rank` to settle again."""
    base = next((p for p in plans if p.id == "baseline.device"), None)
    base_ms = base.measured_target.ms if base and base.measured_target else None
    if not base_ms:
        return plans
    out = []
    for p in plans:
        host = p.extra.get("paired_timing")
        if not host or p.measured_target is None or not p.stages:
            out.append(p)
            continue
        ratio = p.measured_target.ms / base_ms
        host_reason = [r for r in p.reasons if "slower than FP32 on this host" in r]
        others = [r for r in p.reasons if r not in host_reason]
        extra = {**p.extra, "target_guard": {"ratio": ratio, "fp32_ms": base_ms,
                                             "plan_ms": p.measured_target.ms,
                                             "kind": "measured_target"}}  # fmt: skip
        status = "recommended" if p.status == "recommended" else p.status
        if ratio > 1 + noise:
            reasons = [
                f"measured {ratio:.2f}× slower than FP32 on the target (device agent: "
                f"{p.measured_target.ms:.3g} ms vs {base_ms:.3g} ms): not recommended for speed",
                *others,
            ]
            status = "rejected"
        elif host_reason:
            reasons = [
                f"faster than FP32 on the target ({ratio:.2f}×, device agent); the host "
                f"guard's verdict ({host_reason[0].split(' (')[0]}) is about this host only",
                *others,
            ]
            status = "candidate" if not others else p.status
        else:
            reasons = p.reasons
        out.append(p.model_copy(update={"status": status, "reasons": reasons, "extra": extra}))
    return out
