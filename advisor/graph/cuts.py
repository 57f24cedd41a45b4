"""Cuts of a model graph: where it can be split between two machines, and the split itself.

A cut is a prefix of the topological node order: head = nodes[:position], tail = the rest.
Every tensor the tail reads that the head produced (or that is a graph input) crosses the
cut; in a DAG (skip connections, branches) several tensors cross at once. Nodes that own
subgraphs (If, Loop, Scan) are atomic, and outer-scope tensors their subgraphs read count as
inputs of the node. Splitting uses onnx.utils.Extractor, widened to see those reads.

>>> from advisor.graph.load import load_model
>>> g = load_model("zoo:digits_cnn")
>>> cut = g.cuts()[0]
>>> head, tail, crossing = split_model(g, cut.head)
>>> crossing == cut.tensors
True
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

import numpy as np
import onnx
import onnx.utils
import onnx.version_converter

from advisor.errors import ModelError
from advisor.graph.shell import check_extracted

if TYPE_CHECKING:
    from advisor.graph.model import ModelGraph

__all__ = ["crossing_tensors", "enumerate_cuts", "run_split", "split_model"]


@dataclass(frozen=True)
class Cut:
    """A split of the node order: head = nodes[:position], the rest is the tail.

    `order` is the graph's node order, shared by every cut of a graph; the head set is built
    on first use, so enumerating all N cuts costs O(N), not O(N^2), memory and time.
    """

    id: str
    position: int
    tensors: tuple[str, ...]
    bytes: int
    multi: bool
    order: tuple[str, ...] = field(repr=False, compare=False, default=())

    @cached_property
    def head(self) -> frozenset[str]:
        return frozenset(self.order[: self.position])


def _subgraph_reads(graph: onnx.GraphProto) -> set[str]:
    """Names a subgraph reads from its enclosing scopes (not defined inside it)."""
    defined = {i.name for i in graph.input} | {i.name for i in graph.initializer}
    reads: set[str] = set()
    for node in graph.node:
        reads.update(i for i in node.input if i and i not in defined)
        for attr in node.attribute:
            for sub in [attr.g] if attr.HasField("g") else list(attr.graphs):
                reads.update(r for r in _subgraph_reads(sub) if r not in defined)
        defined.update(node.output)
    return reads


def node_reads(node: onnx.NodeProto) -> list[str]:
    """Explicit inputs plus outer-scope tensors read by the node's subgraphs, in order."""
    reads = [i for i in node.input if i]
    for attr in node.attribute:
        for sub in [attr.g] if attr.HasField("g") else list(attr.graphs):
            reads.extend(sorted(r for r in _subgraph_reads(sub) if r not in reads))
    return reads


@dataclass(frozen=True)
class _Index:
    """Lookup maps built once per graph (shaped like onnx.utils.Extractor's)."""

    order: tuple[str, ...]  # node names, topological
    position: Mapping[str, int]  # node name -> index
    reads: tuple[tuple[str, ...], ...]  # per node: tensors it reads (initializers excluded)
    producer: Mapping[str, int]  # tensor -> index of producing node; graph inputs -> -1
    inputs: tuple[str, ...]  # graph inputs (non-initializer)
    outputs: tuple[str, ...]


def _index(graph: ModelGraph) -> _Index:
    inits = graph.initializers
    inputs = tuple(s.name for s in graph.inputs)
    producer: dict[str, int] = {name: -1 for name in inputs}
    reads = []
    for i, node in enumerate(graph.model.graph.node):
        reads.append(tuple(t for t in node_reads(node) if t not in inits))
        for out in node.output:
            if out:
                producer[out] = i
    order = tuple(n.name for n in graph.model.graph.node)
    return _Index(
        order=order,
        position={name: i for i, name in enumerate(order)},
        reads=tuple(reads),
        producer=producer,
        inputs=inputs,
        outputs=tuple(o.name for o in graph.model.graph.output),
    )


def _sorted(tensors: Collection[str], idx: _Index) -> tuple[str, ...]:
    """Graph inputs first (input order), then by producing node and output slot."""
    input_rank = {name: i for i, name in enumerate(idx.inputs)}
    return tuple(sorted(tensors, key=lambda t: (idx.producer.get(t, -1), input_rank.get(t, 0), t)))


def enumerate_cuts(graph: ModelGraph) -> list[Cut]:
    """Every prefix cut with a non-empty head and tail, in topological order.

    Keeping everything on one side is not a cut; planners treat it as the baseline.
    """
    idx = _index(graph)
    n = len(idx.order)
    last_read: dict[str, int] = {}
    for i, reads in enumerate(idx.reads):
        for t in reads:
            last_read[t] = max(last_read.get(t, -1), i)
    outputs_of: dict[int, list[str]] = {}
    for t, p in idx.producer.items():
        outputs_of.setdefault(p, []).append(t)
    # sweep: a tensor is live (crosses) from its producer up to its last reader
    live = {t for t in outputs_of.get(-1, []) if t in last_read}
    cuts = []
    order = tuple(idx.order)
    for position in range(1, n):
        live.update(t for t in outputs_of.get(position - 1, []) if t in last_read)
        live = {t for t in live if last_read[t] >= position}
        tensors = _sorted(live, idx)
        cuts.append(
            Cut(
                id=f"after:{idx.order[position - 1]}",
                position=position,
                tensors=tensors,
                bytes=sum(graph.tensor(t).nbytes for t in tensors),
                multi=len(tensors) > 1,
                order=order,
            )
        )
    return cuts


def _check_head(graph: ModelGraph, head: Collection[str], idx: _Index) -> frozenset[str]:
    head = frozenset(head)
    unknown = sorted(head - set(idx.order))
    if unknown:
        raise ModelError(f"cut names nodes not in model {graph.name!r}: {', '.join(unknown[:5])}")
    if not head or len(head) == len(idx.order):
        raise ModelError("a cut needs at least one node on each side")
    for name in head:
        for t in idx.reads[idx.position[name]]:
            p = idx.producer.get(t, -1)
            if p >= 0 and idx.order[p] not in head:
                raise ModelError(
                    f"not a valid cut: head node {name!r} reads {t!r} from tail node "
                    f"{idx.order[p]!r}; the head must contain all its predecessors"
                )
    return head


def _crossing(head: frozenset[str], idx: _Index) -> tuple[str, ...]:
    crossing: set[str] = set()
    for i, name in enumerate(idx.order):
        if name in head:
            continue
        for t in idx.reads[i]:
            p = idx.producer.get(t, -1)
            if p < 0 or idx.order[p] in head:
                crossing.add(t)
    return _sorted(crossing, idx)


def crossing_tensors(graph: ModelGraph, head: Collection[str]) -> tuple[str, ...]:
    """Tensors the tail reads from the head or from the graph inputs, for any closed head."""
    idx = _index(graph)
    return _crossing(_check_head(graph, head, idx), idx)


def returned_outputs(graph: ModelGraph, device_nodes: Collection[str]) -> tuple[str, ...]:
    """Graph outputs the server sends back when `device_nodes` run on the device: those
    computed by the other nodes. Outputs the device computes itself, and graph inputs echoed
    as outputs, never travel."""
    idx = _index(graph)
    on_device = {idx.position[n] for n in device_nodes}
    return tuple(
        o for o in idx.outputs if idx.producer.get(o, -1) >= 0 and idx.producer[o] not in on_device
    )


def returned_bytes_by_position(graph: ModelGraph) -> list[int]:
    """For each prefix position p (0..N, the first p nodes on the device): bytes of the graph
    outputs computed by nodes p.. (what the server returns)."""
    idx = _index(graph)
    n = len(idx.order)
    made_at = [0] * (n + 1)
    for o in idx.outputs:
        at = idx.producer.get(o, -1)
        if at >= 0:
            made_at[at] += graph.tensor(o).nbytes
    out = [0] * (n + 1)
    for p in range(n - 1, -1, -1):
        out[p] = out[p + 1] + made_at[p]
    return out


def int8_boundary(
    graph: ModelGraph, head: onnx.ModelProto, tail: onnx.ModelProto, tensors: Sequence[str]
) -> tuple[onnx.ModelProto, onnx.ModelProto, tuple[str, ...]]:
    """(head, tail, tensors sent) with the float boundary tensors sent as 8 bits (JALAD).

    The head ends in DynamicQuantizeLinear for each float tensor it hands over (graph inputs
    the tail reads are taken in and quantized too); the tail starts with DequantizeLinear.
    So the artifacts themselves carry the encoding: what a deployment or a split run sends
    is `<t>.q` (uint8), `<t>.scale` and `<t>.zero_point` (one float and one uint8 each).
    Tensors that are not float (token ids, masks) travel as they are.
    """
    head, tail = _copy(head), _copy(tail)
    for m in (head, tail):
        _at_least(m, 13)  # DynamicQuantizeLinear is opset 11, scalar-scale DequantizeLinear 13
    floats = [t for t in tensors if graph.tensor(t).dtype in ("float32", "float16", "float64")]
    if not floats:
        return head, tail, tuple(tensors)
    head_in = {i.name for i in head.graph.input}
    graph_outputs = {o.name for o in graph.model.graph.output}
    by_name = {vi.name: vi for vi in graph.model.graph.input}
    sent: list[str] = []
    for t in tensors:
        if t not in floats:
            sent.append(t)
            continue
        q, scale, zp = f"{t}.q", f"{t}.scale", f"{t}.zero_point"
        if t in by_name and t not in head_in:  # a graph input the tail reads: the head takes it
            head.graph.input.append(by_name[t])
            head_in.add(t)
        src = t
        if graph.tensor(t).dtype != "float32":  # DynamicQuantizeLinear takes float32
            src = f"{t}.f32"
            head.graph.node.append(
                onnx.helper.make_node(
                    "Cast", [t], [src], f"{t}/boundary_cast", to=onnx.TensorProto.FLOAT
                )
            )
        head.graph.node.append(
            onnx.helper.make_node("DynamicQuantizeLinear", [src], [q, scale, zp], f"{t}/quantize")
        )
        keep = [o for o in head.graph.output if o.name != t or t in graph_outputs]
        del head.graph.output[:]
        head.graph.output.extend(keep)
        shape = list(graph.tensor(t).shape)
        head.graph.output.extend([
            onnx.helper.make_tensor_value_info(q, onnx.TensorProto.UINT8, shape),
            onnx.helper.make_tensor_value_info(scale, onnx.TensorProto.FLOAT, []),
            onnx.helper.make_tensor_value_info(zp, onnx.TensorProto.UINT8, []),
        ])  # fmt: skip
        inputs = [i for i in tail.graph.input if i.name != t]
        del tail.graph.input[:]
        tail.graph.input.extend(inputs)
        tail.graph.input.extend(list(head.graph.output)[-3:])
        restore = [
            onnx.helper.make_node("DequantizeLinear", [q, scale, zp], [src], f"{t}/dequantize")
        ]
        if src != t:
            restore.append(
                onnx.helper.make_node(
                    "Cast", [src], [t], f"{t}/boundary_uncast",
                    to=onnx.helper.np_dtype_to_tensor_dtype(np.dtype(graph.tensor(t).dtype)),
                )
            )  # fmt: skip
        nodes = restore + list(tail.graph.node)
        del tail.graph.node[:]
        tail.graph.node.extend(nodes)
        sent += [q, scale, zp]
    for m in (head, tail):
        check_extracted(m)
    return head, tail, tuple(sent)


def _copy(model: onnx.ModelProto) -> onnx.ModelProto:
    out = onnx.ModelProto()
    out.CopyFrom(model)
    return out


def _at_least(model: onnx.ModelProto, opset: int) -> None:
    for o in model.opset_import:
        if o.domain in ("", "ai.onnx") and o.version < opset:
            converted = onnx.version_converter.convert_version(model, opset)
            model.CopyFrom(converted)
            return


class _ScopedExtractor(onnx.utils.Extractor):
    """onnx.utils.Extractor that also follows outer-scope reads of If/Loop/Scan subgraphs.

    Extractor's search and tensor collection look only at explicit node inputs; a subgraph
    may read outer tensors and initializers, so those two private steps are widened here.
    """

    def _dfs_search_reachable_nodes(
        self, node_output_name: str, graph_input_names: set[str], reachable: set[int]
    ) -> None:
        stack = [node_output_name]
        while stack:
            name = stack.pop()
            if name in graph_input_names or name not in self.outmap:
                continue
            index = self.outmap[name]
            if index not in reachable:
                reachable.add(index)
                stack.extend(node_reads(self.graph.node[index]))

    def _collect_reachable_tensors(
        self, nodes: list[onnx.NodeProto]
    ) -> tuple[list[onnx.TensorProto], list[onnx.ValueInfoProto]]:
        names: set[str] = set()
        for node in nodes:
            names.update(node_reads(node))
            names.update(node.output)
        initializer = [t for n, t in self.initializers.items() if n in names]
        value_info = [v for n, v in self.value_infos.items() if n in names]
        return initializer, value_info


def split_model(
    graph: ModelGraph, head: Collection[str]
) -> tuple[onnx.ModelProto, onnx.ModelProto, tuple[str, ...]]:
    """(head model, tail model, crossing tensors) for a head closed under predecessors.

    The head outputs the crossing tensors it produces plus any graph outputs it computes;
    the tail reads every crossing tensor (graph inputs it needs included).
    """
    idx = _index(graph)
    head = _check_head(graph, head, idx)
    crossing = _crossing(head, idx)
    in_head = {i for i, name in enumerate(idx.order) if name in head}
    head_inputs = [t for t in idx.inputs if any(t in idx.reads[i] for i in in_head)]
    head_outputs = [t for t in crossing if idx.producer.get(t, -1) >= 0]
    head_outputs += [o for o in idx.outputs if idx.producer.get(o, -1) in in_head]
    head_outputs = list(dict.fromkeys(head_outputs))
    tail_outputs = [o for o in idx.outputs if idx.producer.get(o, -1) not in in_head]
    if not tail_outputs:
        raise ModelError("the head already computes every graph output; nothing is left to split")
    extractor = _ScopedExtractor(graph.model)
    parts = []
    for part, ins, outs in (
        ("head", head_inputs, head_outputs),
        ("tail", list(crossing), tail_outputs),
    ):
        model = extractor.extract_model(ins, outs)
        model.graph.name = f"{graph.name}.{part}"
        try:
            check_extracted(model)
        except onnx.checker.ValidationError as exc:
            first = str(exc).strip().splitlines()[0]
            raise ModelError(f"the extracted {part} model is invalid: {first}") from None
        parts.append(model)
    return parts[0], parts[1], crossing


def _session(model: Any, threads: int = 1) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 4  # errors raise; their log line would only repeat them
    data = model.SerializeToString() if isinstance(model, onnx.ModelProto) else model
    return ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])


def run_split(
    head: onnx.ModelProto, tail: onnx.ModelProto, inputs: Mapping[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """Run head then tail in ONNX Runtime (CPU); return every output of both."""
    head_sess, tail_sess = _session(head), _session(tail)
    missing = [i.name for i in head_sess.get_inputs() if i.name not in inputs]
    if missing:
        raise ModelError(f"inputs missing for the head model: {', '.join(missing)}")
    head_names = [o.name for o in head_sess.get_outputs()]
    head_values = head_sess.run(
        head_names, {i.name: inputs[i.name] for i in head_sess.get_inputs()}
    )
    head_out = dict(zip(head_names, head_values, strict=True))
    env = {**inputs, **head_out}
    missing = [i.name for i in tail_sess.get_inputs() if i.name not in env]
    if missing:
        raise ModelError(f"inputs missing for the tail model: {', '.join(missing)}")
    tail_names = [o.name for o in tail_sess.get_outputs()]
    tail_values = tail_sess.run(tail_names, {i.name: env[i.name] for i in tail_sess.get_inputs()})
    return {**head_out, **dict(zip(tail_names, tail_values, strict=True))}
