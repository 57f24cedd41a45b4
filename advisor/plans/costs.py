"""The partition cost model, as pure functions.

A plan's predicted latency is the sum of its steps: compute on each tier (the sum of the
per-node predicted_target latencies of the nodes placed there) and transfers, each costing
`advisor.targets.catalog.transfer_ms(bytes, link, direction)` (half the RTT plus bytes over
bandwidth).
Planners and benchmarks use these functions, so "the chosen cut is the cheapest under the
cost model" can be checked against the same model.
"""

from __future__ import annotations

from dataclasses import dataclass

from advisor.graph.cuts import returned_bytes_by_position
from advisor.graph.model import ModelGraph
from advisor.targets.catalog import Link, transfer_ms


@dataclass(frozen=True)
class CutCost:
    position: int  # head = first `position` nodes of the topological order
    tensors: tuple[str, ...]
    bytes: int
    device_ms: float
    up_ms: float
    server_ms: float
    down_ms: float

    @property
    def total_ms(self) -> float:
        return self.device_ms + self.up_ms + self.server_ms + self.down_ms

    @property
    def single(self) -> bool:
        return len(self.tensors) <= 1

    def as_row(self) -> dict[str, object]:
        return {
            "position": self.position,
            "tensors": list(self.tensors),
            "bytes": self.bytes,
            "device_ms": round(self.device_ms, 4),
            "up_ms": round(self.up_ms, 4),
            "server_ms": round(self.server_ms, 4),
            "down_ms": round(self.down_ms, 4),
            "total_ms": round(self.total_ms, 4),
        }


def output_bytes(graph: ModelGraph) -> int:
    return sum(t.nbytes for t in graph.outputs)


def input_bytes(graph: ModelGraph) -> int:
    return sum(t.nbytes for t in graph.inputs)


def boundary_bytes(graph: ModelGraph, tensors: tuple[str, ...], int8: bool = False) -> int:
    """Bytes sent for `tensors`; with int8, float tensors travel as 1 byte per element plus
    a float32 scale and zero point each."""
    total = 0
    for name in tensors:
        t = graph.tensor(name)
        if int8 and is_float(graph, name):
            total += t.nbytes // max(1, _itemsize(t.dtype)) + 8
        else:
            total += t.nbytes
    return total


def size_text(nbytes: int) -> str:
    """Bytes for a plan title: exact below 1 KiB, else KiB with one decimal.

    >>> size_text(133), size_text(4096)
    ('133 B', '4.0 KiB')
    """
    return f"{nbytes} B" if nbytes < 1024 else f"{nbytes / 1024:.1f} KiB"


def is_float(graph: ModelGraph, tensor: str) -> bool:
    return graph.tensor(tensor).dtype in ("float32", "float16", "float64")


def _itemsize(dtype: str) -> int:
    return {"float32": 4, "float16": 2, "float64": 8}.get(dtype, 1)


def prefix_costs(
    graph: ModelGraph,
    device_ms: dict[str, float],
    server_ms: dict[str, float],
    link: Link,
    int8_boundary: bool = False,
    device_overhead_ms: float = 0.0,
    server_overhead_ms: float = 0.0,
) -> list[CutCost]:
    """Cost of every prefix cut: position 0 (all on the server, the input uploaded), each
    enumerated cut, and position N (all on the device, nothing sent). A side that runs at
    least one node pays its per-inference overhead once."""
    names = [n.name for n in graph.nodes]
    n = len(names)
    dev_prefix = [0.0]
    for name in names:
        dev_prefix.append(dev_prefix[-1] + device_ms[name])
    srv_suffix = [0.0] * (n + 1)
    for i in range(n - 1, -1, -1):
        srv_suffix[i] = srv_suffix[i + 1] + server_ms[names[i]]
    dev_prefix = [v + (device_overhead_ms if i else 0.0) for i, v in enumerate(dev_prefix)]
    srv_suffix = [v + (server_overhead_ms if i < n else 0.0) for i, v in enumerate(srv_suffix)]
    # the server returns only the outputs it computes (a multi-output model may finish some
    # on the device)
    returned = returned_bytes_by_position(graph)

    def cost(pos: int, tensors: tuple[str, ...]) -> CutCost:
        b = boundary_bytes(graph, tensors, int8_boundary)
        down = transfer_ms(returned[pos], link, "down")
        return CutCost(
            pos, tensors, b, dev_prefix[pos], transfer_ms(b, link, "up"), srv_suffix[pos], down
        )

    rows = [cost(0, tuple(t.name for t in graph.inputs))]
    rows += [cost(c.position, c.tensors) for c in graph.cuts() if 0 < c.position < n]
    rows.append(CutCost(n, (), 0, dev_prefix[n], 0.0, 0.0, 0.0))
    return rows


def best(
    rows: list[CutCost],
    *,
    single_only: bool = False,
    proper_only: bool = False,
    n_nodes: int | None = None,
) -> CutCost | None:
    """The cheapest row; ties go to the earlier position (less on the device)."""
    pool = [r for r in rows if (r.single or not single_only)]
    if proper_only:
        pool = [r for r in pool if 0 < r.position and (n_nodes is None or r.position < n_nodes)]
    return min(pool, key=lambda r: (r.total_ms, r.position)) if pool else None
