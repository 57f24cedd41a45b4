"""Progress of a long advice run: the `Progress` callback type (stage name, fraction done)
and `Stages`, which reports each stage, records how long it took (Advice.stage_seconds) and
gives the memory it freed back to the system when it ends.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from advisor.measure.heap import release_freed

__all__ = ["Progress", "Stages"]

Progress = Callable[[str, float], None]


class Stages:
    """Reports progress and records how long each named stage took (Advice.stage_seconds)."""

    def __init__(self, report: Progress):
        self.report = report
        self.t0 = time.perf_counter()
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, name: str, frac: float) -> Iterator[None]:
        """Report `name` at `frac`, and record how long the block took."""
        self.report(name, frac)
        started = time.perf_counter()
        yield
        release_freed()  # what the stage freed goes back to the system before the next one
        self.seconds[name] = round(time.perf_counter() - started, 3)
