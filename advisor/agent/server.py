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
    POST /calibrate               ?threads=1,2,4&quick= -> the target calibration suite
                                  (advisor.measure.suite) run here: a measured profile

Errors are JSON ``{"detail": message}``: 401 token, 404 unknown id, 408 request head or
body too slow, 413 over a limit (body, tensor sizes an array header declares, store quota,
or the memory a run would need, estimated from the shapes by advisor.graph.memory), 422 bad
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
import ipaddress
import socket
import sys
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any, TypeVar

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from advisor.agent.codec import TooLargeError
from advisor.agent.gate import Gate
from advisor.agent.limits import AgentLimits
from advisor.agent.routes import fingerprint_json, secured_routes
from advisor.cache import cache_dir
from advisor.errors import (
    AdvisorError,
    AgentError,
    RequestError,
    UnknownIdError,
)

_NO_LOCK = contextlib.nullcontext()
T = TypeVar("T")


def create_app(
    token: str, limits: AgentLimits | None = None, *, store: Path | str | None = None
) -> FastAPI:
    """The agent's FastAPI app; ``store`` defaults to ``<cache dir>/agent_models``."""
    if not token or not token.strip():
        raise RequestError("the agent needs a non-empty token (--token or EDGEDL_AGENT_TOKEN)")
    limits = limits or AgentLimits()
    agent = Gate(token, limits, Path(store) if store else _default_store())

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

    @app.get("/health")
    async def health() -> dict[str, Any]:
        if agent.fingerprint is None:
            agent.fingerprint = await asyncio.to_thread(fingerprint_json, limits.threads)
        return {"status": "ok", "fingerprint": agent.fingerprint, "limits": asdict(limits)}

    app.include_router(secured_routes(agent))
    return app


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
