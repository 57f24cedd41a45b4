"""`load_for_advice`: what `advise` loads for a request, in order: the model (symbolic dims
from --input-shape, else from the --data arrays; memory checked), its declared exits, and
its evaluation and calibration data (disjoint)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from advisor.advice import AdviceRequest
from advisor.errors import AdvisorError
from advisor.graph.data import EvalData, data_shapes, eval_data
from advisor.graph.model import ModelGraph

__all__ = ["load_for_advice", "load_key", "CALIBRATED_PLANS"]

#: plan kinds that calibrate static INT8 on samples (asked by name, they need samples)
CALIBRATED_PLANS = frozenset({"quantize.static_int8", "combo.quantized_head_partition"})


def load_for_advice(
    request: AdviceRequest,
) -> tuple[ModelGraph, Any, tuple[str, ...], EvalData]:
    """(graph, zoo entry or None, exits, data) for `request`."""
    from advisor.graph.load import load_model
    from advisor.zoo import get_zoo

    shapes = {k: tuple(v) for k, v in request.input_shapes.items()}
    graph = load_model(
        request.model,
        input_shapes=shapes,
        data_shapes=data_shapes(request.data),
        max_memory=request.max_memory,
    )
    try:
        zoo_entry = get_zoo(request.model.removeprefix("zoo:"))
    except AdvisorError:
        zoo_entry = None
    if zoo_entry is not None and Path(request.model).suffix == ".onnx":
        zoo_entry = None  # a path, not a zoo id
    graph, exits = declared_exits(graph, request, zoo_entry)
    data = eval_data(
        graph,
        request.data,
        zoo_entry,
        request.max_eval_samples,
        request.calib_data,
        calibrate=_calibrate(request.plans),
        max_bytes=request.max_memory,
    )
    return graph, zoo_entry, exits, data


#: the request fields that decide what `load_for_advice` (and the FP32 reference on its
#: evaluation inputs) gives
LOAD_FIELDS = frozenset(
    {
        "model",
        "input_shapes",
        "data",
        "calib_data",
        "max_memory",
        "exits",
        "max_eval_samples",
        "plans",
        "threads",
        "allow_nonfinite",
    }
)


def load_key(request: AdviceRequest) -> tuple:
    """What decides `load_for_advice(request)`: the request fields it reads and the size and
    modification time of the files it names (a sweep loads each model once by this key)."""
    files = (request.model, request.data, request.calib_data)
    return (
        request.model_dump_json(include=set(LOAD_FIELDS)),
        tuple(_stamp(f) for f in files),
    )


def _stamp(file: str | None) -> tuple[int, int] | None:
    """(size, mtime in ns) of a file, None when it is not one (a zoo id, nothing given)."""
    try:
        st = Path(file).stat() if file else None
    except OSError:
        return None
    return (st.st_size, st.st_mtime_ns) if st is not None else None


def _calibrate(plans: list[str] | None) -> Literal["none", "optional", "required"]:
    """Whether calibration samples are needed: by a plan asked for by name, by the default
    set of plans (maybe: a planner may skip), or not at all."""
    if plans is None:
        return "optional"
    return "required" if CALIBRATED_PLANS & set(plans) else "none"


def declared_exits(graph, request: AdviceRequest, zoo_entry):
    """(graph, its exits): declared by the request, else by the zoo manifest, else by the
    model's own metadata (advisor.graph.exits)."""
    from advisor.graph.exits import declare_exits, exits_of

    names = request.exits or (
        [e.output for e in zoo_entry.exits] if zoo_entry is not None and zoo_entry.exits else None
    )
    if names and tuple(names) != exits_of(graph):
        graph = declare_exits(graph, names)
    return graph, exits_of(graph)
