"""What one agent accepts (AgentLimits) and the memory guard that refuses runs it cannot hold.

The guard estimates a run's bytes from the model's shapes (advisor.graph.memory) before any
input, intermediate tensor or session is allocated, and refuses with TooLargeError (HTTP
413) what is over ``max_memory_bytes`` or over the memory available at the time.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field

import onnx
import psutil

from advisor.agent.codec import TooLargeError
from advisor.agent.store import TensorInput
from advisor.errors import RequestError
from advisor.graph.memory import MemoryEstimate, estimate_memory

MiB = 1024 * 1024
GiB = 1024 * MiB


def _half_the_memory() -> int:
    return int(psutil.virtual_memory().total // 2)


@dataclass(frozen=True)
class AgentLimits:
    """What one server accepts and how much work it does at once."""

    max_model_bytes: int = 256 * MiB  # an uploaded ONNX file
    max_body_bytes: int = 64 * MiB  # a run/profile request body (.npz)
    max_tensor_bytes: int = 256 * MiB  # decoded input tensors of one request, all together
    request_timeout_s: float = 60.0  # body read + wait for a slot + run
    max_concurrency: int = 2  # ONNX Runtime runs at once (the thread pool's size)
    max_pending: int = 32  # requests holding a body in memory at once (others wait)
    max_loaded_models: int = 16  # sessions kept in memory (least recently used dropped)
    threads: int = 1  # intra-op threads per session
    max_profile_runs: int = 1000
    # the bytes a run may need, estimated from the shapes (advisor.graph.memory; also never more
    # than the memory available when the request comes)
    max_memory_bytes: int = field(default_factory=_half_the_memory)
    max_store_bytes: int = 4 * GiB  # model files on disk (least recently used evicted)
    max_pending_per_client: int = 8  # of max_pending, what one client address may hold
    header_timeout_s: float = 10.0  # request line + headers must arrive within this
    max_connections: int = 512  # open connections (uvicorn limit_concurrency; above: 503)
    max_header_bytes: int = 16 * 1024  # an unfinished request head (uvicorn h11 limit)

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            if not value > 0:
                raise RequestError(f"agent limit {name} must be > 0, got {value!r}")


def declared_shapes(model: onnx.ModelProto) -> dict[str, tuple[int, ...]]:
    """Inputs whose only symbolic dim is a batch (axis 0, rank >= 2), with that batch as 1;
    estimate_memory reads the fully static ones from the model itself."""
    inits = {i.name for i in model.graph.initializer}
    shapes = {}
    for vi in model.graph.input:
        dims = vi.type.tensor_type.shape.dim
        if vi.name in inits or len(dims) < 2 or dims[0].WhichOneof("value") == "dim_value":
            continue
        rest = [d.dim_value for d in dims[1:] if d.WhichOneof("value") == "dim_value"]
        if len(rest) == len(dims) - 1 and min(rest) >= 0:
            shapes[vi.name] = (1, *rest)
    return shapes


def default_shapes(inputs: Sequence[TensorInput]) -> dict[str, tuple[int, ...]]:
    """The shapes a profile without inputs samples, from a session's inputs: a symbolic
    batch (axis 0 of a rank >= 2 input) set to 1 as advisor.model.load_model does; inputs
    with other symbolic dims are left out (their size is unknown; load_model refuses them)."""
    shapes = {}
    for spec in inputs:
        dims = [1 if axis == 0 and d is None and len(spec.shape) >= 2 else d
                for axis, d in enumerate(spec.shape)]  # fmt: skip
        if all(d is not None for d in dims):
            shapes[spec.name] = tuple(int(d) for d in dims if d is not None)
    return shapes


class MemoryGuard:
    """Refuses runs whose estimated memory is over a limit; estimates cached per shapes.

    Thread-safe: the server calls it from its worker threads."""

    _CACHED = 1024

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._totals: dict[tuple[str, tuple[tuple[str, tuple[int, ...]], ...]], int] = {}
        self._lock = threading.Lock()

    def check(
        self, model_id: str, model: onnx.ModelProto, shapes: Mapping[str, tuple[int, ...]]
    ) -> None:
        """TooLargeError (413) if a run of ``model`` on inputs of ``shapes`` needs more than
        the limit or than the memory available now; ModelError/ShapeError for bad dims."""
        key = (model_id, tuple(sorted(shapes.items())))
        with self._lock:
            total = self._totals.get(key)
        estimate: MemoryEstimate | None = None
        if total is None:
            estimate = estimate_memory(model, shapes)
            total = estimate.total_bytes
            with self._lock:
                if len(self._totals) >= self._CACHED:
                    self._totals.clear()
                self._totals[key] = total
        limit, why = self.max_bytes, "this agent's memory limit"
        available = int(psutil.virtual_memory().available)
        if available < limit:
            limit, why = available, "the memory available on the agent's machine now"
        if total <= limit:
            return
        estimate = estimate or estimate_memory(model, shapes)
        raise TooLargeError(
            f"running this model needs about {estimate.describe()}; that is over {why} "
            f"({limit} bytes); send smaller inputs or a smaller model"
        )
