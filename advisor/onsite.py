"""Measurements away from this host: plans timed on the real device through its agent
(`measured_target`), and the recommended partition run end to end through a server agent.

Both take a finished list of validated plans and return them with the new figures added;
they never change what was predicted or measured here.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx

from advisor.advice import Latency, PlanResult, SplitValidation
from advisor.errors import AgentError


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
    from advisor.agent import AgentClient, measure_on_agent
    from advisor.profile import make_session

    client = AgentClient(url, token)
    client.health()  # fails early with a clear AgentError when the agent is unreachable
    cache: dict[str, float] = {}
    done: list[PlanResult] = []
    for p in plans:
        device_parts = _device_stage_models(p) if p.artifacts and p.stages else []
        if not device_parts:
            done.append(p)
            continue
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
    from advisor.split import SplitRunner

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
