"""`advise()`: from a request to validated, ranked plans.

Stages: load the model → fingerprint and calibrate this host → profile every node → predict
per-node latency on each target → ask every registered planner for candidates → validate each
candidate in ONNX Runtime → guard against plans that measured slower than FP32 → rank the
plans that meet the latency target and the accuracy budget → cite the knowledge base.
"""

from __future__ import annotations

import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from advisor.advice import (
    Advice,
    AdviceRequest,
    LayerRow,
    ModelSummary,
    PlanResult,
)
from advisor.errors import AdvisorError, InputDataError, RequestError
from advisor.plans import Candidate, Exit, PlanContext, Skip, load_builtins
from advisor.rank import citations, judge, rank

if TYPE_CHECKING:
    from advisor.memo import MeasurementMemo

Progress = Callable[[str, float], None]
NO_LABEL_EVAL_SAMPLES = 8
CALIB_SAMPLES = 64


def _split_samples(inputs: dict[str, np.ndarray], graph, limit: int) -> list[dict[str, np.ndarray]]:
    """Turn batched arrays (N, ...) into per-sample dicts matching the model's shapes."""
    counts = set()
    for spec in graph.inputs:
        arr = inputs[spec.name]
        if tuple(arr.shape) == tuple(spec.shape):
            counts.add(1)
        elif (
            arr.ndim == len(spec.shape)
            and tuple(arr.shape[1:]) == tuple(spec.shape[1:])
            and spec.shape[0] == 1
        ):
            counts.add(arr.shape[0])
        else:
            raise InputDataError(
                f"data for input {spec.name!r} has shape {tuple(arr.shape)}; the model expects "
                f"{tuple(spec.shape)} (or N samples of {tuple(spec.shape[1:])})"
            )
    if len(counts) != 1:
        raise InputDataError(f"inputs hold different numbers of samples: {sorted(counts)}")
    n = min(counts.pop(), limit)
    out = []
    for i in range(n):
        out.append(
            {
                s.name: (
                    inputs[s.name]
                    if tuple(inputs[s.name].shape) == tuple(s.shape)
                    else inputs[s.name][i : i + 1]
                ).astype(_np_dtype(s.dtype), copy=False)
                for s in graph.inputs
            }
        )
    return out


def _np_dtype(name: str):
    return np.dtype(name)


def _reproduce(req: AdviceRequest) -> str:
    parts = ["edgedl", "advise", req.model, "--device", req.device]
    for flag, v in (
        ("--edge", req.edge),
        ("--cloud", req.cloud),
        ("--link", req.link),
        ("--up-mbps", req.up_mbps),
        ("--down-mbps", req.down_mbps),
        ("--rtt-ms", req.rtt_ms),
        ("--latency-ms", req.latency_ms),
        ("--accuracy-budget", req.accuracy_budget),
        ("--data", req.data),
    ):
        if v is not None:
            parts += [flag, str(v)]
    for name, shape in req.input_shapes.items():
        parts += ["--input-shape", f"{name}={'x'.join(map(str, shape))}"]
    if req.cloud_link != "ethernet":
        parts += ["--cloud-link", req.cloud_link]
    if req.runs != 20:
        parts += ["--runs", str(req.runs)]
    if req.threads != 1:
        parts += ["--threads", str(req.threads)]
    for p in req.plans or []:
        parts += ["--plan", p]
    for e in req.exits or []:
        parts += ["--exit", e]
    if req.device_agent:
        parts += ["--device-agent", req.device_agent]
    if req.server_agent:
        parts += ["--server-agent", req.server_agent]
    if req.validate_split:
        parts += ["--validate", "split"]
        if not req.emulate_link:
            parts += ["--no-emulate-link"]
    return shlex.join(parts)


def advise(
    request: AdviceRequest, progress: Progress | None = None, *, memo: MeasurementMemo | None = None
) -> Advice:
    """Plan, build, run and rank. Raises AdvisorError subclasses on bad input.

    `memo` (advisor.memo.MeasurementMemo): reuse the evaluation runs and timings of
    artifacts that earlier calls in this process already measured (a sweep passes one per
    model); None measures everything afresh."""
    from advisor import zoo
    from advisor.hardware import get_link, get_target, load_catalog
    from advisor.model import load_model
    from advisor.predict import calibrate, predict_nodes
    from advisor.profile import fingerprint, profile_model
    from advisor.validate import (
        EvalSet,
        accuracy,
        reference_outputs,
        remeasure_interleaved,
        validate,
    )

    report = progress or (lambda stage, frac: None)
    stages = _Stages(report)

    load_builtins()
    from advisor.plans import PLANNERS

    unknown = [p for p in request.plans or [] if p not in PLANNERS]
    if unknown:
        raise RequestError(f"unknown plan kind {unknown[0]!r}; known: {', '.join(PLANNERS)}")

    # --- targets and links first: an unknown id fails before any work ---------------------
    catalog = load_catalog()

    def target(tid: str | None):
        return get_target(tid, catalog, threads=request.threads) if tid else None

    device, edge, cloud = target(request.device), target(request.edge), target(request.cloud)
    link = _link(request, catalog)
    cloud_link = get_link(request.cloud_link, catalog) if cloud and edge else None
    server = edge or cloud

    # --- model and data ---------------------------------------------------------------
    stages.start("load model", 0.02)
    shapes = {k: tuple(v) for k, v in request.input_shapes.items()}
    graph = load_model(request.model, input_shapes=shapes)
    zoo_entry = None
    try:
        zoo_entry = zoo.get_zoo(request.model.removeprefix("zoo:"))
    except AdvisorError:
        zoo_entry = None
    if zoo_entry is not None and Path(request.model).suffix == ".onnx":
        zoo_entry = None  # a path, not a zoo id
    graph, exits = _declared_exits(graph, request, zoo_entry)
    data = _load_data(request, graph, zoo_entry)
    notices, eval_inputs, labels, calib = (
        list(graph.notices) + data.notices,
        data.inputs,
        data.labels,
        data.calib,
    )
    stages.stop("load model")

    # --- host, targets, profile -----------------------------------------------------------
    stages.start("profile", 0.08)
    fp = fingerprint(request.threads)
    cal = calibrate(threads=request.threads)
    prof = profile_model(graph, eval_inputs[0], runs=request.runs, threads=request.threads)
    stages.stop("profile")

    stages.start("predict", 0.2)
    # an FP16 export computes in fp16: its nodes are predicted with each target's fp16 peak
    prec = graph.precision
    device_ms = predict_nodes(graph, prof, device, cal, prec)
    edge_ms = predict_nodes(graph, prof, edge, cal, prec) if edge else {}
    cloud_ms = predict_nodes(graph, prof, cloud, cal, prec) if cloud else {}
    server_ms = edge_ms or cloud_ms
    stages.stop("predict")

    out_dir = Path(request.out_dir) if request.out_dir else _default_out(graph)
    out_dir.mkdir(parents=True, exist_ok=True)
    ctx = PlanContext(
        graph=graph,
        device=device,
        server=server,
        server_tier="edge" if edge else ("cloud" if cloud else None),
        edge=edge,
        cloud=cloud,
        link=link,
        cloud_link=cloud_link,
        device_ms=device_ms,
        server_ms=server_ms,
        edge_ms=edge_ms,
        cloud_ms=cloud_ms,
        calib_inputs=calib,
        work_dir=out_dir,
        calibration=cal,
        torch_source=zoo_entry
        if zoo_entry is not None
        and zoo_entry.trained
        and zoo_entry.torch_builder
        and zoo_entry.training_data
        else None,
        exits=exits,
        eval_inputs=eval_inputs,
        labels=labels,
        latency_ms=request.latency_ms,
        threads=request.threads,
        overhead_ms={
            tier: cal.run_overhead_ms
            for tier, t in (("device", device), ("edge", edge), ("cloud", cloud))
            if t is not None and t.id == "host"
        },
    )

    # --- plan -------------------------------------------------------------------------------
    stages.start("plan", 0.25)
    kinds = request.plans or list(PLANNERS)
    if "baseline.device" not in kinds:  # always measured: the FP32 reference for the guard
        kinds = ["baseline.device", *kinds]
    candidates: list[tuple[str, Candidate]] = []
    results: list[PlanResult] = []
    for kind in kinds:
        try:
            out = PLANNERS[kind].fn(ctx)
        except AdvisorError as exc:
            out = Skip(kind, str(exc))
        except Exception as exc:  # noqa: BLE001 - one planner's failure must not sink the rest
            out = Skip(kind, f"planner failed: {type(exc).__name__}: {exc}")
        if isinstance(out, Skip):
            results.append(
                PlanResult(
                    id=kind,
                    kind=kind,
                    title=PLANNERS[kind].summary,
                    status="skipped",
                    reasons=[out.reason],
                    extra=out.extra,
                    citations=citations(kind),
                )
            )
            continue
        for i, c in enumerate(out):
            candidates.append((kind if len(out) == 1 else f"{kind}#{i + 1}", c))
    stages.stop("plan")

    # --- validate ---------------------------------------------------------------------------
    stages.start("validate", 0.3)
    reference = reference_outputs(graph, eval_inputs, request.threads, memo)
    out_names = [t.name for t in graph.outputs]
    primary = out_names.index(exits[-1]) if exits else 0  # a multi-exit model's final exit
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
    ev = EvalSet(eval_inputs, labels, reference, base_acc, primary)
    validated: dict[str, tuple[Candidate, PlanResult]] = {}
    for n, (pid, cand) in enumerate(candidates):
        report(f"validate {pid}", 0.3 + 0.65 * n / max(1, len(candidates)))
        try:
            res = validate(
                ctx, cand, pid.replace("#", "-"), ev, out_dir, request.runs, request.threads, memo
            )
            validated[pid] = (cand, res.model_copy(update={"id": pid}))
        except Exception as exc:  # noqa: BLE001 - a broken artifact is a rejected plan
            results.append(
                PlanResult(
                    id=pid,
                    kind=cand.kind,
                    title=cand.title,
                    params=cand.params,
                    status="rejected",
                    reasons=[f"validation failed: {type(exc).__name__}: {exc}"],
                )
            )
    report("measure all plans, interleaved", 0.95)
    again = remeasure_interleaved(
        [res for _, res in validated.values()],
        eval_inputs[0],
        runs=request.runs,
        threads=request.threads,
        memo=memo,
    )
    validated = {
        pid: (cand, res) for (pid, (cand, _)), res in zip(validated.items(), again, strict=True)
    }
    stages.stop("validate")

    # --- guard, rank, cite ----------------------------------------------------------------
    report("rank", 0.97)
    judged = [
        judge(
            res,
            cand,
            request,
            labels is not None,
            validated.get("baseline.device"),
            eval_inputs[0],
            memo,
        )
        for cand, res in validated.values()
    ]
    base = validated.get("baseline.device")
    base_ms = (
        base[1].stages[0].measured_host.ms if base and base[1].stages[0].measured_host else None
    )
    final, recommended, front = rank([*results, *judged], request, base_ms)

    # --- measurements on the real target and the real split ------------------------------
    split_validation = None
    if request.device_agent:
        report("measure on device agent", 0.975)
        from advisor.onsite import measure_on_device_agent

        final = measure_on_device_agent(
            final, request.device_agent, request.agent_token, eval_inputs[0], request.runs
        )
    if request.validate_split and request.server_agent:
        report("validate split", 0.985)
        from advisor.onsite import validate_split

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
        if recommended and recommended not in own_outputs:
            notices.append(
                f"--validate split: {recommended} ends at an early exit, which the "
                "split runner does not check; a partition of the full model is run"
            )
        if not parts:
            notices.append("--validate split: no validated partition plan to run")
        else:
            chosen = next((p for p in parts if p.status == "recommended"), parts[0])
            if chosen.status != "recommended" and (
                recommended is None or recommended in own_outputs
            ):
                why = (
                    f"the recommended plan {recommended} is not a partition"
                    if recommended
                    else "no plan is recommended"
                )
                notices.append(
                    f"--validate split: {why}; ran {chosen.id}, the best-ranked partition"
                )
            split_validation = validate_split(
                chosen,
                request.server_agent,
                request.agent_token,
                eval_inputs[0],
                reference[0],
                [t.name for t in graph.outputs],
                link=link if request.emulate_link else None,
                threads=request.threads,
            )

    layers = [
        LayerRow(
            name=n.name,
            op_type=n.op_type,
            layer=n.layer,
            flops=n.flops,
            output_bytes=n.output_bytes,
            host_ms=prof.nodes[n.name].median_ms if n.name in prof.nodes else 0.0,
            device_ms=device_ms.get(n.name),
            server_ms=server_ms.get(n.name) if server_ms else None,
        )
        for n in graph.nodes
    ]
    stages.seconds["total"] = round(time.perf_counter() - stages.t0, 3)
    report("done", 1.0)
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
        environment=fp.model_dump(),
        calibration=cal.model_dump(),
        link=link.model_dump(),
        plans=final,
        recommended=recommended,
        pareto=front,
        layers=layers,
        profile_self_check={
            "node_sum_ms": prof.node_sum_ms,
            "end_to_end_basic_ms": prof.end_to_end_basic_ms,
            "error": prof.self_check_error,
        },
        notices=notices,
        command=_reproduce(request),
        split_validation=split_validation,
        stage_seconds=stages.seconds,
    )


class _Stages:
    """Reports progress and records how long each named stage took (Advice.stage_seconds)."""

    def __init__(self, report: Progress):
        self.report = report
        self.t0 = time.perf_counter()
        self.seconds: dict[str, float] = {}
        self._started: dict[str, float] = {}

    def start(self, name: str, frac: float) -> None:
        self.report(name, frac)
        self._started[name] = time.perf_counter()

    def stop(self, name: str) -> None:
        self.seconds[name] = round(time.perf_counter() - self._started.pop(name), 3)


@dataclass(frozen=True)
class _EvalData:
    inputs: list[dict[str, np.ndarray]]  # evaluation samples, one dict each
    labels: np.ndarray | None
    calib: list[dict[str, np.ndarray]]  # quantization calibration samples
    notices: list[str]


def _load_data(request: AdviceRequest, graph, zoo_entry) -> _EvalData:
    """Evaluation inputs (with labels when known) and calibration inputs.

    --data wins; a zoo model brings its held-out labelled split; otherwise a few valid random
    inputs measure agreement with FP32. Calibration uses the zoo's calibration set (drawn from
    the training split) when there is one, else the first evaluation samples.
    """
    from advisor.model import load_npz, sample_inputs

    notices = []
    data_path = request.data
    if data_path is None and zoo_entry is not None and zoo_entry.labelled_data:
        data_path = str(zoo_entry.labelled_data)
        notices.append(f"using the zoo's held-out labelled split {Path(data_path).name}")
    labels = None
    if data_path:
        batched, labels = load_npz(data_path, graph)
        inputs = _split_samples(batched, graph, request.max_eval_samples)
        with np.load(data_path, allow_pickle=False) as archive:
            used = {t.name for t in graph.inputs} | {"y", "labels"}
            used |= {"x"} if len(graph.inputs) == 1 else set()
            unused = sorted(set(archive.files) - used)
        if unused:
            notices.append(
                f"{Path(data_path).name}: ignored array(s) {', '.join(unused)} (the model's "
                f"inputs are {', '.join(t.name for t in graph.inputs)}; labels go under 'y')"
            )
    else:
        inputs = [sample_inputs(graph, seed=i) for i in range(NO_LABEL_EVAL_SAMPLES)]
        notices.append(
            f"no --data given: fidelity measured on {NO_LABEL_EVAL_SAMPLES} random "
            "valid inputs (agreement with FP32, not task accuracy)"
        )
    if labels is not None:
        labels = np.asarray(labels).reshape(-1)[: len(inputs)]
        if len(labels) < len(inputs):
            raise InputDataError(f"{data_path}: {len(labels)} labels for {len(inputs)} samples")
    if zoo_entry is not None and zoo_entry.calibration_data:
        cb, _ = load_npz(zoo_entry.calibration_data, graph)
        calib = _split_samples(cb, graph, CALIB_SAMPLES)
    else:
        calib = inputs[:CALIB_SAMPLES]
        if data_path:
            notices.append(
                "static INT8 calibrated on the first samples of --data "
                "(no separate calibration set)"
            )
    return _EvalData(inputs, labels, calib, notices)


def _link(request: AdviceRequest, catalog):
    """The device <-> server link: a catalog preset, or the user's bandwidths and RTT."""
    from advisor.hardware import Link, get_link

    if request.link:
        return get_link(request.link, catalog)
    if request.up_mbps is None or request.down_mbps is None or request.rtt_ms is None:
        raise RequestError("a custom link needs --up-mbps, --down-mbps and --rtt-ms")
    return Link(
        id="custom",
        name="custom link",
        up_mbps=request.up_mbps,
        down_mbps=request.down_mbps,
        rtt_ms=request.rtt_ms,
        sources={"up_mbps": "user", "down_mbps": "user", "rtt_ms": "user"},
    )


def _declared_exits(graph, request: AdviceRequest, zoo_entry):
    """(graph, its exits): declared by the request, else by the zoo manifest, else by the
    model's own metadata (advisor.exits)."""
    from advisor.exits import declare_exits, exits_of

    names = request.exits or (
        [e.output for e in zoo_entry.exits] if zoo_entry is not None and zoo_entry.exits else None
    )
    if names and tuple(names) != exits_of(graph):
        graph = declare_exits(graph, names)
    return graph, exits_of(graph)


def _default_out(graph) -> Path:
    from advisor.cache import cache_dir

    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    return cache_dir() / "artifacts" / f"{graph.name}-{graph.digest[:8]}-{stamp}"
