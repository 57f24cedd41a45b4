"""Advice runs outside the Streamlit script run: background jobs keyed by the request.

A click on *Run advice* submits the request to the server's one `JobBoard`; a thread runs
`advise()` with a progress callback that records the live stage, and stores the finished
advice in the run store (`advisor.runs.RunStore`). The page only reads the job, so a widget
change (which reruns the script) never discards a run. Runs take turns — timings never
share the machine — and a request already running is not started twice.

>>> board = JobBoard(runner=lambda req, progress: progress("plan", 0.5) or "advice",
...                  saver=lambda advice: "run-1")
>>> job = board.submit("request", key="k")
>>> job.wait(5) and (job.advice, job.run_id, job.stage)
('advice', 'run-1', 'done')
"""

from __future__ import annotations

import hashlib
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

#: finished jobs kept for the pages to pick up (the run store keeps them all)
KEEP_FINISHED = 32


def request_key(request: Any) -> str:
    """A stable key for an AdviceRequest (its JSON, hashed): same inputs, same key."""
    text = request.model_dump_json() if hasattr(request, "model_dump_json") else repr(request)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass
class Job:
    """One advice run and what is known of it so far (read by the pages, written by its
    thread; single assignments, so no lock is needed to read)."""

    id: str
    key: str
    request: Any
    label: str
    submitted: float = field(default_factory=time.time)
    started: float | None = None
    finished: float | None = None
    stage: str = "waiting for the machine (another run is measuring)"
    fraction: float = 0.0
    steps: list[tuple[str, float]] = field(default_factory=list)  # (stage, seconds in)
    advice: Any = None
    run_id: str | None = None
    error: str | None = None
    save_error: str | None = None
    _done: threading.Event = field(default_factory=threading.Event, repr=False)

    @property
    def running(self) -> bool:
        return not self._done.is_set()

    def elapsed(self) -> float:
        start = self.started or self.submitted
        return (self.finished or time.time()) - start

    def stage_elapsed(self) -> float:
        """Seconds spent in the current stage so far."""
        since = self.steps[-1][1] if self.steps else 0.0
        return max(0.0, self.elapsed() - since)

    def wait(self, timeout: float | None = None) -> bool:
        return self._done.wait(timeout)

    def progress(self, stage: str, fraction: float) -> None:
        if self.started is None:
            return
        self.fraction = min(max(float(fraction), 0.0), 1.0)
        if not self.steps or self.steps[-1][0] != stage:
            self.steps.append((stage, round(time.time() - self.started, 1)))
        self.stage = stage


class JobBoard:
    """The server's advice jobs: submit a request, look a job up by id or request key."""

    def __init__(
        self,
        runner: Callable[[Any, Callable[[str, float], None]], Any],
        saver: Callable[[Any], str | None],
        describe_error: Callable[[BaseException], str] = str,
    ) -> None:
        self._runner, self._saver, self._describe = runner, saver, describe_error
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()
        self._machine = threading.Lock()  # one measuring run at a time

    def submit(self, request: Any, key: str | None = None, label: str = "") -> Job:
        """Start a job for `request`, or return the one already running for the same key."""
        key = key or request_key(request)
        with self._lock:
            for job in self._jobs.values():
                if job.key == key and job.running:
                    return job
            job = Job(id=uuid.uuid4().hex[:12], key=key, request=request, label=label)
            self._jobs[job.id] = job
            self._trim()
        threading.Thread(
            target=self._run, args=(job,), name=f"advice-{job.id}", daemon=True
        ).start()
        return job

    def get(self, job_id: str | None) -> Job | None:
        return self._jobs.get(job_id) if job_id else None

    def running(self) -> list[Job]:
        return [j for j in list(self._jobs.values()) if j.running]

    def _trim(self) -> None:
        done = sorted((j for j in self._jobs.values() if not j.running), key=lambda j: j.submitted)
        for job in done[: max(0, len(done) - KEEP_FINISHED)]:
            del self._jobs[job.id]

    def _run(self, job: Job) -> None:
        try:
            with self._machine:
                job.started = time.time()
                job.progress("starting", 0.0)
                advice = self._runner(job.request, job.progress)
            job.stage, job.fraction = "storing the run", 1.0
            try:
                job.run_id = self._saver(advice)
            except Exception as exc:  # noqa: BLE001 - the advice stands even if storing fails
                job.save_error = self._describe(exc)
            job.advice = advice
            job.stage = "done"
        except BaseException as exc:  # noqa: BLE001 - the page shows it; the thread must end
            job.error = self._describe(exc)
            job.stage = "stopped"
        finally:
            job.finished = time.time()
            job._done.set()
