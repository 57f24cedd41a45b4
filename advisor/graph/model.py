"""ModelGraph: an ONNX model with concrete shapes, per-node costs and its valid cuts.

`build_graph` turns a checked, shape-inferred ModelProto into the per-node view every later
stage reads; `advisor.graph.load.load_model` gets any source there (reading in
`advisor.graph.io`, checks and repairs in `advisor.graph.repair`).
"""

from __future__ import annotations

import ast
import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import onnx

from advisor.errors import ModelError
from advisor.graph.flops import count_node
from advisor.graph.opclass import OpClass, op_class

if TYPE_CHECKING:
    from advisor.graph.cuts import Cut

__all__ = [
    "ModelGraph",
    "NodeInfo",
    "TensorSpec",
    "build_graph",
    "layer_name",
    "tensor_specs",
]

# itemsizes of ONNX types numpy does not name (bfloat16, float8*, int4 ...)
_ODD_ITEMSIZE = {"bfloat16": 2, "float8": 1, "int4": 1, "uint4": 1, "float4": 1}


@dataclass(frozen=True)
class TensorSpec:
    """A tensor's name, concrete shape and numpy dtype name."""

    name: str
    shape: tuple[int, ...]
    dtype: str

    @property
    def nbytes(self) -> int:
        try:
            itemsize = np.dtype(self.dtype).itemsize
        except TypeError:
            itemsize = next((v for k, v in _ODD_ITEMSIZE.items() if self.dtype.startswith(k)), 1)
        return math.prod(self.shape) * itemsize


@dataclass(frozen=True)
class NodeInfo:
    """One node in topological order with its cost."""

    name: str
    op_type: str
    layer: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    macs: int
    flops: int
    param_bytes: int
    input_bytes: int
    output_bytes: int
    op_class: OpClass = "other"  # advisor.graph.opclass: which measured rate applies


@dataclass(frozen=True, eq=False)
class ModelGraph:
    """A loaded model: the ONNX proto plus everything the advisor reads from it."""

    model: onnx.ModelProto
    source: str
    name: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    nodes: tuple[NodeInfo, ...]
    notices: tuple[str, ...] = ()
    #: initializer names (weights); every other tensor is an activation or graph input
    initializers: frozenset[str] = frozenset()
    #: inputs whose first dimension was symbolic (batch-like) in the source model
    symbolic_batch: tuple[str, ...] = ()
    _tensors: Mapping[str, TensorSpec] = field(default_factory=dict, repr=False)
    #: the digest, once computed (`digest`); a `replace` with a new model passes None
    _digest: str | None = field(default=None, repr=False)
    #: the model's bytes as `load_model` serialized them (to compact the proto), kept until
    #: `release_bytes`; a `replace` with a new model passes None
    _bytes: bytes | None = field(default=None, repr=False)

    @property
    def digest(self) -> str:
        """sha256 of the model's bytes (as loaded and repaired), computed on first use: a
        graph read only to predict a plan's quantized model never needs it, and on a
        ResNet-50-class model it costs about 0.3 s (serializing, then hashing)."""
        digest = self._digest
        if digest is None:
            data = self._bytes if self._bytes is not None else self.model.SerializeToString()
            digest = hashlib.sha256(data).hexdigest()
            object.__setattr__(self, "_digest", digest)  # frozen: set once, as cuts() does
        return digest

    def serialized(self) -> bytes | None:
        """The model's bytes while the loader's copy is kept (None after `release_bytes`, or
        when it could not serialize). Its first readers (the ORT check, the digest, the FP32
        reference and the profile's sessions) each serialized it again before: on a
        ResNet-50-class model ~0.15 s a time."""
        return self._bytes

    def release_model(self) -> None:
        """Drop the ModelProto, and with it a copy of every weight, keeping the per-node
        view (nodes, tensors, digest): for a graph read once, after its last reader (a plain
        advise() once every plan's artifacts are written: on a ResNet-50-class model 100 MB
        less while every plan's sessions are loaded). `model` is an empty ModelProto
        afterwards (which ONNX Runtime refuses to load)."""
        self.release_bytes()
        object.__setattr__(self, "model", onnx.ModelProto())  # frozen: the view stays

    def release_bytes(self) -> None:
        """Drop the loader's bytes (once the readers above are done: they are a second copy
        of the weights)."""
        object.__setattr__(self, "_bytes", None)  # frozen: a cache, as `digest`

    def tensor(self, name: str) -> TensorSpec:
        try:
            return self._tensors[name]
        except KeyError:
            raise ModelError(f"model {self.name!r} has no tensor named {name!r}") from None

    def node(self, name: str) -> NodeInfo:
        for n in self.nodes:
            if n.name == name:
                return n
        raise ModelError(f"model {self.name!r} has no node named {name!r}")

    def cuts(self) -> list[Cut]:
        """Every prefix cut (advisor.graph.cuts.enumerate_cuts), computed once per graph."""
        cached = self.__dict__.get("_cuts")
        if cached is None:
            from advisor.graph.cuts import enumerate_cuts

            cached = tuple(enumerate_cuts(self))
            object.__setattr__(self, "_cuts", cached)  # a cache, not state: the graph is frozen
        return list(cached)

    @property
    def total_flops(self) -> int:
        return sum(n.flops for n in self.nodes)

    @property
    def total_macs(self) -> int:
        return sum(n.macs for n in self.nodes)

    @property
    def precision(self) -> Literal["fp32", "fp16"]:
        """'fp16' when most float weight bytes are float16 (a half-precision export), else
        'fp32': the precision the model computes in as given."""
        by: dict[str, int] = {}
        for name in self.initializers:
            spec = self._tensors[name]
            by[spec.dtype] = by.get(spec.dtype, 0) + spec.nbytes
        return "fp16" if by.get("float16", 0) > by.get("float32", 0) else "fp32"

    @property
    def total_params_bytes(self) -> int:
        return sum(self._tensors[name].nbytes for name in self.initializers)

    def save(self, path: str | Path) -> Path:
        """Write the model as one .onnx file (external data only past protobuf's 2 GB)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        big = self.model.ByteSize() > 2_000_000_000
        onnx.save_model(self.model, path, save_as_external_data=big)
        return path


def _dtype_name(elem_type: int) -> str:
    try:
        return np.dtype(onnx.helper.tensor_dtype_to_np_dtype(elem_type)).name
    except (KeyError, TypeError, ValueError):
        return onnx.TensorProto.DataType.Name(elem_type).lower()


def _spec(vi: onnx.ValueInfoProto) -> TensorSpec | None:
    t = vi.type.tensor_type
    if not vi.type.HasField("tensor_type") or not t.HasField("shape"):
        return None
    dims = tuple(d.dim_value for d in t.shape.dim)
    if any(d.WhichOneof("value") != "dim_value" for d in t.shape.dim):
        return None
    return TensorSpec(vi.name, dims, _dtype_name(t.elem_type))


def tensor_specs(model: onnx.ModelProto) -> dict[str, TensorSpec]:
    """Concrete specs of every top-level tensor whose shape is known."""
    g = model.graph
    specs: dict[str, TensorSpec] = {}
    for vi in [*g.value_info, *g.input, *g.output]:
        spec = _spec(vi)
        if spec is not None:
            specs[vi.name] = spec
    for init in g.initializer:
        specs[init.name] = TensorSpec(init.name, tuple(init.dims), _dtype_name(init.data_type))
    return specs


def layer_name(node: onnx.NodeProto) -> str:
    """Readable layer name: the torch module path the exporter recorded, else the node name."""
    meta = {p.key: p.value for p in node.metadata_props}
    if "pkg.onnxscript.rewriter.rule_name" in meta and len(node.input) > 1:
        # a fused node (Conv+BatchNorm) keeps the metadata of the op fused into it; its
        # weight still carries the module path it came from ('layer1.0.conv1.weight')
        weight = node.input[1]
        if weight.endswith(".weight"):
            return weight.removesuffix(".weight")
    scopes_text = meta.get("pkg.torch.onnx.name_scopes")
    if scopes_text:
        try:
            scopes = [s for s in ast.literal_eval(scopes_text) if isinstance(s, str)]
        except (ValueError, SyntaxError):
            scopes = []
        # ['', 'fc', 'fc.1', 'linear']: module paths, then the traced op's own name
        modules = [s for s in scopes[:-1] if s]
        if modules:
            return modules[-1]
        if scopes and scopes[-1]:
            return scopes[-1]
    namespace = meta.get("namespace")  # ': M/fc: Sequential/fc.1: Linear/linear'
    if namespace:
        parts = [p.split(":")[0].strip() for p in namespace.split("/")[1:]]
        parts = [p for p in parts if p]
        if len(parts) > 1:
            return parts[-2]
    return node.name


def _attrs(node: onnx.NodeProto) -> dict[str, Any]:
    simple = {
        onnx.AttributeProto.INT,
        onnx.AttributeProto.INTS,
        onnx.AttributeProto.FLOAT,
        onnx.AttributeProto.FLOATS,
        onnx.AttributeProto.STRING,
    }
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute if a.type in simple}


def build_graph(
    model: onnx.ModelProto,
    source: str,
    notices: tuple[str, ...],
    batch: tuple[str, ...],
    data: bytes | None = None,
) -> ModelGraph:
    """The per-node view of a shape-inferred model; `data`: its bytes, when the caller has
    them (`ModelGraph.serialized`)."""
    specs = tensor_specs(model)
    inits = frozenset(i.name for i in model.graph.initializer)

    def size(name: str) -> int:
        spec = specs.get(name)
        return spec.nbytes if spec is not None else 0

    nodes = []
    for node in model.graph.node:
        ins = tuple(i for i in node.input if i)
        cost = count_node(
            node.op_type,
            _attrs(node),
            [specs[i].shape if i in specs else None for i in node.input],
            [specs[o].shape if o in specs else None for o in node.output if o],
        )
        nodes.append(
            NodeInfo(
                name=node.name,
                op_type=node.op_type,
                layer=layer_name(node),
                inputs=ins,
                outputs=tuple(o for o in node.output if o),
                macs=cost.macs,
                flops=cost.flops,
                param_bytes=sum(size(i) for i in ins if i in inits),
                input_bytes=sum(size(i) for i in ins if i not in inits),
                output_bytes=sum(size(o) for o in node.output if o),
                op_class=op_class(
                    node.op_type,
                    _attrs(node),
                    [specs[i].shape if i in specs else None for i in node.input],
                ),
            )
        )
    graph_inputs = [i for i in model.graph.input if i.name not in inits]
    missing = [vi.name for vi in [*graph_inputs, *model.graph.output] if vi.name not in specs]
    if missing:
        raise ModelError(f"could not determine the shape of {', '.join(missing)}")
    kind, _, rest = source.partition(":")
    name = rest if kind in ("zoo", "torch", "memory") and rest else Path(source).stem
    return ModelGraph(
        model=model,
        source=source,
        name=name,
        inputs=tuple(specs[i.name] for i in graph_inputs),
        outputs=tuple(specs[o.name] for o in model.graph.output),
        nodes=tuple(nodes),
        notices=notices,
        initializers=inits,
        symbolic_batch=batch,
        _tensors=specs,
        _bytes=data,
    )
