"""uvicorn's h11 protocol with a header timeout: a request's line and headers must arrive
within ``header_timeout_s`` of the connection opening (or of its first byte after a
keep-alive pause), else the connection gets 408 and is closed.

Why hand-written: uvicorn has no such setting. ``timeout_keep_alive`` only runs between
requests and is cancelled by the first byte of the next one, and nothing times a fresh
connection, so a client that sends half a request line holds its connection forever (50
such connections were never dropped). ``h11_max_incomplete_event_size`` bounds the bytes of
an unfinished head, not its time; ``limit_concurrency`` bounds connections, not how long
each may idle. Those three are still used, as uvicorn settings, by ``serve``. The body
that follows the headers is timed by the app (408 at the request timeout).

h11 rather than httptools: the timer hooks below rely on h11_impl's ``cycle`` and
``on_response_complete``, and h11 is always installed with uvicorn.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol


def header_timeout_protocol(header_timeout_s: float) -> type[asyncio.Protocol]:
    """An H11Protocol subclass that drops connections whose request head is too slow."""
    body = json.dumps(
        {"detail": f"the request line and headers did not arrive within {header_timeout_s:g} s"}
    ).encode()
    reply = (
        b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\n"
        b"connection: close\r\ncontent-length: " + str(len(body)).encode() + b"\r\n\r\n" + body
    )

    class HeaderTimeoutH11Protocol(H11Protocol):
        _timer: asyncio.TimerHandle | None = None
        _awaiting_head = False

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._awaiting_head = True
            self._arm()  # a fresh connection must send its head in time, even no bytes at all

        def data_received(self, data: bytes) -> None:
            if self._awaiting_head and self._timer is None:
                self._arm()  # first byte after a keep-alive pause
            before = self.cycle
            super().data_received(data)
            self._head_done_if_new_cycle(before)

        def on_response_complete(self) -> None:
            before = self.cycle
            super().on_response_complete()  # may start a pipelined request's cycle
            if not self._head_done_if_new_cycle(before):
                # idle now: uvicorn's keep-alive timer runs until the next byte arrives
                self._awaiting_head = True
                self._disarm()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def _head_done_if_new_cycle(self, before: Any) -> bool:
            if self.cycle is not None and self.cycle is not before:
                self._awaiting_head = False
                self._disarm()
                return True
            return False

        def send_400_response(self, msg: str) -> None:
            # uvicorn's own answer is text/plain; the agent's errors are all JSON
            detail = json.dumps({"detail": f"{msg} (malformed or over-long request head)"})
            body = detail.encode()
            self.transport.write(
                b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\n"
                b"connection: close\r\ncontent-length: "
                + str(len(body)).encode()
                + b"\r\n\r\n"
                + body
            )
            self.transport.close()

        def _arm(self) -> None:
            self._disarm()
            self._timer = self.loop.call_later(header_timeout_s, self._expire)

        def _disarm(self) -> None:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None

        def _expire(self) -> None:
            self._timer = None
            if self._awaiting_head and not self.transport.is_closing():
                self.transport.write(reply)
                self.transport.close()

    return HeaderTimeoutH11Protocol
