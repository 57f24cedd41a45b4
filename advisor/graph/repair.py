"""Reading and checking models for `advisor.graph.load.load_model`.

Steps, in the order `load_model` runs them: read the source (file with checked external
data, zoo id, ModelProto, torch export) -> check ops and structure (onnx.checker) -> name
nodes -> make input shapes concrete -> infer shapes (onnx.shape_inference) and confirm that
ONNX Runtime can load the model, filling any shape inference could not reach by one run.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import numpy as np
import onnx
import onnx.external_data_helper
import onnx.shape_inference

from advisor.errors import ModelError, ShapeError, ort_message
from advisor.graph.input_shapes import fix_input_shapes
from advisor.graph.shell import weightless

__all__ = [
    "check_structure", "name_nodes", "fold_constants", "weights_out_of_inputs",
    "subnormal_notices", "subgraph_notices", "fix_input_shapes", "infer_shapes",
]  # fmt: skip

_STANDARD_DOMAINS = {"", "ai.onnx", "ai.onnx.ml", "ai.onnx.preview.training"}
#: above this size we skip the ONNX Runtime load check (protobuf cannot serialize > 2 GB)
_ORT_CHECK_MAX_BYTES = 1_500_000_000


# --- checking -----------------------------------------------------------------------------


def _all_nodes(graph: onnx.GraphProto) -> Iterator[onnx.NodeProto]:
    for node in graph.node:
        yield node
        for attr in node.attribute:
            if attr.HasField("g"):
                yield from _all_nodes(attr.g)
            for sub in attr.graphs:
                yield from _all_nodes(sub)


def _sort_graph(graph: onnx.GraphProto, outer: set[str]) -> bool:
    """Reorder `graph.node` topologically in place (stable: among nodes that are ready, the
    file's order first); False when it was sorted already or has a cycle (which the checker
    then reports)."""
    import networkx as nx

    known = outer | {i.name for i in graph.input} | {i.name for i in graph.initializer} | {""}
    scope = known | {o for n in graph.node for o in n.output}
    for node in graph.node:  # subgraphs too: they see every name of this scope
        for attr in node.attribute:
            for sub in [attr.g] if attr.type == onnx.AttributeProto.GRAPH else list(attr.graphs):
                _sort_graph(sub, scope)
    nodes = list(graph.node)
    ready = set(known)
    in_order = True
    for n in nodes:
        if not set(n.input) <= ready:
            in_order = False
            break
        ready.update(n.output)
    if in_order:
        return False
    producer = {o: i for i, n in enumerate(nodes) for o in n.output}
    dag = nx.DiGraph()
    dag.add_nodes_from(range(len(nodes)))
    dag.add_edges_from(
        (producer[x], i) for i, n in enumerate(nodes) for x in n.input if x in producer
    )
    try:
        order = list(nx.lexicographical_topological_sort(dag))
    except nx.NetworkXUnfeasible:
        return False  # a cycle: onnx.checker says where
    del graph.node[:]
    graph.node.extend(nodes[i] for i in order)
    return True


def sort_nodes(model: onnx.ModelProto) -> list[str]:
    """Put the nodes in topological order when a converter wrote them out of it (ONNX
    Runtime's float16 converter appends its input Casts last, for one), as ONNX Runtime
    itself does when it loads such a file; a notice says so."""
    if not _sort_graph(model.graph, set()):
        return []
    return [
        "the graph's nodes were not in topological order (as some converters write them); "
        "they were sorted before anything else read them"
    ]


def check_structure(model: onnx.ModelProto) -> None:
    """Unknown standard-domain ops by name, then onnx.checker for everything else."""
    functions = {(f.domain, f.name) for f in model.functions}
    for node in _all_nodes(model.graph):
        domain = node.domain or ""
        if (domain, node.op_type) in functions or domain not in _STANDARD_DOMAINS:
            continue  # other domains are checked by loading the model in ONNX Runtime
        lookup = "" if domain == "ai.onnx" else domain
        if not onnx.defs.has(node.op_type, lookup):
            raise ModelError(
                f"unknown operator {node.op_type!r} (domain {domain or 'ai.onnx'!r}) in node "
                f"{node.name or '(unnamed)'!r}: ONNX defines no such op; re-export the model "
                "with standard ops"
            )
    if not model.graph.node:
        raise ModelError("the model's graph has no nodes: there is nothing to run or split")
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as exc:
        first = " ".join(str(exc).split())[:300]
        raise ModelError(f"not a valid ONNX model: {first}; re-export it") from None


# ops whose output is not a function of their inputs: never folded
_NONDETERMINISTIC = {
    "RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "Multinomial",
    "Bernoulli",
}  # fmt: skip


def _weight_only_nodes(g: onnx.GraphProto) -> list[onnx.NodeProto]:
    """Top-level nodes whose inputs are all weights (or outputs of such nodes): deterministic,
    standard-domain and without subgraphs, so they can be evaluated once at load."""
    known = {i.name for i in g.initializer}
    folded: list[onnx.NodeProto] = []
    for node in g.node:
        reads = [t for t in node.input if t]
        subgraph = any(
            a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS)
            for a in node.attribute
        )
        if (
            subgraph
            or node.op_type in _NONDETERMINISTIC
            or (node.domain or "ai.onnx") not in _STANDARD_DOMAINS
            or not all(t in known for t in reads)
        ):
            continue
        folded.append(node)
        known.update(o for o in node.output if o)
    return folded


def fold_constants(model: onnx.ModelProto) -> list[str]:
    """Replace top-level nodes that read only weights (Constant nodes, Identity on a tied
    weight, Reshape of a weight, ...) by the weights they compute; return the notices.

    ONNX Runtime folds these at load anyway, so nothing changes in what runs. Without this,
    such a node would be a cut point: a "partition" could put `bias = Identity(weight)` alone
    on the device and send a weight over the link, and a tied weight read early and late in
    the model would cross every cut. Folded, each sub-model carries the weights it reads.

    Written here, not with onnxscript's optimizer: that pass also rewrites shape arithmetic
    and renames values, which would move cut points and layer names; this one touches only
    weight-only nodes and evaluates them with ONNX Runtime itself, so values are bit-exact.
    """
    import onnxruntime as ort
    from onnx import numpy_helper

    from advisor.graph.cuts import node_reads

    g = model.graph
    folded = _weight_only_nodes(g)
    if not folded:
        return []
    gone = {id(n) for n in folded}
    kept = [n for n in g.node if id(n) not in gone]
    made = {o for n in folded for o in n.output if o}
    graph_outputs = {o.name for o in g.output}
    needed = [
        t
        for t in dict.fromkeys(
            [t for n in kept for t in node_reads(n)] + [o.name for o in g.output]
        )
        if t in made
    ]
    if not needed:
        return []
    inits = {i.name: i for i in g.initializer}
    reads_of_folded = {t for n in folded for t in n.input if t}
    probe = onnx.helper.make_model(
        onnx.helper.make_graph(
            list(folded),
            "constants",
            [],
            [onnx.helper.make_empty_tensor_value_info(t) for t in needed],
            [inits[t] for t in reads_of_folded if t in inits],
        ),
        opset_imports=model.opset_import,
        ir_version=model.ir_version,
    )
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    opts.log_severity_level = 4
    try:
        sess = ort.InferenceSession(
            probe.SerializeToString(), opts, providers=["CPUExecutionProvider"]
        )
        values = sess.run(needed, {})
    except Exception:  # noqa: BLE001 - folding is an optimisation; the model loads without it
        return []
    still_read = {t for n in kept for t in node_reads(n)} | graph_outputs
    del g.node[:]
    g.node.extend(kept)
    unused = [i for i in g.initializer if i.name not in still_read and i.name in reads_of_folded]
    for init in unused:
        g.initializer.remove(init)
    listed = {i.name for i in g.input}
    for init in unused:  # legacy models list weights as graph inputs too
        if init.name in listed:
            g.input.remove(next(i for i in g.input if i.name == init.name))
    g.initializer.extend(
        numpy_helper.from_array(v, name=t) for t, v in zip(needed, values, strict=True)
    )
    return [
        f"folded {len(folded)} node(s) that read only weights ({_op_counts(folded)}) into "
        "weights, as ONNX Runtime does at load, so no cut sends a weight"
    ]


def _op_counts(nodes: list[onnx.NodeProto]) -> str:
    counts: dict[str, int] = {}
    for n in nodes:
        counts[n.op_type] = counts.get(n.op_type, 0) + 1
    return ", ".join(f"{k} × {v}" for k, v in sorted(counts.items(), key=lambda kv: -kv[1]))


def weights_out_of_inputs(model: onnx.ModelProto) -> list[str]:
    """Drop weights that a legacy export also lists as graph inputs (IR < 4 style); return the
    notices. Listed as inputs, ONNX Runtime treats them as overridable and will not fold or
    fuse them, so every session (ours and the quantizer's) ran slower than the model deployed
    and logged one warning per weight."""
    inits = {i.name for i in model.graph.initializer}
    listed = [vi for vi in model.graph.input if vi.name in inits]
    if not listed:
        return []
    for vi in listed:
        model.graph.input.remove(vi)
    model.ir_version = max(model.ir_version, 4)  # IR 3 required weights among the inputs
    return [
        f"{len(listed)} weight(s) were also listed as graph inputs (a legacy export); they are "
        "treated as weights, as a deployed model uses them"
    ]


def subnormal_notices(model: onnx.ModelProto) -> list[str]:
    """A notice when float weights hold subnormal values (0 < |w| < the smallest normal).

    They change no prediction, but x86 CPUs without flush-to-zero compute with them through
    slow microcode assists: the zoo's digits CNN, trained with weight decay, carried 68,669 of
    them and ran 25x slower in FP32 on one Xeon (2.8 ms vs 0.11 ms with them zeroed), which
    made every compressed plan look like a huge win.

    >>> w = onnx.numpy_helper.from_array(np.array([1e-40, 0.5], np.float32), "w")
    >>> m = onnx.helper.make_model(onnx.helper.make_graph([], "g", [], [], [w]))
    >>> subnormal_notices(m)[0].split(";")[0]
    '1 weight value(s) in 1 tensor(s) (w) are subnormal'
    """
    from onnx import numpy_helper

    count, names = 0, []
    for init in model.graph.initializer:
        if init.data_type != onnx.TensorProto.FLOAT:
            continue  # fp16 weights below fp16's normal range are normal once cast to fp32
        if onnx.external_data_helper.uses_external_data(init):
            continue  # not loaded in memory: nothing to read here
        a = numpy_helper.to_array(init)
        n = int(np.count_nonzero((a != 0) & (np.abs(a) < np.finfo(a.dtype).tiny)))
        if n:
            count += n
            names.append(init.name)
    if not count:
        return []
    shown = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
    return [
        f"{count:,} weight value(s) in {len(names)} tensor(s) ({shown}) are subnormal; x86 "
        "CPUs compute with subnormals through slow microcode assists, so this model's FP32 "
        "timings (here and on such targets) can be many times slower than with them zeroed, "
        "and compressed plans look faster than they would be. Zero them before export (torch: "
        "w[w.abs() < torch.finfo(w.dtype).tiny] = 0); predictions do not change"
    ]


def subgraph_notices(model: onnx.ModelProto) -> list[str]:
    """A notice when top-level nodes run subgraphs (If, Loop, Scan): how often a body runs is
    decided at run time, so FLOPs and the per-node profile cannot see inside it."""
    holders = [
        n
        for n in model.graph.node
        if any(
            a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for a in n.attribute
        )
    ]
    if not holders:
        return []
    names = ", ".join(f"{n.name} ({n.op_type})" for n in holders[:5])
    more = f" and {len(holders) - 5} more" if len(holders) > 5 else ""
    return [
        f"{len(holders)} node(s) run subgraphs: {names}{more}. Their bodies' work is not in the "
        "FLOP counts and their kernels are not attributed per node, so predictions for other "
        "targets under-count them; measured latencies on this host include them"
    ]


def name_nodes(model: onnx.ModelProto) -> None:
    """Give every top-level node a unique name ('<op>_<index>' for unnamed ones)."""
    seen: set[str] = set()
    for index, node in enumerate(model.graph.node):
        name = node.name or f"{node.op_type}_{index}"
        while name in seen:
            name = f"{name}_{index}"
        node.name = name
        seen.add(name)


# --- shapes and the ONNX Runtime check ---------------------------------------------------


def _concrete(vi: onnx.ValueInfoProto) -> bool:
    t = vi.type.tensor_type
    return (
        vi.type.HasField("tensor_type")
        and t.HasField("shape")
        and all(d.WhichOneof("value") == "dim_value" for d in t.shape.dim)
    )


def infer_shapes(model: onnx.ModelProto, load_check: bool = True) -> bool:
    """Concrete shapes for every tensor: onnx shape inference, then one ORT run for the rest.
    Without `load_check`, ONNX Runtime is used only when shapes are missing (for a model
    the caller loads in ORT anyway: a second session would add a copy of its weights).
    Whether ONNX Runtime loaded the model."""
    graph = model.graph
    stale = [vi for vi in graph.value_info if not _concrete(vi)]
    for vi in stale:
        graph.value_info.remove(vi)
    for out in graph.output:  # symbolic output dims are re-inferred from the concrete inputs
        if out.type.HasField("tensor_type") and not _concrete(out):
            out.type.tensor_type.ClearField("shape")
    shell = weightless(model)
    try:
        inferred = onnx.shape_inference.infer_shapes(
            shell or model, strict_mode=True, data_prop=True
        )
    except (onnx.shape_inference.InferenceError, onnx.checker.ValidationError) as exc:
        first = str(exc).strip().splitlines()[0]
        raise ShapeError(
            f"shape inference failed with these input shapes: {first}; check --input-shape"
        ) from None
    if shell is None:
        model.CopyFrom(inferred)
    else:  # what inference adds: the shapes of values and outputs
        del graph.value_info[:]
        graph.value_info.extend(inferred.graph.value_info)
        for out, got in zip(graph.output, inferred.graph.output, strict=True):
            out.CopyFrom(got)
    return _check_with_ort(model, load_check)


def _ort_errors() -> tuple[type[BaseException], ...]:
    from onnxruntime.capi import onnxruntime_pybind11_state as state

    names = ("Fail", "InvalidArgument", "NoSuchFile", "NoModel", "EngineError",
             "RuntimeException", "InvalidProtobuf", "ModelLoaded", "NotImplemented",
             "InvalidGraph", "EPFail")  # fmt: skip
    return tuple(getattr(state, n) for n in names if hasattr(state, n)) + (RuntimeError,)


_OP_PATTERNS = (
    re.compile(r"(?:[\w.]+:)?(?P<op>\w+)\([-\d]*\) is not a registered function/op"),
    re.compile(r"implementation for (?P<op>\w+)\(\d+\) node"),
    re.compile(r"No Op registered for (?P<op>\w+)"),
)


def _op_from_message(model: onnx.ModelProto, message: str) -> str | None:
    """'operator 'Frob' (domain 'com.example') in node 'f1'' from an ORT load error."""
    match = next((m for p in _OP_PATTERNS if (m := p.search(message))), None)
    if match is None:
        return None
    op = match.group("op")
    node = next((n for n in _all_nodes(model.graph) if n.op_type == op), None)
    domain = (node.domain if node is not None else "") or "ai.onnx"
    where = f" in node {node.name!r}" if node is not None and node.name else ""
    return f"operator {op!r} (domain {domain!r}){where}"


def _check_with_ort(model: onnx.ModelProto, load_check: bool = True) -> bool:
    """Create a CPU session (proves ORT knows every op); run once if shapes are missing.
    Without `load_check` and with no shape missing, nothing is done. Whether ORT loaded it."""
    from advisor.graph.model import tensor_specs

    specs = tensor_specs(model)
    outputs = {o.name for o in model.graph.output}
    missing = [o for n in model.graph.node for o in n.output if o and o not in specs]
    if (not missing and not load_check) or model.ByteSize() > _ORT_CHECK_MAX_BYTES:
        return False
    probe = model  # a copy only when outputs must be added (a copy of 100 MB takes ~0.1 s)
    if any(name not in outputs for name in missing):
        probe = onnx.ModelProto()
        probe.CopyFrom(model)
        for name in missing:
            if name not in outputs:
                probe.graph.output.append(onnx.ValueInfoProto(name=name))
    session = _ort_session(model, probe.SerializeToString())
    if not missing:
        return True
    from advisor.graph.inputs import feeds_for

    feeds = feeds_for(model, [specs[i.name] for i in session.get_inputs()], seed=0)
    try:
        values = session.run(missing, feeds)
    except _ort_errors() as exc:
        raise ModelError(
            "the model failed on sample inputs (run once to find the shapes that shape "
            f"inference could not): {ort_message(exc)}; check the input shapes (--input-shape: "
            "e.g. a sequence longer than the model's position table) or give real inputs "
            "with --data"
        ) from None
    by_name = {o.name: o for o in model.graph.output}
    for name, value in zip(missing, values, strict=True):
        value = np.asarray(value)
        vi = onnx.helper.make_tensor_value_info(
            name, onnx.helper.np_dtype_to_tensor_dtype(value.dtype), value.shape
        )
        if name in by_name:
            by_name[name].CopyFrom(vi)
        else:
            model.graph.value_info.append(vi)
    return True


def check_loads(model: onnx.ModelProto, data: bytes | None) -> None:
    """That ONNX Runtime loads the model (`data`: its bytes, when the caller has them; a
    model past protobuf's limit, or `_ORT_CHECK_MAX_BYTES`, is not checked here)."""
    if data is None and model.ByteSize() <= _ORT_CHECK_MAX_BYTES:
        data = model.SerializeToString()
    if data is not None and len(data) <= _ORT_CHECK_MAX_BYTES:
        _ort_session(model, data)


def _ort_session(model: onnx.ModelProto, data: bytes) -> Any:
    """A CPU session of `data` (the bytes of `model`, perhaps with outputs added) at
    ORT_DISABLE_ALL, one thread; an op ORT does not know is named in the ModelError."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    options.log_severity_level = 4  # errors raise; their log line would only repeat them
    try:
        return ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
    except _ort_errors() as exc:
        text = str(exc)
        op = _op_from_message(model, text)
        if op:
            raise ModelError(
                f"ONNX Runtime does not know {op}; replace it with standard ops or use an "
                "ONNX Runtime build that provides it"
            ) from None
        raise ModelError(f"ONNX Runtime cannot load the model: {ort_message(exc)}") from None
