"""Validation: every candidate plan is built, loaded in ONNX Runtime and run for real.

For each candidate: its models are written to disk (the plan's artifacts) and loaded in fresh
ORT sessions; the whole pipeline — compute steps, transfers (with a real INT8 round trip of the
boundary where the plan compresses it) — runs on the evaluation inputs and is compared with the
FP32 model (max abs error, cosine, top-1 agreement, task accuracy); every compute step is timed
on this host (`measured_host`) and predicted on its target (`predicted_target`); transfers come
from the bytes that actually cross and the link model.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import onnx

from advisor.advice import Fidelity, Latency, PlanResult, Stage
from advisor.exits import entropy
from advisor.hardware import transfer_ms
from advisor.memo import REUSED, MeasurementMemo, digest_bytes, feeds_key
from advisor.model import ModelGraph
from advisor.plans import Candidate, Compute, Exit, PlanContext, Transfer
from advisor.predict import effective_precision, node_time_ratio
from advisor.profile import make_session, measure_latency

LINK_METHOD = "link model: RTT/2 + bytes / nominal bandwidth"


@dataclass(frozen=True)
class EvalSet:
    inputs: list[dict[str, np.ndarray]]  # one dict per sample, batch of 1
    labels: np.ndarray | None
    reference: list[list[np.ndarray]]  # FP32 outputs per sample, in graph output order
    baseline_accuracy: float | None
    primary: int = 0  # the output standing for the model's prediction (a multi-exit model's
    # final exit), used for top-1 agreement and accuracy


def _eval_key(ev: EvalSet) -> str:
    h = hashlib.sha256(f"{ev.primary}|{ev.baseline_accuracy}|".encode())
    for x in ev.inputs:
        h.update(feeds_key(x).encode())
    if ev.labels is not None:
        h.update(np.ascontiguousarray(ev.labels).tobytes())
    return h.hexdigest()


def _feeds(session, env: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {i.name: env[i.name] for i in session.get_inputs()}


def run_pipeline(steps, sessions, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Run compute and transfer steps in order; returns every tensor produced. Exit steps
    do not stop it: every step runs (see `run_cascade`)."""
    return run_cascade(steps, sessions, inputs, stop=False)[0]


def run_cascade(
    steps, sessions, inputs: dict[str, np.ndarray], stop: bool = True
) -> tuple[dict[str, np.ndarray], int | None]:
    """Run the steps in order until an Exit step lets the input leave (entropy of its
    softmax below the threshold, or the plan's last Exit). Returns (every tensor produced,
    index among the plan's Exit steps of the exit taken, or None without Exit steps)."""
    env = dict(inputs)
    it = iter(sessions)
    exit_index = -1
    for step in steps:
        if isinstance(step, Compute):
            sess = next(it)
            outs = sess.run(None, _feeds(sess, env))
            env.update({o.name: v for o, v in zip(sess.get_outputs(), outs, strict=True)})
        elif isinstance(step, Exit):
            exit_index += 1
            if stop and float(entropy(env[step.tensor]).reshape(-1)[0]) < step.threshold:
                return env, exit_index
    return env, (exit_index if exit_index >= 0 else None)


def reference_outputs(
    graph: ModelGraph,
    inputs: list[dict[str, np.ndarray]],
    threads: int,
    memo: MeasurementMemo | None = None,
) -> list[list[np.ndarray]]:
    key = None
    if memo is not None:
        h = hashlib.sha256(graph.model.SerializeToString())
        for x in inputs:
            h.update(feeds_key(x).encode())
        key = (h.hexdigest(), threads)
        if key in memo.references:
            return memo.references[key]
    sess = make_session(graph.model, threads=threads)
    out = [sess.run(None, x) for x in inputs]
    if key is not None and memo is not None:
        memo.references[key] = out
    return out


def accuracy(logits: list[np.ndarray], labels: np.ndarray) -> float:
    pred = np.array([int(np.argmax(o.reshape(-1))) for o in logits])
    return float(np.mean(pred == labels[: len(pred)]))


def _is_classifier(out: np.ndarray) -> bool:
    return out.ndim >= 2 and out.shape[-1] > 1 and out.size == out.shape[-1]


def fidelity(outputs: list[list[np.ndarray]], ev: EvalSet) -> Fidelity:
    n = len(outputs)
    max_err = max(
        float(np.max(np.abs(o.astype(np.float64) - r.astype(np.float64))))
        for got, ref in zip(outputs, ev.reference, strict=True)
        for o, r in zip(got, ref, strict=True)
    )
    k = ev.primary
    a = np.concatenate([g[k].astype(np.float64).ravel() for g in outputs])
    b = np.concatenate([r[k].astype(np.float64).ravel() for r in ev.reference[:n]])
    denom = float(np.linalg.norm(a) * np.linalg.norm(b))
    cosine = float(a @ b / denom) if denom else 1.0
    top1 = acc = drop = None
    if _is_classifier(ev.reference[0][k]):
        top1 = float(
            np.mean(
                [
                    np.argmax(g[k]) == np.argmax(r[k])
                    for g, r in zip(outputs, ev.reference, strict=False)
                ]
            )
        )
        if ev.labels is not None:
            acc = accuracy([g[k] for g in outputs], ev.labels)
            if ev.baseline_accuracy is not None:
                drop = round((ev.baseline_accuracy - acc) * 100, 4)
    return Fidelity(
        samples=n,
        max_abs_error=max_err,
        cosine=cosine,
        top1_agreement=top1,
        accuracy=acc,
        baseline_accuracy=ev.baseline_accuracy,
        accuracy_drop_points=drop,
    )


def _tier_ms(ctx: PlanContext, tier: str) -> dict[str, float]:
    return {
        "device": ctx.device_ms,
        "edge": ctx.edge_ms or ctx.server_ms,
        "cloud": ctx.cloud_ms or ctx.server_ms,
    }.get(tier, ctx.server_ms)


def _aggregate(graph: ModelGraph, nodes: frozenset[str] | None) -> tuple[int, int]:
    sel = [n for n in graph.nodes if nodes is None or n.name in nodes]
    flops = sum(n.flops for n in sel)
    moved = sum(n.input_bytes + n.output_bytes + n.param_bytes for n in sel)
    return flops, moved


def validate(
    ctx: PlanContext,
    cand: Candidate,
    plan_id: str,
    ev: EvalSet,
    out_dir: Path,
    runs: int,
    threads: int,
    memo: MeasurementMemo | None = None,
) -> PlanResult:
    """Build, run and measure one candidate. Raises on a broken artifact (caller records it).
    With a `memo`, an artifact already run and timed in this process is not run again."""
    g = ctx.graph
    plan_dir = out_dir / plan_id
    plan_dir.mkdir(parents=True, exist_ok=True)
    artifacts, sessions = [], []
    computes = [s for s in cand.steps if isinstance(s, Compute)]
    for i, comp in enumerate(computes):
        file = plan_dir / f"{i}_{comp.tier}_{comp.precision}.onnx"
        onnx.save(comp.model, file)
        artifacts.append(str(file))
        sessions.append(make_session(str(file), threads=threads))

    names = [t.name for t in g.outputs]
    digests = [digest_bytes(Path(a).read_bytes()) for a in artifacts] if memo else []
    if memo is not None:
        key = (
            tuple(digests),
            tuple((s.tensor, s.threshold) for s in cand.steps if isinstance(s, Exit)),
            cand.prediction,
            tuple(names),
            _eval_key(ev),
        )
        if key in memo.eval_runs:
            memo.hits += 1
        else:
            memo.misses += 1
            memo.eval_runs[key] = _run_eval(cand, sessions, ev, names)
        run = memo.eval_runs[key]
    else:
        run = _run_eval(cand, sessions, ev, names)
    first_env = run.first_env
    fid = fidelity(run.outputs, run.compare)

    stages: list[Stage] = []
    pred_total = meas_total = 0.0
    all_host = True
    derived = False  # a stage predicted from its own measurement: no independent check
    env0 = dict(ev.inputs[0])
    sess_it = iter(zip(computes, sessions, artifacts, strict=True))
    paths: list[tuple[str, float, float]] = []  # per Exit step: (exit, predicted, measured)
    path_stages: list[list[int]] = []  # per Exit step: indices of the stages on its path
    exit_downs: set[int] = set()  # downlink stages that belong to one exit's path only
    for step in cand.steps:
        if isinstance(step, Exit):
            down = 0.0
            on_path = [i for i in range(len(stages)) if i not in exit_downs]
            if step.link is not None:  # the exit is on the server: its logits go back down
                arr = env0.get(step.tensor)
                nbytes = int(arr.nbytes) if arr is not None else g.tensor(step.tensor).nbytes
                down = transfer_ms(nbytes, step.link, "down")
                stages.append(
                    Stage(
                        name=f"downlink transfer (leaving at {step.name})",
                        kind="transfer",
                        target=step.link.id,
                        bytes=nbytes,
                        predicted=Latency(
                            ms=down,
                            kind="predicted_target",
                            method=LINK_METHOD,
                            target=step.link.id,
                        ),
                    )
                )
                exit_downs.add(len(stages) - 1)
                on_path.append(len(stages) - 1)
            paths.append((step.name, pred_total + down, meas_total + down))
            path_stages.append(on_path)
            continue
        if isinstance(step, Transfer):
            nbytes = 0
            for t in step.tensors:
                arr = first_env[t] if first_env and t in first_env else None
                nbytes += int(arr.nbytes) if arr is not None else g.tensor(t).nbytes
            ms = transfer_ms(nbytes, step.link, "up" if step.direction == "up" else "down")
            lat = Latency(ms=ms, kind="predicted_target", method=LINK_METHOD, target=step.link.id)
            stages.append(
                Stage(
                    name=step.name,
                    kind="transfer",
                    target=step.link.id,
                    predicted=lat,
                    bytes=nbytes,
                )
            )
            pred_total += ms
            meas_total += ms
            continue
        step_c, sess, path = next(sess_it)
        feeds = _feeds(sess, env0)
        reused = False
        if memo is not None:
            lkey = (digest_bytes(Path(path).read_bytes()), feeds_key(feeds), runs, threads)
            reused = lkey in memo.latencies
            if not reused:
                memo.latencies[lkey] = measure_latency(path, feeds, runs=runs, threads=threads)
            stats = memo.latencies[lkey]
        else:
            stats = measure_latency(path, feeds, runs=runs, threads=threads)
        outs = sess.run(None, feeds)
        env0.update({o.name: v for o, v in zip(sess.get_outputs(), outs, strict=True)})
        if step_c.nodes is not None and step_c.precision == "fp32":
            per_node = _tier_ms(ctx, step_c.tier)
            overhead = ctx.overhead(step_c.tier)
            pred = sum(per_node[n] for n in step_c.nodes) + overhead
            peak = effective_precision(step_c.target, g.precision)[0]
            method = (
                "sum of per-node predictions (host profile scaled by roofline ratio, "
                f"{peak} peak)"
                + (f" + {overhead:.3g} ms per-inference overhead" if overhead else "")
            )
        else:
            derived = True  # the prediction is this very measurement, scaled
            flops, moved = _aggregate(g, step_c.nodes)
            ratio = node_time_ratio(flops, moved, ctx.calibration, step_c.target, "fp32")
            pred = stats.median_ms * ratio
            method = (
                f"host-measured {step_c.precision} latency × fp32 roofline ratio "
                f"{ratio:.3g} (assumes the target gains from {step_c.precision} as this "
                "host does)"
            )
        all_host &= step_c.target.id == "host"
        stages.append(
            Stage(
                name=step_c.name,
                kind="compute",
                target=step_c.target.id,
                predicted=Latency(
                    ms=pred, kind="predicted_target", method=method, target=step_c.target.id
                ),
                measured_host=Latency(
                    ms=stats.median_ms,
                    p90_ms=stats.p90_ms,
                    kind="measured_host",
                    method=f"ORT CPU, ORT_ENABLE_ALL, {threads} thread(s), median of {runs} runs"
                    + (REUSED if reused else ""),
                ),
                nodes=len(step_c.nodes) if step_c.nodes is not None else None,
            )
        )
        pred_total += pred
        meas_total += stats.median_ms
    has_transfer = any(s.kind == "transfer" for s in stages)
    extra = dict(cand.extra)
    pred_method, meas_method = (
        "sum of stage predictions",
        "compute measured on this host"
        + ("; transfers from the link model" if has_transfer else ""),
    )
    if run.taken is not None:  # a cascade: the expected latency over the measured exit shares
        shares = run.taken / max(1, run.taken.sum())
        pred_total = float(np.dot(shares, [p[1] for p in paths]))
        meas_total = float(np.dot(shares, [p[2] for p in paths]))
        pred_method = (
            "expected over the measured exit shares: sum of share × path latency, "
            "each path the sum of stage predictions up to its exit"
        )
        meas_method = "expected over the measured exit shares: " + meas_method
        extra["cascade"] = {
            "samples": int(run.taken.sum()),
            "paths": [
                {
                    "exit": e,
                    "share": float(sh),
                    "inputs": int(n),
                    "stages": idx,
                    "predicted": Latency(
                        ms=p,
                        kind="predicted_target",
                        target=ctx.device.id,
                        method="sum of stage predictions up to the exit",
                    ).model_dump(),
                    "measured_host": Latency(
                        ms=m,
                        kind="measured_host",
                        method="sum of stage latencies measured on "
                        "this host up to the exit; transfers "
                        "from the link model",
                    ).model_dump(),
                }
                for (e, p, m), sh, n, idx in zip(paths, shares, run.taken, path_stages, strict=True)
            ],
            "worst_path_predicted_ms": max(p[1] for p in paths),
        }
    if run.prediction_error is not None:
        extra["exit_check"] = {
            "max_abs_error_vs_full_model": run.prediction_error,
            "what": "the plan's exit logits against the same output of the full multi-exit "
            "model, on every evaluation sample",
        }
    predicted = Latency(
        ms=pred_total, kind="predicted_target", method=pred_method, target=ctx.device.id
    )
    measured = Latency(ms=meas_total, kind="measured_host", method=meas_method)
    independent = all_host and not derived and meas_total > 0
    err = abs(pred_total - meas_total) / meas_total if independent else None
    device_bytes = sum(
        Path(a).stat().st_size
        for a, s in zip(artifacts, computes, strict=True)
        if s.tier == "device"
    )
    return PlanResult(
        id=plan_id,
        kind=cand.kind,
        title=cand.title,
        params=cand.params,
        status="candidate",
        stages=stages,
        predicted=predicted,
        measured_host=measured,
        prediction_error=err,
        fidelity=fid,
        size_bytes=device_bytes,
        artifacts=artifacts,
        extra=extra,
    )


@dataclass(frozen=True)
class _EvalRun:
    outputs: list[list[np.ndarray]]
    compare: EvalSet  # the reference the outputs line up with
    first_env: dict[str, np.ndarray]
    taken: np.ndarray | None  # inputs leaving at each Exit step (cascades only)
    prediction_error: float | None  # exit logits vs the full model's same output


def _run_eval(cand: Candidate, sessions, ev: EvalSet, names: list[str]) -> _EvalRun:
    """Run the plan on every evaluation input. A plan that stands for the model with one
    tensor (an early exit, or a cascade's exit taken per input) is compared on that tensor
    against the model's prediction output."""
    exits = [s for s in cand.steps if isinstance(s, Exit)]
    single = cand.prediction is not None or bool(exits)
    taken = np.zeros(len(exits), dtype=np.int64) if exits else None
    outputs, first_env, err = [], None, None
    for i, x in enumerate(ev.inputs):
        env, k = run_cascade(cand.steps, sessions, x)
        first_env = first_env or env
        if not single:
            outputs.append([env[n] for n in names])
            continue
        name = exits[k].tensor if taken is not None and k is not None else cand.prediction
        if taken is not None and k is not None:
            taken[k] += 1
        got = env[str(name)]
        outputs.append([got])
        if name in names:
            ref = ev.reference[i][names.index(str(name))]
            e = float(np.max(np.abs(got.astype(np.float64) - ref.astype(np.float64))))
            err = e if err is None else max(err, e)
    compare = (
        ev
        if not single
        else replace(ev, reference=[[r[ev.primary]] for r in ev.reference], primary=0)
    )
    return _EvalRun(outputs, compare, first_env or {}, taken, err)


@dataclass(frozen=True)
class PairedTiming:
    """Two models timed in alternating rounds, so machine drift hits both alike."""

    base_ms: float
    other_ms: float
    ratio: float  # median over rounds of other/base: > 1 means `other` is slower
    spread: float  # half the inter-quartile range of the per-round ratios, relative
    rounds: int
    runs: int


def paired_timing(
    base: str | onnx.ModelProto,
    base_feeds: dict[str, np.ndarray],
    other: str | onnx.ModelProto,
    other_feeds: dict[str, np.ndarray],
    *,
    rounds: int = 7,
    runs: int = 10,
    threads: int = 1,
    memo: MeasurementMemo | None = None,
) -> PairedTiming:
    """Time `base` and `other` in `rounds` alternating rounds of `runs` inferences each.
    With a `memo`, files (paths) already paired in this process are not timed again."""
    import time

    key = None
    if memo is not None and isinstance(base, str | Path) and isinstance(other, str | Path):
        key = (
            digest_bytes(Path(base).read_bytes()),
            feeds_key(base_feeds),
            digest_bytes(Path(other).read_bytes()),
            feeds_key(other_feeds),
            rounds,
            runs,
            threads,
        )
        if key in memo.paired:
            return memo.paired[key]

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
    result = PairedTiming(
        float(np.median(a_ms)),
        float(np.median(b_ms)),
        med,
        float((q3 - q1) / 2 / med),
        rounds,
        runs,
    )
    if key is not None and memo is not None:
        memo.paired[key] = result
    return result


def remeasure_interleaved(
    plans: list[PlanResult],
    inputs: dict[str, np.ndarray],
    *,
    runs: int,
    threads: int,
    rounds: int = 5,
    seed: int = 0,
    memo: MeasurementMemo | None = None,
) -> list[PlanResult]:
    """Time every plan's compute stages again, round-robin across all plans, and use those
    figures as their `measured_host`.

    Each stage's first measurement (`validate`) ran in its own time window; on a shared host a
    burst of load in one window can move it by tens of percent, so two plans holding the same
    model could differ by that much. Here every stage of every plan runs a few times per round,
    in a shuffled order, for `rounds` rounds; a stage's figure is the median of its per-round
    medians, so drift hits all plans alike and their figures compare. Cascades (expected
    latencies over exit shares) keep their figures. With a `memo`, a stage whose artifact
    and input were re-timed by an earlier call in this process keeps that figure, and only
    the other stages are timed (round-robin among themselves).
    """
    import random

    from advisor.timing import median_p90, timed_run, uncontended

    items: list[tuple[int, int, object, dict[str, np.ndarray]]] = []  # plan, stage, session, feed
    keys: dict[tuple[int, int], tuple] = {}
    reused: dict[tuple[int, int], tuple[float, float | None]] = {}
    for pi, p in enumerate(plans):
        if not p.artifacts or "cascade" in p.extra:
            continue
        env = dict(inputs)
        compute_idx = [i for i, s in enumerate(p.stages) if s.kind == "compute"]
        for si, path in zip(compute_idx, p.artifacts, strict=False):
            sess = make_session(path, threads=threads)
            feed = _feeds(sess, env)
            outs = sess.run(None, feed)  # also the warm-up
            env.update({o.name: v for o, v in zip(sess.get_outputs(), outs, strict=True)})
            if memo is not None:
                key = (digest_bytes(Path(path).read_bytes()), feeds_key(feed), runs, threads)
                if key in memo.remeasured:
                    reused[(pi, si)] = memo.remeasured[key]
                    continue
                keys[(pi, si)] = key
            items.append((pi, si, sess, feed))
    if not items and not reused:
        return plans
    per_round = max(3, runs // rounds)
    medians: dict[tuple[int, int], list[float]] = {(pi, si): [] for pi, si, _, _ in items}
    samples: dict[tuple[int, int], list[float]] = {(pi, si): [] for pi, si, _, _ in items}
    order = list(range(len(items)))
    rng = random.Random(seed)
    for _ in range(rounds):
        rng.shuffle(order)
        for k in order:
            pi, si, sess, feed = items[k]
            times = [timed_run(sess, feed) for _ in range(per_round)]
            kept = [times[i][0] for i in uncontended(times, threads)]
            medians[(pi, si)].append(float(np.median(kept)))
            samples[(pi, si)].extend(kept)
    method = (
        f"ORT CPU, ORT_ENABLE_ALL, {threads} thread(s): median of {rounds} round medians of "
        f"{per_round} runs, round-robin with every other plan's stages"
    )
    figures: dict[tuple[int, int], tuple[float, float | None, str]] = {}
    for (pi, si), ms_list in medians.items():
        _, timed_p90 = median_p90(samples[(pi, si)])
        figures[(pi, si)] = (float(np.median(ms_list)), timed_p90, method)
        if memo is not None:
            memo.remeasured[keys[(pi, si)]] = (float(np.median(ms_list)), timed_p90)
    for (pi, si), (old_ms, old_p90) in reused.items():
        figures[(pi, si)] = (
            old_ms,
            old_p90,
            f"ORT CPU, ORT_ENABLE_ALL, {threads} thread(s)" + REUSED,
        )
    out = list(plans)
    for pi in sorted({pi for pi, _ in figures}):
        p = out[pi]
        stages = list(p.stages)
        for si, s in enumerate(stages):
            if (pi, si) not in figures:
                continue
            fig_ms, fig_p90, how = figures[(pi, si)]
            stages[si] = s.model_copy(
                update={
                    "measured_host": Latency(
                        ms=fig_ms, p90_ms=fig_p90, kind="measured_host", method=how
                    )
                }
            )
        total = sum(
            (
                s.measured_host.ms
                if s.kind == "compute" and s.measured_host
                else s.predicted.ms
                if s.predicted
                else 0.0
            )
            for s in stages
        )
        err = p.prediction_error
        if err is not None and p.predicted is not None and total > 0:
            err = abs(p.predicted.ms - total) / total
        measured = p.measured_host.model_copy(update={"ms": total}) if p.measured_host else None
        out[pi] = p.model_copy(
            update={"stages": stages, "measured_host": measured, "prediction_error": err}
        )
    return out
