"""Run a sweep on Ray: one task per model, holding its node's "timing" resource.

Each model's missing cells go to one Ray task that asks for `{"timing": 1}`. Every node
declares exactly one unit of it (`ray.init(resources={"timing": 1})` here; `ray start
--resources='{"timing": 1}'` on a cluster's nodes), so two tasks that time models never
share a machine. Inside the task the cells run one after another through `advise()` with
one `MeasurementMemo`: the model is profiled once (the profile cache) and each distinct
artifact is run on the evaluation set and timed once; the other cells plan, predict and rank
from those measurements. The task streams each finished cell back (a Ray streaming
generator) and the driver stores it at once, so a killed sweep loses only the cells in flight.
Building that needs no timing runs beside the timing tasks: a trained zoo model's pruning
fine-tune is a separate task (1 CPU, no timing resource) whose result its timing task waits
for, while other models' timing tasks run. Resolving the SPEC, hashing the models and
writing the reports happen on the driver.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from advisor.errors import AdvisorError
from advisor.runs import RunStore
from advisor.sweep.spec import Cell, SweepSpec, model_digest

__all__ = ["ProgressPrinter", "SweepProgress", "run_cells", "TIMING"]

TIMING = "timing"  # the per-node custom resource a timing task holds
OBJECT_STORE_BYTES = 200 * 1024 * 1024  # results are small JSON strings


@dataclass(frozen=True)
class SweepProgress:
    """What the progress line shows; `eta_s` is None until a cell has finished."""

    done: int
    running: int
    left: int
    total: int
    eta_s: float | None


def needs_prepare(model: str, plans: list[str] | None) -> bool:
    """Whether `model` has building that needs no timing: a trained zoo model with torch
    weights and training data (and no early exits) gets a pruning fine-tune."""
    from advisor import zoo

    if plans is not None and "prune.structured" not in plans:
        return False
    if Path(model).suffix == ".onnx":
        return False
    try:
        e = zoo.get_zoo(model.removeprefix("zoo:"))
    except AdvisorError:
        return False
    return bool(e.trained and e.torch_builder and e.training_data and not e.exits)


def prepare_model(model: str) -> dict[str, Any]:
    """Building that needs no timing, run beside the timing tasks (no timing resource): the
    pruning fine-tune of a trained zoo model, into this machine's cache, where the model's
    timing task then finds it. Never raises: a failure here is met again, and reported, by
    the cell's own advice."""
    started = time.time()
    try:
        import torch

        from advisor import zoo
        from advisor.graph.load import load_model
        from advisor.plans.prune_structured import pruned_model

        torch.set_num_threads(1)  # one CPU, as the task asked Ray for
        _, _, _, hit = pruned_model(load_model(model), zoo.get_zoo(model.removeprefix("zoo:")))
        built, error = ([] if hit else ["prune.structured"]), None
    except Exception as exc:  # noqa: BLE001 - the timing task rebuilds and reports it
        built, error = [], f"{type(exc).__name__}: {exc}"
    return {
        "model": model,
        "built": built,
        "error": error,
        "node_id": _node_id(),
        "start": started,
        "end": time.time(),
    }


def advise_cells(
    cells: list[dict[str, Any]], spec: dict[str, Any], prepared: dict[str, Any] | None = None
) -> Iterator[dict[str, Any]]:
    """The body of a timing task: advise each cell in turn with one shared memo. `prepared`:
    the model's `prepare_model` result (Ray starts this task once it is ready).

    Yields {"event": "start", ...} before a cell and {"event": "done", ...} after it, with
    the Advice as JSON (or the error), where it ran and the interval it held the machine.
    """
    from advisor import AdviceRequest, advise
    from advisor.measure.environment import fingerprint
    from advisor.measure.memo import MeasurementMemo

    memo = MeasurementMemo()
    node_id = _node_id()
    fp_key = fingerprint(spec["threads"]).key()
    for c in cells:
        yield {"event": "start", "cell_key": c["key"]}
        started = time.time()
        advice_json, error = None, None
        try:
            token = (
                os.environ.get("EDGEDL_AGENT_TOKEN") if c["request"].get("device_agent") else None
            )
            req = AdviceRequest(**c["request"], agent_token=token)
            advice_json = advise(req, memo=memo).model_dump_json()
        except AdvisorError as exc:
            error = str(exc)
        except Exception as exc:  # noqa: BLE001 - one cell's failure must not sink the rest
            error = f"{type(exc).__name__}: {exc}"
        yield {
            "event": "done",
            "cell_key": c["key"],
            "advice_json": advice_json,
            "error": error,
            "record": {
                "cell": c["cell"],
                "node_id": node_id,
                "host": socket.gethostname(),
                "pid": os.getpid(),
                "fingerprint_key": fp_key,
                "timing_start": started,
                "timing_end": time.time(),
                "memo_hits": memo.hits,
                "shared": memo.counts(),  # the model's work so far, done once for its cells
                "prepared": prepared,  # the building run beside timing, if any
            },
        }


def _node_id() -> str:
    try:
        import ray

        if not ray.is_initialized():  # a direct call: asking would start a local Ray
            return socket.gethostname()
        return ray.get_runtime_context().get_node_id()
    except Exception:  # noqa: BLE001 - outside Ray (a direct call): this host
        return socket.gethostname()


def _request(cell: Cell, spec: SweepSpec, out_dir: Path | None, key: str) -> dict[str, Any]:
    model = cell.model
    if Path(model).suffix == ".onnx":  # workers may start elsewhere: give them the full path
        model = str(Path(model).expanduser().resolve())
    return {
        "model": model,
        "device": cell.device,
        "edge": cell.edge,
        "cloud": cell.cloud,
        "link": cell.link,
        "latency_ms": cell.latency_ms,
        "accuracy_budget": cell.accuracy_budget,
        "device_agent": cell.device_agent,
        "runs": spec.runs,
        "threads": spec.threads,
        "plans": spec.plans,
        "out_dir": str(out_dir / "artifacts" / key) if out_dir else None,
    }


def start_ray(address: str | None, num_cpus: int | None) -> bool:
    """Connect to `address`, or start Ray on this machine with one timing slot. Returns
    whether this call started (and so must stop) Ray."""
    import ray

    if ray.is_initialized():
        return False
    quiet = {"log_to_driver": False, "logging_level": "ERROR", "configure_logging": True}
    if address:
        _check_reachable(address)
        try:
            ray.init(address=address, **quiet)  # type: ignore[arg-type]
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise AdvisorError(
                f"--address {address}: cannot connect to a Ray cluster there ({exc}); start "
                "one with `ray start --head --resources='{\"timing\": 1}'`"
            ) from None
    else:
        ray.init(
            num_cpus=num_cpus or os.cpu_count() or 1,
            resources={TIMING: 1},
            include_dashboard=False,
            object_store_memory=OBJECT_STORE_BYTES,
            **quiet,  # type: ignore[arg-type]
        )
    if not ray.cluster_resources().get(TIMING):
        raise AdvisorError(
            f"the Ray cluster at {address} has no node with a '{TIMING}' resource; start each "
            "node with `ray start ... --resources='{\"timing\": 1}'` so timings never share one"
        )
    return True


def _open_kb_beside() -> threading.Thread:
    """Open the knowledge base on a thread while Ray starts (the driver only waits then): a
    fresh cache folder builds its database here, once, not inside the first timing task
    (every cell cites it). Never raises: citations are decoration."""

    def work() -> None:
        try:
            from kb import KnowledgeBase

            KnowledgeBase.open()
        except Exception:  # noqa: BLE001 - the cells meet, and skip, the same problem
            pass

    thread = threading.Thread(target=work, name="edgedl-kb-open", daemon=True)
    thread.start()
    return thread


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def _unwind_on_sigterm():
    """`kill PID` (SIGTERM) then unwinds like Ctrl-C, so the Ray this process started is shut
    down (Ray's own handler would print a C++ stack dump). Main thread only; returns the
    handler to restore, or None."""
    if threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signal.SIGTERM, _interrupt)


def _check_reachable(address: str, timeout_s: float = 5.0) -> None:
    """Fail in seconds, in one line, when nothing listens at a host:port address (Ray itself
    retries for minutes). 'auto' and addresses without a port are left to Ray."""
    import socket as _socket

    hostport = address.removeprefix("ray://").rstrip("/")
    host, sep, port = hostport.rpartition(":")
    if not sep or not port.isdigit():
        return
    try:
        with _socket.create_connection((host or "127.0.0.1", int(port)), timeout=timeout_s):
            pass
    except OSError as exc:
        raise AdvisorError(
            f"--address {address}: nothing answers there ({exc.strerror or exc}); give the "
            "head node's host:port (`ray status` on it), or leave --address out to run on "
            "this machine"
        ) from None


def _todo(
    spec: SweepSpec, store: RunStore, out_dir: Path | None
) -> tuple[dict[str, list[dict[str, Any]]], int]:
    """(model -> its cells not stored yet, with their keys and requests; all cells)."""
    cells = spec.cells()
    digests = {m: model_digest(m) for m in spec.models}
    keyed = [(c, c.key(digests[c.model], spec)) for c in cells]
    stored = store.stored_cells([k for _, k in keyed])
    todo: dict[str, list[dict[str, Any]]] = {}
    for c, k in keyed:
        if k not in stored:
            todo.setdefault(c.model, []).append(
                {
                    "key": k,
                    "cell": c.model_dump(mode="json"),
                    "request": _request(c, spec, out_dir, k),
                }
            )
    return todo, len(keyed)


def _collect(
    gens: list[Any],
    pending: dict[int, tuple[str, set[str]]],
    store: RunStore,
    sweep_id: str,
    report: Callable[[SweepProgress], None],
    counts: tuple[int, int],
) -> tuple[int, list[str]]:
    """Store each cell as its task streams it back; (cells stored, failure lines)."""
    import ray

    total, done = counts
    running: set[str] = set()
    failures: list[str] = []
    ran, saved, t0 = 0, 0, time.perf_counter()
    while gens:
        ready, _ = ray.wait(gens, num_returns=1, timeout=1.0)
        for gen in ready:
            stream: Any = gen  # an ObjectRefGenerator: next() gives the next cell's ref
            try:
                msg: Any = ray.get(next(stream))
            except StopIteration:
                gens.remove(gen)
                continue
            except ray.exceptions.RayError as exc:  # the task died (OOM kill, node lost)
                gens.remove(gen)
                model, lost = pending[id(gen)]
                running -= lost
                ran += len(lost)
                why = " ".join(str(exc).split())[:300]
                failures.append(
                    f"{model}: the Ray task died with {len(lost)} cell(s) left ({why}); "
                    "run the sweep again to complete them"
                )
                continue
            if msg["event"] == "start":
                running.add(msg["cell_key"])
                continue
            running.discard(msg["cell_key"])
            pending[id(gen)][1].discard(msg["cell_key"])
            ran += 1
            if msg["error"]:
                cell = msg["record"]["cell"]
                failures.append(f"{cell['model']} on {cell['device']}: {msg['error']}")
            else:
                from advisor.advice import Advice

                store.save(
                    Advice.model_validate_json(msg["advice_json"]),
                    sweep_id=sweep_id,
                    cell_key=msg["cell_key"],
                    sweep_record=msg["record"],
                )
                saved += 1
        left = total - done - ran
        # wall seconds per finished cell so far (all timing slots together) × cells left
        per_cell = (time.perf_counter() - t0) / ran if ran else None
        eta = per_cell * left if per_cell is not None else None
        report(SweepProgress(done + ran, len(running), left - len(running), total, eta))
    return saved, failures


def run_cells(
    spec: SweepSpec,
    store: RunStore,
    sweep_id: str,
    *,
    address: str | None = None,
    num_cpus: int | None = None,
    out_dir: Path | None = None,
    progress: Callable[[SweepProgress], None] | None = None,
) -> tuple[int, int, list[str]]:
    """Advise the cells not yet stored, on Ray; store each as it finishes.

    Returns (cells stored now, cells found stored already, one line per failure)."""
    todo, total = _todo(spec, store, out_dir)
    done = total - sum(len(v) for v in todo.values())
    report = progress or (lambda p: None)
    report(SweepProgress(done, 0, total - done, total, None))
    if not todo:
        return 0, done, []

    import ray

    kb = _open_kb_beside()  # while Ray starts
    started_ray = start_ray(address, num_cpus)
    kb.join()
    previous = _unwind_on_sigterm() if started_ray else None
    try:
        task = ray.remote(advise_cells).options(  # type: ignore[call-overload]
            num_cpus=1, resources={TIMING: 1}, num_returns="streaming", max_retries=0
        )
        prep = ray.remote(prepare_model).options(num_cpus=1, max_retries=0)  # type: ignore[call-overload]
        gens: list[Any] = []
        pending: dict[int, tuple[str, set[str]]] = {}  # id(gen) -> (model, cells not back yet)
        for model, cells_ in todo.items():
            before = prep.remote(model) if needs_prepare(model, spec.plans) else None
            gens.append(task.remote(cells_, spec.model_dump(mode="json"), before))
            pending[id(gens[-1])] = (model, {c["key"] for c in cells_})
        saved, failures = _collect(gens, pending, store, sweep_id, report, (total, done))
        return saved, done, failures
    finally:
        if started_ray:
            ray.shutdown()
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


class ProgressPrinter:
    """The progress line on stderr: redrawn on a terminal; elsewhere one line per change of
    the counts (not per ETA tick)."""

    def __init__(self) -> None:
        self.tty = sys.stderr.isatty()
        self.last: tuple[int, int, int] | None = None

    def __call__(self, p: SweepProgress) -> None:
        counts = (p.done, p.running, p.left)
        if not self.tty and counts == self.last:
            return
        self.last = counts
        eta = "–" if p.eta_s is None else f"{max(0.0, p.eta_s):.0f} s"
        frac = p.done / p.total if p.total else 1.0
        line = (
            f"[{'#' * int(frac * 30):<30}] cells: {p.done} done, {p.running} running, "
            f"{p.left} left of {p.total} · ETA {eta}"
        )
        if self.tty:
            end = "\n" if p.done >= p.total else ""
            print(f"\r{line:<100}", end=end, file=sys.stderr, flush=True)
        else:
            print(line, file=sys.stderr, flush=True)
