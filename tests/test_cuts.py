"""advisor.graph.cuts: cut enumeration and head/tail extraction checked against the full model."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto
from onnx import helper as oh

from advisor.errors import ModelError
from advisor.graph.cuts import crossing_tensors, enumerate_cuts, run_split, split_model
from advisor.model import ModelGraph, load_model, sample_inputs


def _full(graph: ModelGraph, feeds: dict) -> dict[str, np.ndarray]:
    sess = ort.InferenceSession(graph.model.SerializeToString(), providers=["CPUExecutionProvider"])
    return dict(zip([o.name for o in sess.get_outputs()], sess.run(None, feeds), strict=True))


def _max_split_error(graph: ModelGraph, head, feeds=None) -> float:
    feeds = feeds or sample_inputs(graph, seed=1)
    head_model, tail_model, crossing = split_model(graph, head)
    for part in (head_model, tail_model):
        onnx.checker.check_model(part)
    assert [i.name for i in tail_model.graph.input] == list(crossing)
    joined = run_split(head_model, tail_model, feeds)
    full = _full(graph, feeds)
    return max(float(np.abs(joined[name] - full[name]).max()) for name in full)


def test_chain_cuts_are_single_tensor(chain_model):
    g = load_model(chain_model)
    cuts = enumerate_cuts(g)
    assert [c.position for c in cuts] == list(range(1, len(g.nodes)))
    assert [c.id for c in cuts][:2] == ["after:conv1", "after:relu1"]
    assert not any(c.multi for c in cuts)
    pool = next(c for c in cuts if c.id == "after:pool1")
    assert pool.tensors == ("p1",) and pool.bytes == 4 * 4 * 4 * 4
    assert pool.head == frozenset({"conv1", "relu1", "pool1"})
    assert g.cuts() == cuts


def test_residual_cuts_carry_the_skip(residual_model):
    g = load_model(residual_model)
    by_id = {c.id: c for c in g.cuts()}
    inside = ["after:block.conv1", "after:block.relu1", "after:block.conv2"]
    for cut_id in inside:
        cut = by_id[cut_id]
        assert cut.multi and cut.tensors[0] == "s_act" and len(cut.tensors) == 2
        assert cut.bytes == sum(g.tensor(t).nbytes for t in cut.tensors) == 2 * 4 * 8 * 8 * 4
    assert not by_id["after:block.add"].multi
    assert [c.id for c in g.cuts() if c.multi] == inside


def test_residual_split_at_every_cut_reproduces_the_model(residual_model):
    g = load_model(residual_model)
    for cut in g.cuts():
        assert _max_split_error(g, cut.head) <= 1e-5, cut.id


def test_zoo_resnet_multi_tensor_cuts_reproduce_the_model():
    g = load_model("zoo:resnet_style")
    multi = [c for c in g.cuts() if c.multi]
    assert len(multi) >= 8  # two per basic block at least
    feeds = sample_inputs(g, seed=2)
    for cut in (multi[0], multi[len(multi) // 2], multi[-1]):
        head, _, crossing = split_model(g, cut.head)
        assert crossing == cut.tensors and len(crossing) == 2
        assert _max_split_error(g, cut.head, feeds) <= 1e-5, cut.id


def test_transformer_cut_carries_the_mask():
    g = load_model("zoo:transformer_encoder")
    cut = g.cuts()[len(g.nodes) // 2]
    hidden = (1, 32, 96)
    # besides the hidden state, mask-derived tensors (attention bias, pooling mask) cross
    assert cut.multi and any(g.tensor(t).shape != hidden for t in cut.tensors)
    feeds = sample_inputs(g)
    feeds["attention_mask"][0, 20:] = 0  # padding, so a wrong mask would change the output
    assert _max_split_error(g, cut.head, feeds) <= 1e-5


def test_graph_input_read_by_the_tail_crosses(int64_model):
    g = load_model(int64_model)
    first = g.cuts()[0]
    assert first.id == "after:embed"
    assert first.tensors == ("attention_mask", "e")
    assert first.bytes == 6 * 8 + 6 * 8 * 4
    assert _max_split_error(g, first.head) == 0.0


def test_closed_non_prefix_head_splits(int64_model):
    g = load_model(int64_model)
    head = {"mask.cast"}  # reads only a graph input, so it is closed though not a prefix
    assert crossing_tensors(g, head) == ("input_ids", "m")
    assert _max_split_error(g, head) == 0.0


def test_subgraph_node_is_atomic_and_its_outer_reads_cross(if_model):
    g = load_model(if_model)
    # its body's work is invisible to FLOP counts and per-node timing: the user is told
    assert any("1 node(s) run subgraphs: if (If)" in n for n in g.notices)
    cuts = {c.id: c for c in g.cuts()}
    before_if = cuts["after:greater"]
    assert before_if.tensors == ("x", "r", "cond")  # If's branches read x and r
    x = np.array([[1.0, -2.0, 3.0, 0.5]], np.float32)
    for cut in cuts.values():
        assert _max_split_error(g, cut.head, {"x": x}) == 0.0
        assert _max_split_error(g, cut.head, {"x": -x}) == 0.0


@pytest.mark.parametrize(
    ("head", "message"),
    [
        ({"block.conv1"}, "reads 's_act' from tail node 'stem.relu'"),
        ({"nope"}, "not in model"),
        (set(), "at least one node"),
    ],
)
def test_invalid_heads_are_refused(residual_model, head, message):
    g = load_model(residual_model)
    with pytest.raises(ModelError, match=message):
        split_model(g, head)


@pytest.mark.parametrize(
    "source", ["residual", "if", "int64", "zoo:mobilenetv2_style", "zoo:transformer_encoder"]
)
def test_sweep_agrees_with_per_head_crossing(source, residual_model, if_model, int64_model):
    models = {"residual": residual_model, "if": if_model, "int64": int64_model}
    g = load_model(models.get(source, source))
    for cut in g.cuts():
        assert crossing_tensors(g, cut.head) == cut.tensors, cut.id


def test_weight_only_nodes_are_folded_so_no_cut_sends_a_weight():
    """A legacy export ties weights through Identity and builds Constant nodes; left as
    nodes they were cut points, and a 'partition' sent a weight over the link."""
    rng = np.random.default_rng(0)
    w1 = oh.make_tensor("w1", TensorProto.FLOAT, [4, 4], rng.normal(size=16).tolist())
    b = oh.make_tensor("b", TensorProto.FLOAT, [4], [0.1, 0.2, 0.3, 0.4])
    nodes = [
        oh.make_node("Identity", ["b"], ["b_tied"], "Identity_7"),  # read early and late
        oh.make_node("Constant", [], ["two"], "Constant_3",
                     value=oh.make_tensor("v", TensorProto.FLOAT, [], [2.0])),
        oh.make_node("MatMul", ["x", "w1"], ["h1"], "mm1"),
        oh.make_node("Add", ["h1", "b_tied"], ["h2"], "add1"),
        oh.make_node("Relu", ["h2"], ["h3"], "relu"),
        oh.make_node("Mul", ["h3", "two"], ["h4"], "mul"),
        oh.make_node("MatMul", ["h4", "w1"], ["h5"], "mm2"),
        oh.make_node("Add", ["h5", "b_tied"], ["y"], "add2"),
    ]  # fmt: skip
    graph = oh.make_graph(
        nodes, "tied",
        [oh.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [oh.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
        [w1, b],
    )  # fmt: skip
    model = oh.make_model(graph, opset_imports=[oh.make_opsetid("", 17)])
    x = rng.normal(size=(1, 4)).astype(np.float32)

    def _run(m, feeds):
        sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
        return sess.run(None, feeds)

    want = _run(model, {"x": x})[0]
    g = load_model(model)
    assert [n.op_type for n in g.nodes] == ["MatMul", "Add", "Relu", "Mul", "MatMul", "Add"]
    assert any("folded 2 node(s)" in n for n in g.notices)
    np.testing.assert_allclose(_run(g.model, {"x": x})[0], want, rtol=1e-6)
    weights = set(g.initializers)
    for cut in g.cuts():
        assert not weights & set(cut.tensors), cut
        head, tail, _ = split_model(g, cut.head)
        np.testing.assert_allclose(run_split(head, tail, {"x": x})["y"], want, rtol=1e-6)


def test_int8_boundary_artifacts_send_uint8_and_restore_the_output(residual_model, int64_model):
    from advisor.graph.cuts import int8_boundary

    g = load_model(residual_model)
    cut = next(c for c in g.cuts() if len(c.tensors) == 2)  # across the skip connection
    head, tail, crossing = split_model(g, cut.head)
    q_head, q_tail, sent = int8_boundary(g, head, tail, crossing)
    assert len(sent) == 3 * len(crossing)
    x = sample_inputs(g)
    full = run_split(head, tail, x)
    out = run_split(q_head, q_tail, x)
    sess = ort.InferenceSession(q_head.SerializeToString(), providers=["CPUExecutionProvider"])
    kinds = {o.name: o.type for o in sess.get_outputs()}
    assert all(kinds[t] == "tensor(uint8)" for t in sent if t.endswith(".q"))
    name = g.outputs[0].name
    assert not np.array_equal(out[name], full[name])  # really quantized ...
    np.testing.assert_allclose(out[name], full[name], atol=0.05 * np.abs(full[name]).max())

    ids = load_model(int64_model)  # token ids cross as they are; only float tensors shrink
    c = ids.cuts()[0]
    h, t, crossing = split_model(ids, c.head)
    _, _, sent = int8_boundary(ids, h, t, crossing)
    ints = [n for n in crossing if ids.tensor(n).dtype.startswith("int")]
    assert ints and all(n in sent for n in ints)
