"""`advise()`: from a request to validated, ranked plans, as a pipeline of stages.

Each stage is one function below, in the order `advise` calls them: resolve targets and links
(an unknown id fails before any work) → load the model and its data → fingerprint, calibrate
and profile this host → predict per-node latency on each target → ask every registered planner
for candidates → validate each candidate in ONNX Runtime and re-measure them interleaved →
judge (accuracy budget, speed guard) and rank → measure on the real device and split when
agents are given → assemble the Advice.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from advisor.advice import Advice, AdviceRequest, LayerRow, ModelSummary, PlanResult
from advisor.errors import AdvisorError, InputDataError, RequestError
from advisor.graph.data import EvalData, finite_reference
from advisor.graph.model import ModelGraph
from advisor.measure.calibrate import Calibration
from advisor.measure.environment import Fingerprint
from advisor.measure.memo import MeasurementMemo
from advisor.measure.profile import Profile
from advisor.plans import PLANNERS, Candidate, PlanContext, Skip, load_builtins
from advisor.progress import Progress, Stages
from advisor.targets.catalog import Catalog, Link, Target
from advisor.validate.fidelity import EvalSet
from advisor.validate.rank import citations, judge, rank, rerank
from advisor.validate.schedule import with_not_validated

__all__ = ["advise", "Progress"]


def advise(
    request: AdviceRequest, progress: Progress | None = None, *, memo: MeasurementMemo | None = None
) -> Advice:
    """Plan, build, run and rank. Raises AdvisorError subclasses on bad input.

    `memo` (advisor.measure.memo.MeasurementMemo): reuse the evaluation runs and timings of
    artifacts that earlier calls in this process already measured (a sweep passes one per
    model); None measures everything afresh."""
    stages = Stages(progress or (lambda stage, frac: None))
    kinds = _plan_kinds(request)
    tiers = _resolve_targets(request)
    with stages("load model", 0.02):
        ev, loaded = _load_checked(request, memo)  # checks FP32 outputs too
    with stages("profile", 0.08):
        host = _profile_host(request, loaded, memo)
        loaded.graph.release_bytes()  # its readers (ORT check, reference, profile) are done
    with stages("predict", 0.2):
        ctx = _context(request, tiers, loaded, host, memo)
    with stages("plan", 0.25):
        candidates, skipped = _plan(ctx, kinds, stages.report, memo)
        candidates, unfit = _runnable(candidates, tiers.device, memo)
    with stages("validate", 0.3):
        validated, failed, unbuilt = _validate(ctx, candidates, ev, request, stages.report, memo)
    stages.report("rank", 0.97)
    final, recommended, front = _judge_and_rank(
        request, loaded, validated, [*skipped, *failed, *unfit], tiers.device, memo
    )
    final = with_not_validated(final, unbuilt, memo)
    final, recommended, front, split_validation, notes = _measure_on_site(
        request, tiers, loaded, ev, candidates, (final, recommended, front), stages.report
    )
    stages.seconds["total"] = round(time.perf_counter() - stages.t0, 3)
    stages.report("done", 1.0)
    advice = _assemble(request, tiers, loaded, host, ctx, final, recommended, front, stages)
    return advice.model_copy(
        update={"split_validation": split_validation, "notices": [*advice.notices, *notes]}
    )


# --- the stages, in order -----------------------------------------------------------------


def _plan_kinds(request: AdviceRequest) -> list[str]:
    """The planners to run; baseline.device always (the FP32 reference for the guard)."""
    load_builtins()
    unknown = [p for p in request.plans or [] if p not in PLANNERS]
    if unknown:
        raise RequestError(f"unknown plan kind {unknown[0]!r}; known: {', '.join(PLANNERS)}")
    kinds = request.plans or list(PLANNERS)
    return kinds if "baseline.device" in kinds else ["baseline.device", *kinds]


@dataclass(frozen=True)
class _Tiers:
    catalog: Catalog
    device: Target
    edge: Target | None
    cloud: Target | None
    link: Link
    cloud_link: Link | None

    @property
    def server(self) -> Target | None:
        return self.edge or self.cloud


def _resolve_targets(request: AdviceRequest) -> _Tiers:
    """Targets and links first: an unknown id fails before any work."""
    from advisor.targets.catalog import get_link, get_target, link_for, load_catalog

    catalog = load_catalog(extra=request.catalog)

    def target(tid: str | None) -> Target | None:
        return get_target(tid, catalog, threads=request.threads) if tid else None

    device = get_target(request.device, catalog, threads=request.threads)
    edge, cloud = target(request.edge), target(request.cloud)
    link = link_for(request.link, (request.up_mbps, request.down_mbps, request.rtt_ms), catalog)
    cloud_link = get_link(request.cloud_link, catalog) if cloud and edge else None
    return _Tiers(catalog, device, edge, cloud, link, cloud_link)


@dataclass(frozen=True)
class _Loaded:
    graph: ModelGraph
    zoo_entry: Any  # advisor.zoo.ZooModel | None
    exits: tuple[str, ...]
    data: EvalData


def _load(request: AdviceRequest) -> _Loaded:
    """The model (with its declared exits) and its evaluation and calibration data."""
    from advisor.graph.prepare import load_for_advice

    return _Loaded(*load_for_advice(request))


@dataclass(frozen=True)
class _Host:
    fingerprint: Fingerprint
    calibration: Calibration
    profile: Profile


def _profile_host(
    request: AdviceRequest, loaded: _Loaded, memo: MeasurementMemo | None = None
) -> _Host:
    """This host's fingerprint and ceilings, and every node's time on it; with a memo, once
    per model, inputs, runs, threads and measurement mode."""
    if memo is None:
        return _measure_host(request, loaded)
    from advisor.measure.memo import feeds_key

    key: tuple = (loaded.graph.digest, feeds_key(loaded.data.inputs[0]), request.runs)
    key += (request.threads, request.measurement)
    if key not in memo.hosts:
        memo.hosts[key] = _measure_host(request, loaded)
    return memo.hosts[key]  # type: ignore[no-any-return]


def _measure_host(request: AdviceRequest, loaded: _Loaded) -> _Host:
    from advisor.measure.calibrate import calibrate
    from advisor.measure.policy import policy_for
    from advisor.measure.profile import fingerprint, profile_model

    fp = fingerprint(request.threads)
    cal = calibrate(threads=request.threads)
    pol = policy_for(request.measurement, request.runs)
    prof = profile_model(
        loaded.graph,
        loaded.data.inputs[0],
        runs=request.runs,
        warmup=pol.profile_warmup,
        threads=request.threads,
        rule=pol.profile,
    )
    return _Host(fp, cal, prof)


def _context(
    request: AdviceRequest,
    tiers: _Tiers,
    loaded: _Loaded,
    host: _Host,
    memo: MeasurementMemo | None = None,
) -> PlanContext:
    """Per-node predictions on each tier, and everything a planner may read; with a memo,
    the planners share their model's conversions and sub-models across cells
    (`PlanContext.once`)."""
    from advisor.targets.predict import predict

    graph, cal, prof = loaded.graph, host.calibration, host.profile
    # an FP16 export computes in fp16: its nodes are predicted with each target's fp16 peak
    prec = graph.precision
    preds = {
        # an int8-only target (an Edge TPU) is predicted at int8: only int8 plans run there
        tier: predict(
            graph, prof, t, cal, "int8" if t.int8_only else prec, threads=request.target_threads
        )
        for tier, t in (("device", tiers.device), ("edge", tiers.edge), ("cloud", tiers.cloud))
        if t is not None
    }
    if request.device_agent:  # measure every node on the device itself, plan from that
        from advisor.validate.onsite import target_prediction

        preds["device"] = target_prediction(
            graph,
            tiers.device,
            request.device_agent,
            request.agent_token,
            loaded.data.inputs[0],
            request.runs,
        )
    device_ms = preds["device"].nodes
    edge_ms = preds["edge"].nodes if "edge" in preds else {}
    cloud_ms = preds["cloud"].nodes if "cloud" in preds else {}
    out_dir = Path(request.out_dir) if request.out_dir else _default_out(graph)
    out_dir.mkdir(parents=True, exist_ok=True)
    entry = loaded.zoo_entry
    trained = entry is not None and entry.trained and entry.torch_builder and entry.training_data
    return PlanContext(
        graph=graph,
        device=tiers.device,
        server=tiers.server,
        server_tier="edge" if tiers.edge else ("cloud" if tiers.cloud else None),
        edge=tiers.edge,
        cloud=tiers.cloud,
        link=tiers.link,
        cloud_link=tiers.cloud_link,
        device_ms=device_ms,
        server_ms=edge_ms or cloud_ms,
        edge_ms=edge_ms,
        cloud_ms=cloud_ms,
        calib_inputs=loaded.data.calib,
        work_dir=out_dir,
        calibration=cal,
        torch_source=entry if trained else None,
        exits=loaded.exits,
        eval_inputs=loaded.data.inputs,
        labels=loaded.data.labels,
        latency_ms=request.latency_ms,
        threads=request.threads,
        overhead_ms={tier: p.run_overhead_ms for tier, p in preds.items()},
        predictions=preds,
        target_threads=request.target_threads,
        shared=memo.planning if memo is not None else None,
    )


def _plan(
    ctx: PlanContext, kinds: list[str], report: Progress, memo: MeasurementMemo | None = None
) -> tuple[list[tuple[str, Candidate]], list[PlanResult]]:
    """Every planner's candidates (ids `kind` or `kind#n`), and the planners that skipped."""
    candidates: list[tuple[str, Candidate]] = []
    skipped: list[PlanResult] = []
    for i, kind in enumerate(kinds):
        report(f"plan: {kind}", 0.25 + 0.05 * i / len(kinds))  # a sub-step per planner
        try:
            out = PLANNERS[kind].fn(ctx)
        except AdvisorError as exc:
            out = Skip(kind, str(exc))
        except Exception as exc:  # noqa: BLE001 - one planner's failure must not sink the rest
            out = Skip(kind, f"planner failed: {type(exc).__name__}: {exc}")
        if isinstance(out, Skip):
            skipped.append(
                PlanResult(
                    id=kind,
                    kind=kind,
                    title=PLANNERS[kind].summary,
                    status="skipped",
                    reasons=[out.reason],
                    extra=out.extra,
                    citations=citations(kind, memo),
                )
            )
            continue
        for i, c in enumerate(out):
            candidates.append((kind if len(out) == 1 else f"{kind}#{i + 1}", c))
    return candidates, skipped


def _runnable(
    candidates: list[tuple[str, Candidate]], device: Target, memo: MeasurementMemo | None = None
) -> tuple[list[tuple[str, Candidate]], list[PlanResult]]:
    """Candidates whose device part the device can run; the others as skipped results with
    the reason. baseline.device stays (measured as the FP32 reference; it is set aside after
    ranking when the device cannot run it)."""
    keep, unfit = [], []
    for pid, cand in candidates:
        why = cand.cannot_run_on(device)
        if why is None or pid == "baseline.device":
            keep.append((pid, cand))
            continue
        unfit.append(
            PlanResult(
                id=pid,
                kind=cand.kind,
                title=cand.title,
                params=cand.params,
                status="skipped",
                reasons=[why],
                citations=citations(cand.kind, memo),
            )
        )
    return keep, unfit


def _eval_set(
    request: AdviceRequest, loaded: _Loaded, memo: MeasurementMemo | None
) -> tuple[EvalSet, _Loaded]:
    """FP32 reference outputs on the evaluation inputs (finite, or with --allow-nonfinite the
    inputs whose outputs are), and its accuracy when labelled."""
    from advisor.validate.fidelity import accuracy, reference_outputs

    graph = loaded.graph
    reference = reference_outputs(graph, loaded.data.inputs, request.threads, memo)
    out_names = [t.name for t in graph.outputs]
    data, reference = finite_reference(loaded.data, reference, out_names, request.allow_nonfinite)
    loaded, labels = replace(loaded, data=data), data.labels
    primary = out_names.index(loaded.exits[-1]) if loaded.exits else 0  # the final exit
    if labels is not None:
        classes = reference[0][primary].shape[-1] if reference[0][primary].ndim else 1
        if labels.size and int(labels.max()) >= classes:
            raise InputDataError(
                f"{request.data or 'the labelled data'}: labels 'y' go up to "
                f"{int(labels.max())}, but output "
                f"{out_names[primary]!r} scores {classes} classes (0..{classes - 1}); give "
                "labels of this model's classes, or leave 'y' out to compare with FP32 only"
            )
    base_acc = accuracy([r[primary] for r in reference], labels) if labels is not None else None
    return EvalSet(loaded.data.inputs, labels, reference, base_acc, primary), loaded


def _load_checked(request: AdviceRequest, memo: MeasurementMemo | None) -> tuple[EvalSet, _Loaded]:
    """The model and its data (`_load`) with its FP32 reference (`_eval_set`); with a memo,
    once per process for the same model, data and settings, however many cells read them."""
    if memo is None:
        return _eval_set(request, _load(request), None)
    from advisor.graph.prepare import load_key

    key = load_key(request)
    if key not in memo.loaded:
        memo.loads += 1
        memo.loaded[key] = _eval_set(request, _load(request), memo)
    return memo.loaded[key]  # type: ignore[no-any-return]


_Validated = dict[str, tuple[Candidate, PlanResult]]


def _validate(
    ctx: PlanContext,
    candidates: list[tuple[str, Candidate]],
    ev: EvalSet,
    request: AdviceRequest,
    report: Progress,
    memo: MeasurementMemo | None = None,
) -> tuple[_Validated, list[PlanResult], list[PlanResult]]:
    """(validated plans, failed ones, ones not validated): skip what cannot win, build and
    check on every core, then time alone; guard every compression plan against FP32 in one
    window (advisor.validate.schedule)."""
    from advisor.validate.schedule import validate_plans

    return validate_plans(ctx, candidates, ev, request, report, memo)


def _judge_and_rank(
    request: AdviceRequest,
    loaded: _Loaded,
    validated: _Validated,
    others: list[PlanResult],
    device: Target,
    memo: MeasurementMemo | None = None,
) -> tuple[list[PlanResult], str | None, list[str]]:
    """Accuracy budget and speed guard per plan, then the ranking. A reference plan the
    device cannot run (FP32 on an int8-only accelerator) is set aside, with the reason."""
    labelled = loaded.data.labels is not None
    base = validated.get("baseline.device")
    feeds = loaded.data.inputs[0]
    judged = []
    for cand, res in validated.values():
        why = cand.cannot_run_on(device)
        if why:
            others.append(
                res.model_copy(
                    update={
                        "status": "skipped",
                        "reasons": [f"{why}; measured here only as the FP32 reference"],
                    }
                )
            )
            continue
        judged.append(judge(res, cand, request, labelled, base, feeds, memo))
    base_ms = (
        base[1].stages[0].measured_host.ms if base and base[1].stages[0].measured_host else None
    )
    return rank([*others, *judged], request, base_ms)


def _measure_on_site(
    request: AdviceRequest,
    tiers: _Tiers,
    loaded: _Loaded,
    ev: EvalSet,
    candidates: list[tuple[str, Candidate]],
    ranked: tuple[list[PlanResult], str | None, list[str]],
    report: Progress,
) -> tuple[list[PlanResult], str | None, list[str], Any, list[str]]:
    """Time plans on the device agent (its verdicts replace the host guard's, then the plans
    are ranked again), and run the chosen partition through a server agent."""
    final, recommended, front = ranked
    split_validation, notes = None, list[str]()
    if request.device_agent:
        report("measure on device agent", 0.975)
        from advisor.validate.onsite import measure_on_device_agent, target_guard

        final = measure_on_device_agent(
            final, request.device_agent, request.agent_token, ev.inputs[0], request.runs
        )
        final, recommended, front = rerank(target_guard(final), request)
    if request.validate_split and request.server_agent:
        report("validate split", 0.985)
        from advisor.validate.onsite import split_check

        split_validation, notes = split_check(
            request,
            candidates,
            final,
            recommended,
            ev,
            [t.name for t in loaded.graph.outputs],
            tiers.link,
        )
    return final, recommended, front, split_validation, notes


def _assemble(
    request: AdviceRequest,
    tiers: _Tiers,
    loaded: _Loaded,
    host: _Host,
    ctx: PlanContext,
    final: list[PlanResult],
    recommended: str | None,
    front: list[str],
    stages: Stages,
) -> Advice:
    graph, prof = loaded.graph, host.profile
    return Advice(
        request=request,
        model=ModelSummary(
            name=graph.name,
            source=graph.source,
            digest=graph.digest,
            nodes=len(graph.nodes),
            flops=graph.total_flops,
            params_bytes=graph.total_params_bytes,
            inputs={t.name: list(t.shape) for t in graph.inputs},
            outputs={t.name: list(t.shape) for t in graph.outputs},
        ),
        environment=host.fingerprint.model_dump(),
        calibration=host.calibration.model_dump(),
        link=tiers.link.model_dump(),
        plans=final,
        recommended=recommended,
        pareto=front,
        layers=_layers(graph, prof, ctx),
        profile_self_check={
            "node_sum_ms": prof.node_sum_ms,
            "end_to_end_basic_ms": prof.end_to_end_basic_ms,
            "error": prof.self_check_error,
        },
        notices=[*graph.notices, *loaded.data.notices],
        command=request.command(),
        stage_seconds=stages.seconds,
        samples=loaded.data.counts,
    )


def _layers(graph: ModelGraph, prof: Profile, ctx: PlanContext) -> list[LayerRow]:
    return [
        LayerRow(
            name=n.name,
            op_type=n.op_type,
            layer=n.layer,
            flops=n.flops,
            output_bytes=n.output_bytes,
            host_ms=prof.nodes[n.name].median_ms if n.name in prof.nodes else 0.0,
            device_ms=ctx.device_ms.get(n.name),
            server_ms=ctx.server_ms.get(n.name) if ctx.server_ms else None,
        )
        for n in graph.nodes
    ]


# --- helpers ------------------------------------------------------------------------------


def _default_out(graph) -> Path:
    from advisor.cache import cache_dir

    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    return cache_dir() / "artifacts" / f"{graph.name}-{graph.digest[:8]}-{stamp}"
