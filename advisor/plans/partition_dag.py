"""`partition.dag`: DADS-style minimum s–t cut over the model's DAG (networkx).

Source = the device, sink = the server. For each node v: an edge source→v costs v's server
time (paid when v lands on the server side), an edge v→sink costs v's device time. Each
tensor gets its own relay vertex so its transfer is paid once however many consumers cross:
producer→relay costs the uplink time of the tensor, relay→consumer is unbounded. Reverse
unbounded edges forbid any data flowing back from server to device, so the device side is
always a valid head. Graph inputs are pinned to the device; outputs produced on the server
pay the downlink. The link's RTT is a fixed cost of any split, added after the cut.
"""

from __future__ import annotations

import networkx as nx

from advisor.graph.cuts import crossing_tensors
from advisor.graph.model import ModelGraph
from advisor.plans import Candidate, PlanContext, Skip, figures_key, planner
from advisor.plans.costs import size_text
from advisor.plans.partition_chain import split_candidate
from advisor.targets.catalog import transfer_ms

SRC, SNK = "__device__", "__server__"


def min_cut_head(
    graph: ModelGraph,
    device_ms: dict[str, float],
    server_ms: dict[str, float],
    up_ms_per_byte: float,
    down_ms_per_byte: float,
) -> tuple[float, frozenset[str]]:
    """The set of nodes to keep on the device that minimises compute + bandwidth time.

    >>> # see tests/test_plans.py for worked examples on residual models
    """
    G = nx.DiGraph()
    producers: dict[str, str] = {}
    for n in graph.nodes:
        for o in n.outputs:
            producers[o] = n.name
    graph_inputs = {t.name for t in graph.inputs}
    graph_outputs = {t.name for t in graph.outputs}
    for n in graph.nodes:
        down = sum(graph.tensor(o).nbytes for o in n.outputs if o in graph_outputs)
        G.add_edge(SRC, n.name, capacity=server_ms[n.name] + down * down_ms_per_byte)
        G.add_edge(n.name, SNK, capacity=device_ms[n.name])
    for n in graph.nodes:
        for t in n.inputs:
            if t in producers:
                src = producers[t]
            elif t in graph_inputs:
                src = SRC  # the input originates on the device
            else:
                continue  # initializer: travels with the model, not per request
            relay = f"tensor::{t}"
            if not G.has_edge(src, relay):
                G.add_edge(src, relay, capacity=graph.tensor(t).nbytes * up_ms_per_byte)
                if src != SRC:
                    G.add_edge(relay, src)  # unbounded: relay on server side => producer too
            G.add_edge(relay, n.name)  # unbounded
            G.add_edge(n.name, relay)  # unbounded: consumer on device => relay on device
    value, (device_side, _) = nx.minimum_cut(G, SRC, SNK)
    head = frozenset(v for v in device_side if v not in (SRC,) and not v.startswith("tensor::"))
    return float(value), head


@planner("partition.dag", "minimum s-t cut over the model DAG between device and server (DADS)")
def dag(ctx: PlanContext) -> list[Candidate] | Skip:
    if ctx.server is None:
        return Skip("partition.dag", "no edge or cloud target given (--edge / --cloud)")
    g = ctx.graph
    up = ctx.link.up_mbps * 1e6 / 8 / 1e3  # bytes per ms
    down = ctx.link.down_mbps * 1e6 / 8 / 1e3
    value, head = ctx.once(
        ("min_cut", g.digest, figures_key(ctx.device_ms), figures_key(ctx.server_ms), up, down),
        lambda: min_cut_head(g, ctx.device_ms, ctx.server_ms, 1 / up, 1 / down),
    )
    n = len(g.nodes)
    if len(head) in (0, n):
        where = "on the server" if not head else "on the device"
        return Skip(
            "partition.dag",
            f"the minimum cut keeps the whole model {where} (the link's "
            "round trip aside): the matching baseline covers it",
            {"cut_value_ms": value},
        )
    crossing = crossing_tensors(g, head)
    nbytes = sum(g.tensor(t).nbytes for t in crossing)
    rtt = transfer_ms(0, ctx.link, "up") + transfer_ms(0, ctx.link, "down")
    return [
        split_candidate(
            ctx,
            "partition.dag",
            f"Min-cut split: {len(head)} of {n} nodes on the device, "
            f"{len(crossing)} tensor(s), {size_text(nbytes)} sent",
            head,
            {"head_nodes": len(head)},
            {"cut_value_ms": round(value, 4), "rtt_ms": rtt},
        )
    ]
