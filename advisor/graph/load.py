"""`load_model`: every model source to one checked, shape-inferred `ModelGraph`.

The recipe: read the source (`advisor.graph.io`), check its structure, name its nodes, fold
weight-only nodes, make input shapes concrete and infer the rest (`advisor.graph.repair`),
then build the per-node view (`advisor.graph.model.build_graph`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import onnx
from google.protobuf.message import EncodeError

from advisor.graph import footprint, repair
from advisor.graph import io as model_io
from advisor.graph.model import ModelGraph, build_graph

__all__ = ["load_model"]


def load_model(
    source: Any,
    *,
    input_shapes: Mapping[str, tuple[int, ...]] | None = None,
    example_inputs: Any = None,
    data_shapes: Mapping[str, tuple[int, ...]] | None = None,
    max_memory: int | None = None,
    ort_check: bool = True,
    compact: bool = True,
) -> ModelGraph:
    """Load an .onnx path, 'zoo:<id>' / bare zoo id, ModelProto or torch.nn.Module.

    `input_shapes` give symbolic input dims; `data_shapes` (the shapes of the arrays in
    `--data`, by input name) fill the ones still symbolic. Before anything is allocated, the
    inputs, then every tensor of one run, are checked against `max_memory` (bytes; default:
    the memory available now): over it, ModelError says the estimate and the largest tensor.
    `ort_check=False` skips loading the model in ONNX Runtime when shape inference found
    every shape (for a model the caller has already loaded in ORT). `compact=False` keeps the
    repaired proto as it is (for a graph read once and dropped; see `_compact`).

    >>> g = load_model("zoo:digits_cnn")
    >>> g.inputs[0].shape, g.outputs[0].shape
    ((1, 1, 8, 8), (1, 10))
    """

    proto, origin = model_io.read_source(source, example_inputs)
    unsorted = repair.sort_nodes(proto)
    repair.check_structure(proto)
    repair.name_nodes(proto)
    folded = [
        *unsorted,
        *repair.weights_out_of_inputs(proto),
        *repair.fold_constants(proto),
        *repair.subgraph_notices(proto),
        *repair.subnormal_notices(proto),
    ]
    notices, batch_inputs = repair.fix_input_shapes(
        proto, dict(input_shapes or {}), dict(data_shapes or {})
    )
    footprint.check_memory(footprint.input_estimate(proto), max_memory)
    # ORT only where shapes are missing; the load check (below) reads the compact bytes
    in_ort = repair.infer_shapes(proto, load_check=False)
    proto, data = _compact(proto) if compact else (proto, None)
    if ort_check and not in_ort:
        repair.check_loads(proto, data)
    graph = build_graph(proto, origin, (*folded, *notices), tuple(batch_inputs), data)
    footprint.check_memory(footprint.graph_estimate(graph), max_memory)
    if graph.precision == "fp16":
        note = (
            "the model computes in FP16 (most weight bytes are float16): it is predicted at each "
            "target's fp16 peak, and FP16 conversion and INT8 quantization are skipped"
        )
        graph = replace(graph, notices=(*graph.notices, note))
    return graph


def _compact(model: onnx.ModelProto) -> tuple[onnx.ModelProto, bytes | None]:
    """The model parsed afresh from its bytes, and those bytes. Protobuf (upb) keeps every
    byte a message ever held until the message itself is freed: a model repaired in place
    (nodes named, weights folded, inferred shapes copied over) holds its weights about
    twice — on a ResNet-50-class model ~200 MB for 100 MB of weights, for the whole advice.
    A fresh parse holds them once. The bytes serve the model's first readers
    (`ModelGraph.serialized`). A model past protobuf's 2 GB limit is kept as it is."""
    try:
        data = model.SerializeToString()
    except (ValueError, EncodeError):
        return model, None
    return onnx.ModelProto.FromString(data), data
