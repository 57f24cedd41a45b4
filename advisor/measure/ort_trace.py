"""Read ONNX Runtime's profiler output (a Chrome-trace JSON list) into per-run node times.

ORT writes one `Session/model_run` event per inference and one `Node/<name>_kernel_time`
event per kernel executed. We read it ourselves because ORT ships no parser for it; the
format is the documented `enable_profiling` output.
"""

from __future__ import annotations

import bisect
from collections.abc import Collection
from typing import Any

import onnx

__all__ = ["KERNEL_SUFFIX", "kernel_ms_per_run", "owner", "subgraph_node_names"]

KERNEL_SUFFIX = "_kernel_time"


def owner(kernel: str, nodes: Collection[str]) -> str | None:
    """The graph node a kernel belongs to: its own name, or the node a fusion is named after.

    ORT names nodes it fuses `<original name>/<FusionName>` (e.g. MatMulAddFusion), so the
    longest '/'-prefix that is a graph node owns the kernel. Kernels ORT creates from scratch
    (e.g. `gemm_input_reshape`) have no owner.

    >>> owner("fc/MatMulAddFusion", {"fc", "relu"}), owner("gemm_input_reshape", {"fc"})
    ('fc', None)
    """
    if kernel in nodes:
        return kernel
    cut = kernel.rfind("/")
    while cut > 0:
        if kernel[:cut] in nodes:
            return kernel[:cut]
        cut = kernel.rfind("/", 0, cut)
    return None


def kernel_ms_per_run(
    events: list[dict[str, Any]], overhead_us: float = 0.0
) -> list[dict[str, float]]:
    """For each `model_run`, in order: kernel name -> ms spent in it during that run.

    `overhead_us` (the profiler's own cost inside each kernel event, measured separately) is
    subtracted from every event, never below zero.
    """
    runs = sorted(
        (e for e in events if e.get("cat") == "Session" and e.get("name") == "model_run"),
        key=lambda e: e["ts"],
    )
    starts = [r["ts"] for r in runs]
    per_run: list[dict[str, float]] = [{} for _ in runs]
    for e in events:
        name = e.get("name", "")
        if e.get("cat") != "Node" or not name.endswith(KERNEL_SUFFIX):
            continue
        i = bisect.bisect_right(starts, e["ts"]) - 1
        if i < 0 or e["ts"] > runs[i]["ts"] + runs[i]["dur"]:
            continue  # outside every run: not part of an inference
        kernel = name[: -len(KERNEL_SUFFIX)]
        ms = max(0.0, e["dur"] - overhead_us) / 1e3
        per_run[i][kernel] = per_run[i].get(kernel, 0.0) + ms
    return per_run


def subgraph_node_names(graph: onnx.GraphProto) -> set[str]:
    """Names of nodes inside If/Loop/Scan bodies (their time is inside the owning node)."""
    names: set[str] = set()

    def walk(g: onnx.GraphProto, nested: bool) -> None:
        for node in g.node:
            if nested:
                names.add(node.name)
            for attr in node.attribute:
                if attr.type == onnx.AttributeProto.GRAPH:
                    walk(attr.g, True)
                elif attr.type == onnx.AttributeProto.GRAPHS:
                    for sub in attr.graphs:
                        walk(sub, True)

    walk(graph, False)
    return names
