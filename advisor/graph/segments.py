"""Cutting a middle segment (nodes [i, j)) out of a model, for plans with more than two tiers.

`advisor.graph.cuts.split_model` gives a head and a tail; a middle segment needs a model whose
inputs are the tensors flowing into the node set and whose outputs are the tensors leaving it.
onnx's own `onnx.utils.Extractor` does the extraction, and onnx.checker checks the result.
"""

from __future__ import annotations

from collections.abc import Collection

import onnx
import onnx.utils

from advisor.graph.model import ModelGraph
from advisor.graph.shell import check_extracted


def segment_io(graph: ModelGraph, nodes: Collection[str]) -> tuple[list[str], list[str]]:
    """(inputs, outputs) of the sub-graph made of `nodes`: tensors produced outside and read
    inside (initializers excluded), and tensors produced inside and read outside or returned."""
    inside = set(nodes)
    inits = {i.name for i in graph.model.graph.initializer}
    produced_in = {o for n in graph.nodes if n.name in inside for o in n.outputs}
    consumed_out = {t for n in graph.nodes if n.name not in inside for t in n.inputs}
    graph_outputs = {t.name for t in graph.outputs}
    ins: list[str] = []
    for n in graph.nodes:
        if n.name in inside:
            for t in n.inputs:
                if t and t not in produced_in and t not in inits and t not in ins:
                    ins.append(t)
    outs = [
        o
        for n in graph.nodes
        if n.name in inside
        for o in n.outputs
        if o in consumed_out or o in graph_outputs
    ]
    return ins, outs


def extract_segment(graph: ModelGraph, nodes: Collection[str]) -> onnx.ModelProto:
    ins, outs = segment_io(graph, nodes)
    model = onnx.utils.Extractor(graph.model).extract_model(ins, outs)
    check_extracted(model)
    return model
