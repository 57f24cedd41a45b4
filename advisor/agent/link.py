"""A client-side link emulator, so a slow link can be exercised over loopback.

Transfer model (the same one the advisor's plans use): one direction of a request costs

    one_way_ms = rtt_ms / 2 + bytes * 8 / (mbps * 1e6) * 1e3

for the request body going up (``up_mbps``) and the response body coming down
(``down_mbps``). The emulator enforces it on real sockets: it waits ``rtt_ms / 2`` before
sending, paces the bytes it sends in small chunks so they leave no faster than ``up_mbps``,
and after the response headers arrive it waits ``rtt_ms / 2`` and releases the response
bytes no faster than ``down_mbps``. Over loopback (where the real link adds ~nothing) the
measured time therefore follows the model; over a real network it adds to the real link.
HTTP headers are not paced (a few hundred bytes).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Literal

from advisor.errors import RequestError

Direction = Literal["up", "down"]


def _sleep_until(deadline: float) -> None:
    while True:
        left = deadline - time.perf_counter()
        if left <= 0:
            return
        time.sleep(left)


@dataclass(frozen=True)
class EmulatedLink:
    """A link of ``up_mbps`` / ``down_mbps`` megabits per second and ``rtt_ms`` round trip.

    >>> round(EmulatedLink(10, 10, 20).one_way_ms(125_000), 3)  # 1 Mbit at 10 Mbps + 10 ms
    110.0
    """

    up_mbps: float
    down_mbps: float
    rtt_ms: float
    chunk_bytes: int = 16 * 1024

    def __post_init__(self) -> None:
        for name in ("up_mbps", "down_mbps"):
            value = getattr(self, name)
            if not value > 0:
                raise RequestError(f"EmulatedLink {name} must be > 0 Mbps, got {value!r}")
        if not self.rtt_ms >= 0:
            raise RequestError(f"EmulatedLink rtt_ms must be >= 0, got {self.rtt_ms!r}")
        if self.chunk_bytes < 512:
            raise RequestError(f"EmulatedLink chunk_bytes must be >= 512, got {self.chunk_bytes}")

    @classmethod
    def from_link(cls, link: Any) -> EmulatedLink:
        """From any object with ``up_mbps``, ``down_mbps`` and ``rtt_ms`` (a catalog Link)."""
        return cls(float(link.up_mbps), float(link.down_mbps), float(link.rtt_ms))

    def one_way_ms(self, nbytes: int, direction: Direction = "up") -> float:
        """Modelled time for ``nbytes`` to cross the link in one direction, in ms."""
        mbps = self.up_mbps if direction == "up" else self.down_mbps
        return self.rtt_ms / 2 + nbytes * 8 / (mbps * 1e6) * 1e3

    def _pace(self, chunks: Iterable[bytes], mbps: float) -> Iterator[bytes]:
        """Yield ``chunks`` after rtt/2, each no sooner than the link would have carried it."""
        _sleep_until(time.perf_counter() + self.rtt_ms / 2e3)
        start = time.perf_counter()
        sent = 0
        for chunk in chunks:
            for i in range(0, len(chunk), self.chunk_bytes):
                piece = chunk[i : i + self.chunk_bytes]
                sent += len(piece)
                # release a piece once the link would have finished carrying it
                _sleep_until(start + sent * 8 / (mbps * 1e6))
                yield piece

    def send(self, data: bytes) -> Iterator[bytes]:
        """The request body as a paced iterator (pass with an explicit Content-Length)."""
        return self._pace([data], self.up_mbps)

    def receive(self, chunks: Iterable[bytes]) -> bytes:
        """Read a response body as if it came down the link; call right after the headers."""
        return b"".join(self._pace(chunks, self.down_mbps))
