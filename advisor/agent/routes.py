"""The agent's authenticated routes: storing models, running them, profiling them per node,
and running the target calibration suite (`advisor.measure.suite`) on this machine.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import psutil
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, Response

from advisor.agent.codec import decode_tensors, encode_tensors
from advisor.agent.gate import Gate, client_of, refuse
from advisor.agent.limits import declared_shapes, default_shapes
from advisor.agent.store import LoadedModel, check_feeds
from advisor.errors import AdvisorError, InputDataError, RequestError
from advisor.graph.inputs import sample_inputs
from advisor.graph.load import load_model
from advisor.measure.profile import fingerprint, profile_model
from advisor.measure.suite import parse_threads, run_suite

__all__ = ["secured_routes", "fingerprint_json"]


def secured_routes(agent: Gate) -> APIRouter:
    """Every route but /health: each needs the bearer token."""
    secured = APIRouter(dependencies=[Depends(agent.authorize)])
    _model_routes(secured, agent)
    _measure_routes(secured, agent)
    _calibrate_routes(secured, agent)
    return secured


def _model_routes(secured: APIRouter, agent: Gate) -> None:
    limits = agent.limits

    async def upload(request: Request) -> JSONResponse:
        deadline = time.monotonic() + limits.request_timeout_s
        async with agent.admission(deadline, client_of(request)):
            data = await agent.read_body(request, limits.max_model_bytes, "model", deadline)
            if not data:
                raise refuse(422, "the body is empty; send the .onnx file's bytes")

            def fits(model_id: str, model: onnx.ModelProto) -> None:
                agent.memory.check(model_id, model, declared_shapes(model))

            model_id, loaded = await agent.offload(
                lambda: agent.store.add(data, check=fits), deadline
            )
        return JSONResponse({"model_id": model_id, **loaded.signature()}, status_code=201)

    secured.add_api_route("/models", upload, methods=["PUT", "POST"])

    @secured.get("/models/{model_id}")
    async def describe(model_id: str) -> dict[str, Any]:
        deadline = time.monotonic() + limits.request_timeout_s
        loaded = await agent.offload(lambda: agent.store.get(model_id), deadline)
        return {"model_id": model_id, **loaded.signature()}

    @secured.post("/models/{model_id}/run")
    async def run(model_id: str, request: Request) -> Response:
        deadline = time.monotonic() + limits.request_timeout_s
        async with agent.admission(deadline, client_of(request)):
            return await _run(model_id, request, deadline)

    async def _run(model_id: str, request: Request, deadline: float) -> Response:
        data = await agent.read_body(request, limits.max_body_bytes, "tensor", deadline)
        received = time.perf_counter()
        options = ort.RunOptions()

        def work() -> tuple[bytes, dict[str, float]]:
            started = time.perf_counter()
            loaded = agent.store.get(model_id)
            feeds = check_feeds(loaded, decode_tensors(data, max_bytes=limits.max_tensor_bytes))
            shapes = {name: tuple(arr.shape) for name, arr in feeds.items()}
            agent.memory.check(model_id, loaded.model, shapes)
            start = time.perf_counter()
            try:
                outputs = loaded.session.run(None, feeds, options)
            except Exception as exc:  # ORT fails at run time for data-dependent reasons
                raise InputDataError(f"ONNX Runtime failed to run the model: {exc}") from exc
            compute_ms = (time.perf_counter() - start) * 1e3
            body = encode_tensors(dict(zip(loaded.outputs, outputs, strict=True)))
            return body, {"queue": (started - received) * 1e3, "compute": compute_ms}

        body, ms = await agent.offload(work, deadline, options)
        server_ms = (time.perf_counter() - received) * 1e3
        return Response(
            body,
            media_type="application/octet-stream",
            headers={
                "X-Compute-Ms": f"{ms['compute']:.4f}",
                "X-Queue-Ms": f"{ms['queue']:.4f}",
                "X-Server-Ms": f"{server_ms:.4f}",
            },
        )


def _measure_routes(secured: APIRouter, agent: Gate) -> None:
    limits = agent.limits

    @secured.post("/models/{model_id}/profile")
    async def profile(
        model_id: str,
        request: Request,
        runs: int = Query(20, ge=1),
        warmup: int = Query(5, ge=0),
    ) -> dict[str, Any]:
        if runs + warmup > limits.max_profile_runs:
            raise refuse(
                422,
                f"runs + warmup = {runs + warmup} is over this agent's limit of "
                f"{limits.max_profile_runs}",
            )
        deadline = time.monotonic() + limits.request_timeout_s
        async with agent.admission(deadline, client_of(request)):
            data = await agent.read_body(request, limits.max_body_bytes, "tensor", deadline)

            def prepare() -> tuple[LoadedModel, dict[str, np.ndarray] | None]:
                # decoding inflates and copies: a worker's job, never the event loop's
                loaded = agent.store.get(model_id)
                inputs = None
                if data:
                    inputs = check_feeds(
                        loaded, decode_tensors(data, max_bytes=limits.max_tensor_bytes)
                    )
                shapes = (
                    default_shapes(loaded.inputs)
                    if inputs is None
                    else {name: tuple(arr.shape) for name, arr in inputs.items()}
                )
                agent.memory.check(model_id, loaded.model, shapes)
                return loaded, inputs

            loaded, inputs = await agent.offload(prepare, deadline)
            # a measurement wants the machine to itself: hold every slot while profiling
            result = await agent.offload(
                lambda: _profile(loaded, inputs, runs, warmup, limits.threads), deadline,
                exclusive=True,
            )  # fmt: skip
        if agent.fingerprint is None:
            agent.fingerprint = await asyncio.to_thread(fingerprint_json, limits.threads)
        return {"model_id": model_id, "fingerprint": agent.fingerprint, **result}


def _calibrate_routes(secured: APIRouter, agent: Gate) -> None:
    limits = agent.limits

    @secured.post("/calibrate")
    async def calibrate(
        request: Request, threads: str = Query("1"), quick: bool = Query(False)
    ) -> dict[str, Any]:
        """The calibration suite at each of `threads` (comma-separated, or 'auto': 1 and
        each power of two up to this machine's cores), holding every slot: a measurement
        wants the machine to itself."""
        cores = os.cpu_count() or 1
        try:
            counts = parse_threads(threads, cores)
        except RequestError as exc:
            raise refuse(422, str(exc)) from None
        if counts[-1] > max(cores, limits.threads):
            raise refuse(422, f"thread counts must be between 1 and {cores} (got {threads!r})")
        deadline = time.monotonic() + max(limits.request_timeout_s, 60.0 * len(counts))
        async with agent.admission(deadline, client_of(request)):
            profile = await agent.offload(
                lambda: run_suite(counts, quick=quick), deadline, exclusive=True
            )
        if agent.fingerprint is None:
            agent.fingerprint = await asyncio.to_thread(fingerprint_json, limits.threads)
        return {
            "kind": "measured_target",
            "profile": profile.model_dump(mode="json"),
            "fingerprint": agent.fingerprint,
            "memory_gb": round(psutil.virtual_memory().total / 1e9, 1),
        }


def _profile(
    loaded: LoadedModel, inputs: dict[str, np.ndarray] | None, runs: int, warmup: int, threads: int
) -> dict[str, Any]:
    """Profile on this machine. advisor.model.load_model names the nodes as the advisor does
    (and fixes symbolic dimensions from the given inputs); without inputs it samples some."""
    shapes = {name: tuple(arr.shape) for name, arr in (inputs or {}).items()}
    graph = load_model(loaded.model, input_shapes=shapes or None)
    feeds = inputs if inputs is not None else sample_inputs(graph)
    try:
        result = profile_model(graph, feeds, runs=runs, warmup=warmup, threads=threads, cache=False)
    except (AdvisorError, MemoryError):
        raise
    except Exception as exc:  # ORT fails at run time for data-dependent reasons, as in /run
        raise InputDataError(f"ONNX Runtime failed to profile the model: {exc}") from exc
    # The Profile is this machine's own record ('measured_host': host = the agent's machine);
    # to the caller that machine is the target, which the top-level kind says.
    return {"kind": "measured_target", "profile": result.model_dump(mode="json")}


def fingerprint_json(threads: int) -> dict[str, Any]:
    return fingerprint(threads).model_dump(mode="json")
