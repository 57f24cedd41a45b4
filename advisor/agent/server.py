"""The inference server (`edgedl agent serve`): stores ONNX sub-models, runs and profiles them.

Routes (every one but ``/health`` needs ``Authorization: Bearer <token>``):

    GET  /health                  status, limits and the environment fingerprint
    PUT  /models  (or POST)       ONNX bytes -> {"model_id": sha256 of the bytes}; 422 if
                                  onnx or ONNX Runtime cannot load it
    GET  /models/{id}             200 with the model's inputs/outputs if stored, else 404
    POST /models/{id}/run         .npz (or .npy) inputs -> .npz outputs; timings in headers
                                  X-Compute-Ms (session.run), X-Queue-Ms, X-Server-Ms
                                  (body received -> response ready)
    POST /models/{id}/profile     ?runs=&warmup= [.npz inputs] -> JSON per-node medians,
                                  whole-model latency and fingerprint (measured here)

Errors are JSON ``{"detail": message}``: 401 token, 404 unknown id, 408 request head or
body too slow, 413 over a limit (body, tensor sizes an array header declares, store quota,
or the memory a run would need, estimated from the shapes by advisor.memory), 422 bad
model or tensors, 503 busy, 504 run over the time limit.

ONNX Runtime work, and every decode of a body (zip inflate, .npy read, protobuf parse),
runs in a fixed-size thread pool, never on the event loop; a semaphore of the same size
keeps the pool's queue empty so a request that waits too long for a slot gets 503 instead
of piling up, and a run past the time limit is told to stop (``RunOptions.terminate``)
and answered 504. Requests that hold a body are bounded in all (``max_pending``) and per
client address (``max_pending_per_client``), so slow senders from one address cannot hold
every slot. Connection-level limits are uvicorn's (see ``serve`` and agent.protocol).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import hmac
import ipaddress
import socket
import sys
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import onnx
import onnxruntime as ort
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import JSONResponse, Response
from starlette.requests import ClientDisconnect

from advisor.agent.codec import TooLargeError, decode_tensors, encode_tensors
from advisor.agent.limits import AgentLimits, MemoryGuard, MiB, declared_shapes, default_shapes
from advisor.agent.store import LoadedModel, ModelStore, check_feeds
from advisor.cache import cache_dir
from advisor.errors import (
    AdvisorError,
    AgentError,
    InputDataError,
    RequestError,
    UnknownIdError,
)
from advisor.model import load_model, sample_inputs
from advisor.profile import fingerprint, profile_model

_NO_LOCK = contextlib.nullcontext()
T = TypeVar("T")


def _left(deadline: float) -> float:
    """Seconds until a time.monotonic() deadline (a little above zero once it passed)."""
    return max(deadline - time.monotonic(), 0.001)


def _refuse(status: int, message: str) -> HTTPException:
    return HTTPException(status_code=status, detail=message)


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


class _Agent:
    """Per-app state: the store, the worker pool and its slots, the token."""

    def __init__(self, token: str, limits: AgentLimits, store: Path) -> None:
        self._token_digest = hashlib.sha256(token.encode()).digest()
        self.limits = limits
        self.store = ModelStore(
            store,
            threads=limits.threads,
            max_loaded=limits.max_loaded_models,
            max_bytes=limits.max_store_bytes,
        )
        self.pool: ThreadPoolExecutor | None = None
        self.slots = asyncio.Semaphore(limits.max_concurrency)
        self._taking = asyncio.Lock()
        self._admitted = asyncio.Semaphore(limits.max_pending)
        # client address -> [its semaphore, requests using it]; dropped when unused
        self._clients: dict[str, list[Any]] = {}
        self.memory = MemoryGuard(limits.max_memory_bytes)
        self.fingerprint: dict[str, Any] | None = None

    def authorize(self, request: Request) -> None:
        scheme, _, credential = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not credential.strip():
            raise HTTPException(
                401,
                "missing bearer token: send 'Authorization: Bearer <token>' with the token "
                "the agent was started with (--token or EDGEDL_AGENT_TOKEN)",
                headers={"WWW-Authenticate": "Bearer"},
            )
        # compare fixed-length digests in constant time: no timing or length leak
        given = hashlib.sha256(credential.strip().encode()).digest()
        if not hmac.compare_digest(given, self._token_digest):
            raise HTTPException(
                401,
                "wrong bearer token for this agent; use the token it was started with "
                "(--token or EDGEDL_AGENT_TOKEN)",
                headers={"WWW-Authenticate": "Bearer"},
            )

    @asynccontextmanager
    async def admission(self, deadline: float, client: str) -> AsyncIterator[None]:
        """Bound the requests that hold a body in memory (max_pending), and those of one
        client address (max_pending_per_client): a client's extra requests wait on their
        own address, without taking a shared slot. 503 by the deadline.

        Hand-written because uvicorn's only count, ``limit_concurrency``, is global: it
        answers 503 to everyone once one client's slow bodies fill it."""
        gate = self._clients.setdefault(
            client, [asyncio.Semaphore(self.limits.max_pending_per_client), 0]
        )
        gate[1] += 1
        try:
            try:
                await asyncio.wait_for(gate[0].acquire(), timeout=_left(deadline))
            except TimeoutError as exc:
                raise _refuse(
                    503,
                    f"this client already has {self.limits.max_pending_per_client} requests "
                    "pending at the agent; wait for them or retry later",
                ) from exc
            try:
                try:
                    await asyncio.wait_for(self._admitted.acquire(), timeout=_left(deadline))
                except TimeoutError as exc:
                    raise _refuse(
                        503,
                        f"the agent is busy ({self.limits.max_pending} requests pending); "
                        "retry later",
                    ) from exc
                try:
                    yield
                finally:
                    self._admitted.release()
            finally:
                gate[0].release()
        finally:
            gate[1] -= 1
            if gate[1] == 0:
                del self._clients[client]

    async def read_body(self, request: Request, limit: int, what: str, deadline: float) -> bytes:
        declared = request.headers.get("content-length")
        if declared is not None:
            if not declared.isdigit():
                raise _refuse(400, f"bad Content-Length header {declared!r}")
            if int(declared) > limit:
                raise self._too_big(what, int(declared), limit)

        async def read() -> bytes:
            buf = bytearray()
            async for chunk in request.stream():
                buf += chunk
                if len(buf) > limit:  # Content-Length absent (chunked) or wrong
                    raise self._too_big(what, len(buf), limit)
            return bytes(buf)

        try:
            return await asyncio.wait_for(read(), timeout=_left(deadline))
        except ClientDisconnect as exc:  # nobody to answer; ends the request quietly
            raise _refuse(
                400, f"the client closed the connection before sending the {what}"
            ) from exc
        except TimeoutError as exc:
            raise _refuse(
                408, f"the {what} was not received within {self.limits.request_timeout_s:g} s"
            ) from exc

    @staticmethod
    def _too_big(what: str, size: int, limit: int) -> HTTPException:
        flag = "--max-model-mb" if what == "model" else "--max-body-mb"
        return _refuse(
            413,
            f"the {what} body is {size} bytes, over this agent's limit of {limit} bytes "
            f"({limit / MiB:.1f} MiB); send less or start the agent with a larger {flag}",
        )

    async def offload(
        self,
        fn: Callable[[], T],
        deadline: float,
        run_options: ort.RunOptions | None = None,
        *,
        exclusive: bool = False,
    ) -> T:
        """Run ``fn`` in the worker pool within the deadline (503 no slot, 504 too slow).

        ``exclusive`` holds every slot, so no other run overlaps (for measurements). Slots
        are given back when the thread is really done, even after a 504."""
        held = await self._acquire(self.limits.max_concurrency if exclusive else 1, deadline)
        if self.pool is None:
            self._release(held)
            raise RuntimeError("the agent's worker pool starts with the app's lifespan")
        future = asyncio.get_running_loop().run_in_executor(self.pool, fn)

        def done(f: asyncio.Future[Any]) -> None:
            self._release(held)
            if not f.cancelled():
                f.exception()  # mark retrieved: a late failure after 504 is not an error

        future.add_done_callback(done)
        try:
            return await asyncio.wait_for(asyncio.shield(future), timeout=_left(deadline))
        except TimeoutError as exc:
            if run_options is not None:
                run_options.terminate = True  # ORT stops the run at its next check
            raise _refuse(
                504,
                f"the work did not finish within {self.limits.request_timeout_s:g} s; "
                "start the agent with a larger --timeout-s",
            ) from exc

    async def _acquire(self, count: int, deadline: float) -> int:
        held = 0
        try:
            # one exclusive taker at a time, or two could each hold half the slots
            async with self._taking if count > 1 else _NO_LOCK:
                for _ in range(count):
                    await asyncio.wait_for(self.slots.acquire(), timeout=_left(deadline))
                    held += 1
        except TimeoutError as exc:
            self._release(held)
            raise _refuse(
                503,
                f"the agent is busy ({self.limits.max_concurrency} runs at once); retry later",
            ) from exc
        return held

    def _release(self, count: int) -> None:
        for _ in range(count):
            self.slots.release()


def create_app(
    token: str, limits: AgentLimits | None = None, *, store: Path | str | None = None
) -> FastAPI:
    """The agent's FastAPI app; ``store`` defaults to ``<cache dir>/agent_models``."""
    if not token or not token.strip():
        raise RequestError("the agent needs a non-empty token (--token or EDGEDL_AGENT_TOKEN)")
    limits = limits or AgentLimits()
    agent = _Agent(token, limits, Path(store) if store else _default_store())

    @asynccontextmanager
    async def lifespan(_app: FastAPI):  # type: ignore[no-untyped-def]
        agent.pool = ThreadPoolExecutor(limits.max_concurrency, thread_name_prefix="edgedl-agent")
        try:
            yield
        finally:
            agent.pool.shutdown(wait=False, cancel_futures=True)

    # no /docs or /openapi.json: they would be the only unauthenticated pages
    app = FastAPI(
        title="EdgeDL agent", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None
    )
    app.state.agent = agent

    async def refused(_request: Request, exc: Exception) -> JSONResponse:
        # the one place the advisor's errors become statuses; the message is the detail
        status = 422
        if isinstance(exc, UnknownIdError):
            status = 404
        elif isinstance(exc, TooLargeError):
            status = 413
        return JSONResponse({"detail": str(exc)}, status_code=status)

    async def out_of_memory(_request: Request, exc: Exception) -> JSONResponse:
        # the estimate passed, yet an allocation failed: the machine cannot hold it now
        return JSONResponse(
            {"detail": f"the agent ran out of memory for this request ({exc}); send less"},
            status_code=413,
        )

    async def internal(_request: Request, exc: Exception) -> JSONResponse:
        # a bug of ours: still the documented JSON shape, never a plain-text page
        return JSONResponse(
            {"detail": f"internal error in the agent: {type(exc).__name__}: {exc}"},
            status_code=500,
        )

    app.add_exception_handler(AdvisorError, refused)
    app.add_exception_handler(MemoryError, out_of_memory)
    app.add_exception_handler(Exception, internal)
    secured = APIRouter(dependencies=[Depends(agent.authorize)])

    @app.get("/health")
    async def health() -> dict[str, Any]:
        if agent.fingerprint is None:
            agent.fingerprint = await asyncio.to_thread(_fingerprint_json, limits.threads)
        return {"status": "ok", "fingerprint": agent.fingerprint, "limits": asdict(limits)}

    async def upload(request: Request) -> JSONResponse:
        deadline = time.monotonic() + limits.request_timeout_s
        async with agent.admission(deadline, _client(request)):
            data = await agent.read_body(request, limits.max_model_bytes, "model", deadline)
            if not data:
                raise _refuse(422, "the body is empty; send the .onnx file's bytes")

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
        async with agent.admission(deadline, _client(request)):
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

    @secured.post("/models/{model_id}/profile")
    async def profile(
        model_id: str,
        request: Request,
        runs: int = Query(20, ge=1),
        warmup: int = Query(5, ge=0),
    ) -> dict[str, Any]:
        if runs + warmup > limits.max_profile_runs:
            raise _refuse(
                422,
                f"runs + warmup = {runs + warmup} is over this agent's limit of "
                f"{limits.max_profile_runs}",
            )
        deadline = time.monotonic() + limits.request_timeout_s
        async with agent.admission(deadline, _client(request)):
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
            agent.fingerprint = await asyncio.to_thread(_fingerprint_json, limits.threads)
        return {"model_id": model_id, "fingerprint": agent.fingerprint, **result}

    app.include_router(secured)
    return app


def _client(request: Request) -> str:
    """The client's address: the key of its per-client limit."""
    return request.client.host if request.client else "unknown"


def _fingerprint_json(threads: int) -> dict[str, Any]:
    return fingerprint(threads).model_dump(mode="json")


def _default_store() -> Path:
    return cache_dir() / "agent_models"


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and 'localhost'."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def exposure_warning(host: str) -> str | None:
    """The warning `serve` prints when ``host`` is not a loopback address, else None."""
    if is_loopback(host):
        return None
    return (
        f"warning: the agent listens on {host}, reachable from other machines; anyone with "
        "the token can run models on it, and traffic is plain HTTP (use a private network "
        "or a TLS proxy)"
    )


def serve(
    host: str,
    port: int,
    token: str,
    limits: AgentLimits | None = None,
    *,
    store: Path | str | None = None,
    log_level: str = "warning",
    ready_message: str | None = None,
) -> None:
    """Run the agent with uvicorn until interrupted; warns on stderr if not on loopback,
    and prints ``ready_message`` there once the port is bound.

    The port is bound here, before anything starts, so a port in use is an AgentError (the
    CLI's exit 2 with one line) rather than uvicorn's own exit. Connection limits are
    uvicorn settings: ``limit_concurrency`` (max_connections), ``timeout_keep_alive`` and
    ``h11_max_incomplete_event_size`` (max_header_bytes); the header timeout, which uvicorn
    lacks, is agent.protocol's.
    """
    import uvicorn

    from advisor.agent.protocol import header_timeout_protocol

    limits = limits or AgentLimits()
    sock = bind_socket(host, port)
    # Python hands the GIL between threads every 5 ms by default; a worker decoding a body
    # could then delay each step of a /health answer by that much. 1 ms keeps the event
    # loop responsive; ORT runs release the GIL, so measurements are not affected.
    sys.setswitchinterval(0.001)
    try:
        app = create_app(token, limits, store=store)
        warning = exposure_warning(host)
        if warning:
            print(warning, file=sys.stderr)
        if ready_message:
            print(ready_message, file=sys.stderr)
        config = uvicorn.Config(
            app,
            log_level=log_level,
            access_log=False,
            http=header_timeout_protocol(limits.header_timeout_s),
            timeout_keep_alive=30,
            limit_concurrency=limits.max_connections,
            h11_max_incomplete_event_size=limits.max_header_bytes,
        )
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        sock.close()


def bind_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to (host, port); AgentError naming the port and the fix if not."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise AgentError(
            f"cannot listen on {host!r}: {exc.strerror}; pass --host with an address of this "
            "machine (127.0.0.1 for loopback only)"
        ) from None
    family, _type, proto, _canon, address = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise AgentError(
                f"port {port} on {host} is already in use (another agent or program listens "
                f"there); stop it or pass --port with a free port"
            ) from None
        raise AgentError(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}; pass another --host or --port"
        ) from None
    return sock
