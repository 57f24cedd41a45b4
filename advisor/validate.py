"""Validation: every candidate plan is built, loaded in ONNX Runtime and run for real.

For each candidate: its models are written to disk (the plan's artifacts) and loaded in fresh
ORT sessions; the whole pipeline — compute steps, transfers (with a real INT8 round trip of the
boundary where the plan compresses it) — runs on the evaluation inputs and is compared with the
FP32 model (max abs error, cosine, top-1 agreement, task accuracy); every compute step is timed
on this host (`measured_host`) and predicted on its target (`predicted_target`); transfers come
from the bytes that actually cross and the link model.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx

from advisor.advice import Fidelity, Latency, PlanResult, Stage
from advisor.hardware import transfer_ms
from advisor.model import ModelGraph
from advisor.plans import Candidate, Compute, PlanContext, Transfer
from advisor.predict import node_time_ratio
from advisor.profile import make_session, measure_latency

LINK_METHOD = "link model: RTT/2 + bytes / nominal bandwidth"


@dataclass(frozen=True)
class EvalSet:
    inputs: list[dict[str, np.ndarray]]  # one dict per sample, batch of 1
    labels: np.ndarray | None
    reference: list[list[np.ndarray]]  # FP32 outputs per sample, in graph output order
    baseline_accuracy: float | None


def int8_roundtrip(x: np.ndarray) -> np.ndarray:
    """Quantize a float tensor to uint8 with one scale and zero point, then restore it."""
    if not np.issubdtype(x.dtype, np.floating):
        return x
    lo, hi = float(x.min()), float(x.max())
    scale = (hi - lo) / 255.0 or 1.0
    q = np.clip(np.round((x - lo) / scale), 0, 255).astype(np.uint8)
    return (q.astype(np.float32) * scale + lo).astype(x.dtype)


def _feeds(session, env: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {i.name: env[i.name] for i in session.get_inputs()}


def run_pipeline(steps, sessions, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Run compute and transfer steps in order; returns every tensor produced."""
    env = dict(inputs)
    it = iter(sessions)
    for step in steps:
        if isinstance(step, Compute):
            sess = next(it)
            outs = sess.run(None, _feeds(sess, env))
            env.update({o.name: v for o, v in zip(sess.get_outputs(), outs, strict=True)})
        elif step.int8:
            env.update({t: int8_roundtrip(env[t]) for t in step.tensors})
    return env


def reference_outputs(graph: ModelGraph, inputs: list[dict[str, np.ndarray]], threads: int
                      ) -> list[list[np.ndarray]]:
    sess = make_session(graph.model, threads=threads)
    return [sess.run(None, x) for x in inputs]


def accuracy(logits: list[np.ndarray], labels: np.ndarray) -> float:
    pred = np.array([int(np.argmax(o.reshape(-1))) for o in logits])
    return float(np.mean(pred == labels[: len(pred)]))


def _is_classifier(out: np.ndarray) -> bool:
    return out.ndim >= 2 and out.shape[-1] > 1 and out.size == out.shape[-1]


def fidelity(outputs: list[list[np.ndarray]], ev: EvalSet) -> Fidelity:
    n = len(outputs)
    max_err = max(float(np.max(np.abs(o.astype(np.float64) - r.astype(np.float64))))
                  for got, ref in zip(outputs, ev.reference, strict=True)
                  for o, r in zip(got, ref, strict=True))
    a = np.concatenate([g[0].astype(np.float64).ravel() for g in outputs])
    b = np.concatenate([r[0].astype(np.float64).ravel() for r in ev.reference[:n]])
    denom = float(np.linalg.norm(a) * np.linalg.norm(b))
    cosine = float(a @ b / denom) if denom else 1.0
    top1 = acc = drop = None
    if _is_classifier(ev.reference[0][0]):
        top1 = float(np.mean([np.argmax(g[0]) == np.argmax(r[0])
                              for g, r in zip(outputs, ev.reference, strict=False)]))
        if ev.labels is not None:
            acc = accuracy([g[0] for g in outputs], ev.labels)
            if ev.baseline_accuracy is not None:
                drop = round((ev.baseline_accuracy - acc) * 100, 4)
    return Fidelity(samples=n, max_abs_error=max_err, cosine=cosine, top1_agreement=top1,
                    accuracy=acc, baseline_accuracy=ev.baseline_accuracy, accuracy_drop_points=drop)


def _tier_ms(ctx: PlanContext, tier: str) -> dict[str, float]:
    return {"device": ctx.device_ms, "edge": ctx.edge_ms or ctx.server_ms,
            "cloud": ctx.cloud_ms or ctx.server_ms}.get(tier, ctx.server_ms)


def _aggregate(graph: ModelGraph, nodes: frozenset[str] | None) -> tuple[int, int]:
    sel = [n for n in graph.nodes if nodes is None or n.name in nodes]
    flops = sum(n.flops for n in sel)
    moved = sum(n.input_bytes + n.output_bytes + n.param_bytes for n in sel)
    return flops, moved


def validate(ctx: PlanContext, cand: Candidate, plan_id: str, ev: EvalSet, out_dir: Path,
             runs: int, threads: int) -> PlanResult:
    """Build, run and measure one candidate. Raises on a broken artifact (caller records it)."""
    g = ctx.graph
    plan_dir = out_dir / plan_id
    plan_dir.mkdir(parents=True, exist_ok=True)
    artifacts, sessions = [], []
    computes = [s for s in cand.steps if isinstance(s, Compute)]
    for i, step in enumerate(computes):
        path = plan_dir / f"{i}_{step.tier}_{step.precision}.onnx"
        onnx.save(step.model, path)
        artifacts.append(str(path))
        sessions.append(make_session(str(path), threads=threads))

    outputs, first_env = [], None
    names = [t.name for t in g.outputs]
    for x in ev.inputs:
        env = run_pipeline(cand.steps, sessions, x)
        first_env = first_env or env
        outputs.append([env[n] for n in names])
    fid = fidelity(outputs, ev)

    stages: list[Stage] = []
    pred_total = meas_total = 0.0
    all_host = True
    env0 = dict(ev.inputs[0])
    sess_it = iter(zip(computes, sessions, artifacts, strict=True))
    for step in cand.steps:
        if isinstance(step, Transfer):
            nbytes = 0
            for t in step.tensors:
                arr = first_env[t] if first_env and t in first_env else None
                nb = int(arr.nbytes) if arr is not None else g.tensor(t).nbytes
                if step.int8 and arr is not None and np.issubdtype(arr.dtype, np.floating):
                    nb = int(arr.size) + 8
                nbytes += nb
            ms = transfer_ms(nbytes, step.link, "up" if step.direction == "up" else "down")
            lat = Latency(ms=ms, kind="predicted_target", method=LINK_METHOD, target=step.link.id)
            stages.append(Stage(name=step.name, kind="transfer", target=step.link.id, predicted=lat,
                                bytes=nbytes))
            pred_total += ms
            meas_total += ms
            continue
        step_c, sess, path = next(sess_it)
        feeds = _feeds(sess, env0)
        stats = measure_latency(path, feeds, runs=runs, threads=threads)
        outs = sess.run(None, feeds)
        env0.update({o.name: v for o, v in zip(sess.get_outputs(), outs, strict=True)})
        if step_c.nodes is not None and step_c.precision == "fp32":
            per_node = _tier_ms(ctx, step_c.tier)
            pred = sum(per_node[n] for n in step_c.nodes)
            method = "sum of per-node predictions (host profile scaled by roofline ratio)"
        else:
            flops, moved = _aggregate(g, step_c.nodes)
            ratio = node_time_ratio(flops, moved, ctx.calibration, step_c.target, "fp32")
            pred = stats.median_ms * ratio
            method = (f"host-measured {step_c.precision} latency × fp32 roofline ratio "
                      f"{ratio:.3g} (assumes the target gains from {step_c.precision} as this "
                      "host does)")
        all_host &= step_c.target.id == "host"
        stages.append(Stage(
            name=step_c.name, kind="compute", target=step_c.target.id,
            predicted=Latency(ms=pred, kind="predicted_target", method=method,
                              target=step_c.target.id),
            measured_host=Latency(ms=stats.median_ms, p90_ms=stats.p90_ms, kind="measured_host",
                                  method=f"ORT CPU, ORT_ENABLE_ALL, {threads} thread(s), "
                                         f"median of {runs} runs"),
            nodes=len(step_c.nodes) if step_c.nodes is not None else None,
        ))
        pred_total += pred
        meas_total += stats.median_ms
    has_transfer = any(s.kind == "transfer" for s in stages)
    predicted = Latency(ms=pred_total, kind="predicted_target",
                        method="sum of stage predictions", target=ctx.device.id)
    measured = Latency(ms=meas_total, kind="measured_host",
                       method="compute measured on this host" + (
                           "; transfers from the link model" if has_transfer else ""))
    err = abs(pred_total - meas_total) / meas_total if all_host and meas_total > 0 else None
    device_bytes = sum(Path(a).stat().st_size for a, s in zip(artifacts, computes, strict=True)
                       if s.tier == "device")
    return PlanResult(
        id=plan_id, kind=cand.kind, title=cand.title, params=cand.params, status="candidate",
        stages=stages, predicted=predicted, measured_host=measured, prediction_error=err,
        fidelity=fid, size_bytes=device_bytes, artifacts=artifacts, extra=cand.extra,
    )



@dataclass(frozen=True)
class PairedTiming:
    """Two models timed in alternating rounds, so machine drift hits both alike."""

    base_ms: float
    other_ms: float
    ratio: float  # median over rounds of other/base: > 1 means `other` is slower
    spread: float  # half the inter-quartile range of the per-round ratios, relative
    rounds: int
    runs: int


def paired_timing(base: str | onnx.ModelProto, base_feeds: dict[str, np.ndarray],
                  other: str | onnx.ModelProto, other_feeds: dict[str, np.ndarray],
                  *, rounds: int = 7, runs: int = 10, threads: int = 1) -> PairedTiming:
    """Time `base` and `other` in `rounds` alternating rounds of `runs` inferences each."""
    import time

    sa, sb = make_session(base, threads=threads), make_session(other, threads=threads)

    def burst(sess, feeds) -> float:
        times = []
        for _ in range(runs):
            t = time.perf_counter()
            sess.run(None, feeds)
            times.append(time.perf_counter() - t)
        return float(np.median(times)) * 1e3

    burst(sa, base_feeds)
    burst(sb, other_feeds)  # warm-up
    a_ms, b_ms = [], []
    for r in range(rounds):
        first_a = r % 2 == 0
        x = burst(sa, base_feeds) if first_a else None
        b_ms.append(burst(sb, other_feeds))
        a_ms.append(x if x is not None else burst(sa, base_feeds))
    ratios = np.array(b_ms) / np.array(a_ms)
    q1, q3 = np.percentile(ratios, [25, 75])
    med = float(np.median(ratios))
    return PairedTiming(float(np.median(a_ms)), float(np.median(b_ms)), med,
                        float((q3 - q1) / 2 / med), rounds, runs)
