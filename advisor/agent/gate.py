"""The agent's per-app state and admission control: the bearer token, the model store, the
worker pool whose fixed slots every ONNX Runtime call and body decode runs in, and the
bounds on requests that hold a body (in all and per client address).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import onnxruntime as ort
from fastapi import HTTPException, Request
from starlette.requests import ClientDisconnect

from advisor.agent.limits import AgentLimits, MemoryGuard, MiB
from advisor.agent.store import ModelStore

__all__ = ["Gate", "client_of", "left", "refuse"]

_NO_LOCK = contextlib.nullcontext()
T = TypeVar("T")


def left(deadline: float) -> float:
    """Seconds until a time.monotonic() deadline (a little above zero once it passed)."""
    return max(deadline - time.monotonic(), 0.001)


def refuse(status: int, message: str) -> HTTPException:
    return HTTPException(status_code=status, detail=message)


class Gate:
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
                await asyncio.wait_for(gate[0].acquire(), timeout=left(deadline))
            except TimeoutError as exc:
                raise refuse(
                    503,
                    f"this client already has {self.limits.max_pending_per_client} requests "
                    "pending at the agent; wait for them or retry later",
                ) from exc
            try:
                try:
                    await asyncio.wait_for(self._admitted.acquire(), timeout=left(deadline))
                except TimeoutError as exc:
                    raise refuse(
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
                raise refuse(400, f"bad Content-Length header {declared!r}")
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
            return await asyncio.wait_for(read(), timeout=left(deadline))
        except ClientDisconnect as exc:  # nobody to answer; ends the request quietly
            raise refuse(
                400, f"the client closed the connection before sending the {what}"
            ) from exc
        except TimeoutError as exc:
            raise refuse(
                408, f"the {what} was not received within {self.limits.request_timeout_s:g} s"
            ) from exc

    @staticmethod
    def _too_big(what: str, size: int, limit: int) -> HTTPException:
        flag = "--max-model-mb" if what == "model" else "--max-body-mb"
        return refuse(
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
            return await asyncio.wait_for(asyncio.shield(future), timeout=left(deadline))
        except TimeoutError as exc:
            if run_options is not None:
                run_options.terminate = True  # ORT stops the run at its next check
            raise refuse(
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
                    await asyncio.wait_for(self.slots.acquire(), timeout=left(deadline))
                    held += 1
        except TimeoutError as exc:
            self._release(held)
            raise refuse(
                503,
                f"the agent is busy ({self.limits.max_concurrency} runs at once); retry later",
            ) from exc
        return held

    def _release(self, count: int) -> None:
        for _ in range(count):
            self.slots.release()


def client_of(request: Request) -> str:
    """The client's address: the key of its per-client limit."""
    return request.client.host if request.client else "unknown"
