"""Multi-exit models: side-branch classifiers that let an input leave before the last layer.

A multi-exit model is one ONNX graph whose outputs include every exit's logits. Which outputs
are exits, shallowest first and the final classifier last, is declared in the model's own
metadata (`edgedl.exits`, a JSON list), so a saved model keeps its declaration:
`declare_exits(graph, ["exit1", "exit2", "logits"])` works for any model that already has
several classifier outputs; `export_multi_exit` writes a torch model (such as
`advisor.zoo.models.MultiExitDigitsCNN`, trained with `train_multi_exit`) with its exits
declared.

Per exit, `exit_submodel` extracts the trunk up to the exit plus its branch with
`onnx.utils.Extractor`; `cascade_stages` cuts the graph into the segments a BranchyNet cascade
runs one after another (stage k continues from the tensors stage k-1 left, so no work is
redone). `exit_outputs` runs the full model once in ONNX Runtime and returns every exit's
logits per sample, from which exit accuracies and entropies are measured.

>>> from advisor.graph.load import load_model
>>> g = load_model("zoo:digits_multiexit")
>>> exits_of(g)
('exit1', 'exit2', 'logits')
>>> [len(s.nodes) > 0 for s in cascade_stages(g)]
[True, True, True]
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnx.utils

from advisor.errors import ModelError
from advisor.graph.model import ModelGraph
from advisor.graph.segments import segment_io
from advisor.graph.shell import check_extracted

__all__ = [
    "EXITS_KEY",
    "CascadeStage",
    "cascade_stages",
    "declare_exits",
    "entropy",
    "exit_nodes",
    "exit_submodel",
    "exits_of",
    "export_multi_exit",
    "train_multi_exit",
]

EXITS_KEY = "edgedl.exits"


# --- declaration --------------------------------------------------------------------------------


def _proto(model: ModelGraph | onnx.ModelProto) -> onnx.ModelProto:
    return model.model if isinstance(model, ModelGraph) else model


def exits_of(model: ModelGraph | onnx.ModelProto) -> tuple[str, ...]:
    """The declared exit outputs, shallowest first (final last); () for a single-exit model."""
    meta = {p.key: p.value for p in _proto(model).metadata_props}
    if EXITS_KEY not in meta:
        return ()
    try:
        names = json.loads(meta[EXITS_KEY])
    except json.JSONDecodeError:
        raise ModelError(
            f"model metadata {EXITS_KEY!r} is not a JSON list of output names; "
            "declare the exits again with advisor.graph.exits.declare_exits"
        ) from None
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise ModelError(f"model metadata {EXITS_KEY!r} must be a JSON list of output names")
    return tuple(names)


def _check_exits(proto: onnx.ModelProto, names: Sequence[str]) -> None:
    outputs = [o.name for o in proto.graph.output]
    if len(names) < 2:
        raise ModelError(
            f"a multi-exit model needs at least two exits (got {list(names)}); "
            "name every exit output, shallowest first and the final one last"
        )
    if len(set(names)) != len(names):
        raise ModelError(f"exit names repeat: {list(names)}")
    unknown = [n for n in names if n not in outputs]
    if unknown:
        raise ModelError(
            f"exit {unknown[0]!r} is not an output of the model; its outputs are "
            f"{', '.join(outputs)}"
        )


def set_exit_metadata(proto: onnx.ModelProto, names: Sequence[str]) -> None:
    """Write the exit declaration into `proto`'s metadata (in place), replacing any earlier one."""
    _check_exits(proto, names)
    keep = [p for p in proto.metadata_props if p.key != EXITS_KEY]
    del proto.metadata_props[:]
    proto.metadata_props.extend(keep)
    onnx.helper.set_model_props(
        proto, {**{p.key: p.value for p in keep}, EXITS_KEY: json.dumps(list(names))}
    )


def declare_exits(graph: ModelGraph, names: Sequence[str]) -> ModelGraph:
    """`graph` with `names` (graph outputs, shallowest first, final last) declared as its exits.

    Every exit must be a classifier output of the same width (one logit per class).
    """
    _check_exits(graph.model, names)
    widths = {n: graph.tensor(n).shape for n in names}
    if len({s[-1] if s else 0 for s in widths.values()}) != 1 or any(
        len(s) < 1 for s in widths.values()
    ):
        raise ModelError(f"exits must all give one logit per class; their shapes are {widths}")
    proto = onnx.ModelProto()
    proto.CopyFrom(graph.model)
    set_exit_metadata(proto, names)
    # digest: of the new proto, on first use
    return replace(graph, model=proto, _digest=None, _bytes=None)


# --- extraction ---------------------------------------------------------------------------------


def with_exits(graph: ModelGraph, names: Sequence[str] | None) -> ModelGraph:
    """`graph` with `names` declared as its exits (when given and different from what its
    metadata already declares); otherwise the graph as it is."""
    if names and tuple(names) != exits_of(graph):
        return declare_exits(graph, names)
    return graph


def _inputs(graph: ModelGraph) -> list[str]:
    return [t.name for t in graph.inputs]


def exit_submodel(graph: ModelGraph, exit_name: str) -> onnx.ModelProto:
    """The trunk up to `exit_name` plus its branch: the graph inputs it needs -> that exit."""
    if exit_name not in {t.name for t in graph.outputs}:
        raise ModelError(f"{exit_name!r} is not an output of model {graph.name!r}")
    extractor = onnx.utils.Extractor(graph.model)
    model = extractor.extract_model(_inputs(graph), [exit_name])
    reads = {i for n in model.graph.node for i in n.input}
    if any(i not in reads for i in _inputs(graph)):  # keep only the inputs the exit reads
        model = extractor.extract_model([i for i in _inputs(graph) if i in reads], [exit_name])
    model.graph.name = f"{graph.name}.{exit_name}"
    for p in graph.model.metadata_props:  # keep provenance, drop the exit declaration
        if p.key != EXITS_KEY:
            model.metadata_props.add(key=p.key, value=p.value)
    check_extracted(model)
    return model


def exit_nodes(graph: ModelGraph, exit_name: str) -> frozenset[str]:
    """Names of the nodes `exit_name` depends on (its sub-model's nodes)."""
    return frozenset(n.name for n in exit_submodel(graph, exit_name).graph.node)


@dataclass(frozen=True)
class CascadeStage:
    """One segment of a cascade: the nodes exit `exit` needs beyond the earlier exits'."""

    exit: str
    nodes: frozenset[str]
    inputs: tuple[str, ...]  # tensors read from earlier stages or the graph inputs
    outputs: tuple[str, ...]  # the exit's logits plus tensors later stages read
    model: onnx.ModelProto


def cascade_stages(graph: ModelGraph, exits: Sequence[str] | None = None) -> list[CascadeStage]:
    """Split the model into the stages of an early-exit cascade, one per exit, in order."""
    exits = tuple(exits or exits_of(graph))
    if not exits:
        raise ModelError(
            f"model {graph.name!r} declares no exits; see advisor.graph.exits.declare_exits"
        )
    done: set[str] = set()
    stages = []
    for e in exits:
        need = exit_nodes(graph, e)
        nodes = frozenset(need - done)
        if not nodes:
            raise ModelError(
                f"exit {e!r} needs no node beyond the earlier exits; list exits shallowest first"
            )
        ins, outs = segment_io(graph, nodes)
        outs = [e, *[o for o in outs if o != e]]
        model = onnx.utils.Extractor(graph.model).extract_model(ins, outs)
        model.graph.name = f"{graph.name}.stage.{e}"
        check_extracted(model)
        stages.append(CascadeStage(e, nodes, tuple(ins), tuple(outs), model))
        done |= need
    return stages


# --- measuring exits --------------------------------------------------------------------------


def entropy(logits: np.ndarray) -> np.ndarray:
    """BranchyNet's confidence measure: entropy (nats) of softmax(logits) over the last axis.

    >>> float(entropy(np.zeros((1, 4)))[0]) == float(np.log(4))
    True
    """
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    p = np.exp(z)
    p /= p.sum(axis=-1, keepdims=True)
    logp = np.log(np.where(p > 0, p, 1.0))  # 0 * log 0 = 0
    return np.asarray(-(p * logp).sum(axis=-1))


# --- training and export (torch, imported here only) ----------------------------------------


def train_multi_exit(
    module: Any,
    x: np.ndarray,
    y: np.ndarray,
    *,
    weights: Sequence[float],
    epochs: int,
    lr: float = 3e-3,
    weight_decay: float = 1e-4,
    batch: int = 32,
    seed: int = 0,
) -> Any:
    """Train every exit jointly on the weighted sum of their cross-entropy losses
    (BranchyNet). `module(x)` returns one logits tensor per exit, in the order of `weights`."""
    import torch

    optimizer = torch.optim.Adam(module.parameters(), lr=lr, weight_decay=weight_decay)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y).long()
    generator = torch.Generator().manual_seed(seed)
    module.train()
    for _ in range(epochs):
        for idx in torch.randperm(len(xt), generator=generator).split(batch):
            optimizer.zero_grad()
            outs = module(xt[idx])
            if len(outs) != len(weights):
                raise ValueError(
                    f"the model returns {len(outs)} exits, {len(weights)} weights given"
                )
            terms = [
                w * torch.nn.functional.cross_entropy(o, yt[idx])
                for w, o in zip(weights, outs, strict=True)
            ]
            loss = terms[0]
            for term in terms[1:]:  # summed in order, as sum() would: reproducible weights
                loss = loss + term
            loss.backward()
            optimizer.step()
    return module.eval()


def export_multi_exit(
    module: Any,
    args: tuple,
    path: str | Path,
    *,
    input_names: Sequence[str],
    output_names: Sequence[str],
    exits: Sequence[str],
) -> float:
    """Export a multi-exit torch model to one ONNX file (dynamo exporter, symbolic batch), every
    exit an output, the exits declared in its metadata; returns max |torch - ORT| on `args`."""
    import onnxruntime as ort
    import torch

    from advisor.graph.io import quiet_export

    path = Path(path)
    batch = torch.export.Dim("batch", min=1, max=4096)
    proto = quiet_export(
        module,
        args,
        input_names=list(input_names),
        output_names=list(output_names),
        dynamic_shapes={n: {0: batch} for n in input_names},
    )
    proto.graph.name = path.stem
    for node in proto.graph.node:  # stack traces hold this machine's paths: not reproducible
        keep = [p for p in node.metadata_props if p.key != "pkg.torch.onnx.stack_trace"]
        del node.metadata_props[:]
        node.metadata_props.extend(keep)
    set_exit_metadata(proto, exits)
    onnx.checker.check_model(proto)
    onnx.save_model(proto, path)
    with torch.no_grad():
        expected = [o.numpy() for o in module(*args)]
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = sess.run(
        list(output_names), {n: a.numpy() for n, a in zip(input_names, args, strict=True)}
    )
    return max(float(np.abs(g - e).max()) for g, e in zip(got, expected, strict=True))
