"""Early exit (issue 8): the multi-exit zoo model, exit sub-models, the Edgent exit × cut
planner, the BranchyNet threshold cascade run in ONNX Runtime, and where they are shown."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper

from advisor import Advice, AdviceRequest, advise
from advisor.errors import ModelError
from advisor.graph.exits import cascade_stages, declare_exits, entropy, exit_submodel, exits_of
from advisor.model import load_model
from advisor.plans.costs import prefix_costs
from advisor.targets.catalog import get_link, load_catalog
from advisor.zoo.manifest import get_zoo
from app.cli import cli

MODEL = "digits_multiexit"
DEVICE, EDGE, LINK = "rpi4", "edge_t4", "3g"  # a slow device behind a slow link
EE_PLANS = [
    "baseline.device",
    "baseline.server",
    "partition.chain",
    "early_exit.partition",
    "early_exit.threshold",
]
FAST = {"runs": 3, "threads": 1}


@pytest.fixture(scope="module", autouse=True)
def _cache(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("EDGEDL_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "edgedl-cache"))
        yield


def _session(model) -> ort.InferenceSession:
    data = model.SerializeToString() if isinstance(model, onnx.ModelProto) else str(model)
    return ort.InferenceSession(data, providers=["CPUExecutionProvider"])


# --- the zoo model ------------------------------------------------------------------------


def test_zoo_ships_measured_exit_accuracies():
    entry = get_zoo(MODEL)
    names = [e.output for e in entry.exits]
    assert len(names) >= 3 and names[-1] == "logits"  # two early exits and the final one
    assert exits_of(load_model(entry.path)) == tuple(names)  # the file declares them too
    with np.load(entry.labelled_data) as data:
        x, y = data["x"], data["y"]
    values = dict(zip(names, _session(entry.path).run(names, {"x": x}), strict=True))
    for e in entry.exits:
        acc = float((values[e.output].argmax(1) == y).mean())
        assert acc == pytest.approx(e.accuracy, abs=1e-9), e.name
    plain = get_zoo("digits_cnn").accuracy
    assert abs(entry.exits[-1].accuracy - plain) <= 0.01
    assert entry.exits[-1].accuracy == entry.accuracy
    assert entry.exits[0].accuracy < entry.exits[-1].accuracy  # early exits are cheaper, not free


def test_exit_submodels_and_cascade_stages_reproduce_the_full_model():
    g = load_model(f"zoo:{MODEL}")
    with np.load(get_zoo(MODEL).labelled_data) as data:
        xs = data["x"][:24]
    full = _session(g.model)
    names = [o.name for o in full.get_outputs()]
    subs = {e: _session(exit_submodel(g, e)) for e in exits_of(g)}
    stages = [_session(s.model) for s in cascade_stages(g)]
    for x in xs:
        want = dict(zip(names, full.run(None, {"x": x[None]}), strict=True))
        env = {"x": x[None]}
        for sess in stages:  # the cascade's stages, one after another
            outs = sess.run(None, {i.name: env[i.name] for i in sess.get_inputs()})
            env.update(zip([o.name for o in sess.get_outputs()], outs, strict=True))
        for e, sess in subs.items():
            assert np.max(np.abs(sess.run(None, {"x": x[None]})[0] - want[e])) <= 1e-5
            assert np.max(np.abs(env[e] - want[e])) <= 1e-5
    # an exit's sub-model holds only what it needs: the first is far smaller than the final
    assert len(exit_submodel(g, "exit1").graph.node) < len(exit_submodel(g, "logits").graph.node)


def test_entropy_is_branchynet_measure():
    assert entropy(np.zeros((2, 10))) == pytest.approx([np.log(10)] * 2)
    assert entropy(np.array([[50.0, 0.0, 0.0]]))[0] < 1e-12


# --- declaring exits on any multi-output model -------------------------------------------


def _two_exit_model() -> onnx.ModelProto:
    rng = np.random.default_rng(0)

    def w(name, shape):
        return helper.make_tensor(
            name, TensorProto.FLOAT, shape, rng.standard_normal(shape).astype(np.float32).ravel()
        )

    nodes = [
        helper.make_node("MatMul", ["x", "w0"], ["a0"], name="l0_mm"),
        helper.make_node("Relu", ["a0"], ["h0"], name="l0_relu"),
        helper.make_node("MatMul", ["h0", "we"], ["early"], name="exit_mm"),
        helper.make_node("MatMul", ["h0", "w1"], ["a1"], name="l1_mm"),
        helper.make_node("Relu", ["a1"], ["h1"], name="l1_relu"),
        helper.make_node("MatMul", ["h1", "w2"], ["out"], name="l2_mm"),
    ]
    graph = helper.make_graph(
        nodes,
        "two_exit",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8])],
        [
            helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 4]),
            helper.make_tensor_value_info("early", TensorProto.FLOAT, [1, 4]),
        ],
        [w("w0", [8, 16]), w("we", [16, 4]), w("w1", [16, 16]), w("w2", [16, 4])],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_declare_exits_checks_names_and_survives_saving(tmp_path):
    g = load_model(_two_exit_model())
    assert exits_of(g) == ()
    with pytest.raises(ModelError, match="'nope' is not an output"):
        declare_exits(g, ["nope", "out"])
    with pytest.raises(ModelError, match="at least two exits"):
        declare_exits(g, ["out"])
    path = declare_exits(g, ["early", "out"]).save(tmp_path / "m.onnx")
    assert exits_of(load_model(path)) == ("early", "out")


def test_cli_declared_exits_without_a_server(tmp_path):
    proto = _two_exit_model()
    path = tmp_path / "two_exit.onnx"
    onnx.save(proto, path)
    x = np.random.default_rng(1).standard_normal((64, 8)).astype(np.float32)
    sess = _session(proto)
    y = np.array([int(np.argmax(sess.run(["out"], {"x": r[None]})[0])) for r in x])
    np.savez(tmp_path / "d.npz", x=x, y=y)
    args = [
        "advise",
        str(path),
        "--device",
        DEVICE,
        "--link",
        "wifi",
        "--latency-ms",
        "1000",
        "--data",
        str(tmp_path / "d.npz"),
        "--exit",
        "early",
        "--exit",
        "out",
        "--plan",
        "early_exit.partition",
        "--runs",
        "3",
        "--out",
        str(tmp_path / "o"),
        "--json",
        "--quiet",
    ]
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 0, r.output
    a = Advice.model_validate_json(r.stdout)
    p = a.plan("early_exit.partition")
    rows = p.extra["exit_cut_table"]
    assert {row["placement"] for row in rows} == {"all on device"}  # no server: device only
    assert p.params["exit"] == "out" and p.fidelity.accuracy == 1.0  # labels from "out"
    assert "--exit early --exit out" in a.command
    bad = CliRunner().invoke(cli, [*args[:-4], "--exit", "nope", "--json", "--quiet"])
    assert bad.exit_code == 2 and "'nope' is not an output" in bad.output


# --- planning under a deadline ----------------------------------------------------------


@pytest.fixture(scope="module")
def loose(tmp_path_factory) -> Advice:
    return advise(
        AdviceRequest(
            model=MODEL,
            device=DEVICE,
            edge=EDGE,
            link=LINK,
            latency_ms=1e4,
            plans=EE_PLANS,
            out_dir=str(tmp_path_factory.mktemp("loose")),
            **FAST,
        )
    )


def _costs(advice: Advice) -> tuple[dict[str, float], dict[str, float]]:
    return (
        {r.name: r.device_ms for r in advice.layers},
        {r.name: r.server_ms for r in advice.layers},
    )


def _fastest(advice: Advice, exit_name: str) -> float:
    rows = advice.plan("early_exit.partition").extra["exit_cut_table"]
    return min(r["predicted_ms"] for r in rows if r["exit"] == exit_name)


@pytest.fixture(scope="module")
def tight(loose, tmp_path_factory) -> Advice:
    """A deadline between the first exit's fastest path and the full model's fastest one,
    computed from the loose run's predictions, asked through the CLI."""
    deadline = (_fastest(loose, "exit1") + _fastest(loose, "logits")) / 2
    out = tmp_path_factory.mktemp("tight")
    r = CliRunner().invoke(
        cli,
        [
            "advise",
            MODEL,
            "--device",
            DEVICE,
            "--edge",
            EDGE,
            "--link",
            LINK,
            "--latency-ms",
            f"{deadline:.6f}",
            "--accuracy-budget",
            "3",
            "--runs",
            "3",
            "--out",
            str(out),
            "--json",
            "--quiet",
            *sum((["--plan", p] for p in EE_PLANS), []),
        ],
    )
    assert r.exit_code == 0, r.output
    return Advice.model_validate_json(r.stdout)


def test_tight_deadline_recommends_an_early_exit_that_meets_it(tight):
    target = tight.request.latency_ms
    base = tight.plan("baseline.device")
    assert base.predicted.ms > target and not base.meets_latency  # the full model misses
    rec = tight.recommended_plan
    assert rec is not None and rec.kind.startswith("early_exit")
    assert rec.meets_latency and rec.predicted.ms <= target
    assert rec.fidelity.accuracy is not None and rec.fidelity.samples == 360
    part = tight.plan("early_exit.partition")
    assert part.params["exit"] != "logits"
    exits = {e["exit"]: e["accuracy"] for e in part.extra["exits"]}
    assert part.fidelity.accuracy == pytest.approx(exits[part.params["exit"]], abs=1e-12)
    assert part.extra["exit_check"]["max_abs_error_vs_full_model"] <= 1e-5
    for p in (part, rec):  # latencies labelled, artifacts run in a fresh session
        assert p.predicted.kind == "predicted_target" and p.measured_host.kind == "measured_host"
        assert all(_session(a) for a in p.artifacts)


def test_loose_deadline_keeps_the_final_exit(loose):
    part = loose.plan("early_exit.partition")
    assert part.status in ("recommended", "candidate")
    assert part.params["exit"] == "logits"
    assert part.fidelity.accuracy == pytest.approx(get_zoo(MODEL).accuracy, abs=1e-12)


@pytest.mark.parametrize("which", ["tight", "loose"])
def test_exit_cut_table_covers_every_pair_and_chooses_by_edgents_rule(which, request):
    advice: Advice = request.getfixturevalue(which)
    part = advice.plan("early_exit.partition")
    rows = part.extra["exit_cut_table"]
    g = load_model(f"zoo:{MODEL}")
    dev, srv = _costs(advice)
    link = get_link(LINK, load_catalog())
    target = advice.request.latency_ms
    # per-inference call costs of each tier (catalog priors), as the planner adds them
    from advisor.targets.priors import load_priors, unit_of

    calls = load_priors().call_ms
    dev_call, srv_call = (calls[unit_of(load_catalog().target(t), "fp32")] for t in (DEVICE, EDGE))
    seen = {(r["exit"], r["position"]): r for r in rows}
    assert len(seen) == len(rows)
    for e in exits_of(g):  # every cut of every exit's sub-model, endpoints included
        sub = load_model(exit_submodel(g, e))
        want = prefix_costs(
            sub, dev, srv, link, device_overhead_ms=dev_call, server_overhead_ms=srv_call
        )
        assert {c.position for c in want} == {0, len(sub.nodes)} | {c.position for c in sub.cuts()}
        for c in want:  # the same cost model gives the same figures
            assert seen.pop((e, c.position))["predicted_ms"] == pytest.approx(c.total_ms, abs=1e-3)
    assert not seen
    meeting = [r for r in rows if r["predicted_ms"] <= target]
    best = max(r["accuracy"] for r in meeting)
    chosen = next(
        r
        for r in rows
        if r["exit"] == part.params["exit"] and r["position"] == part.params["position"]
    )
    assert chosen["meets"] and chosen["accuracy"] == best
    assert chosen["predicted_ms"] == min(
        r["predicted_ms"] for r in meeting if r["accuracy"] == best
    )


def test_threshold_table_shares_and_expected_latency_add_up(tight, loose):
    for advice in (tight, loose):
        p = advice.plan("early_exit.threshold")
        rows = p.extra["threshold_table"]
        assert len({r["threshold"] for r in rows}) >= 10
        for r in rows:
            assert sum(r["shares"].values()) == pytest.approx(1.0, abs=1e-12)
            expected = sum(r["shares"][e] * r["path_ms"][e] for e in r["shares"])
            assert r["expected_ms"] == pytest.approx(expected, abs=1e-3)
        last = [r for r in rows if r["placement"] == "all on device"]
        assert last[0]["shares"]["logits"] == 1.0  # threshold 0: nobody leaves early


def test_threshold_cascade_is_run_in_onnx_runtime(tight):
    p = tight.plan("early_exit.threshold")
    assert p.status in ("recommended", "candidate"), p.reasons  # beats exit1 on accuracy
    fixed = tight.plan("early_exit.partition").fidelity.accuracy
    assert p.fidelity.accuracy > fixed
    c = p.extra["cascade"]
    shares = [x["share"] for x in c["paths"]]
    assert sum(shares) == pytest.approx(1.0) and sum(x["inputs"] for x in c["paths"]) == 360
    assert p.predicted.ms == pytest.approx(
        sum(x["share"] * x["predicted"]["ms"] for x in c["paths"]), rel=1e-9
    )
    assert p.measured_host.ms == pytest.approx(
        sum(x["share"] * x["measured_host"]["ms"] for x in c["paths"]), rel=1e-9
    )
    assert p.predicted.ms <= tight.request.latency_ms < c["worst_path_predicted_ms"]
    # the run agrees with what the planner measured from the full model's exits
    for x in c["paths"]:
        assert x["share"] == pytest.approx(p.params["planned_shares"][x["exit"]], abs=2 / 360)
    assert p.fidelity.accuracy == pytest.approx(p.params["planned_accuracy"], abs=2 / 360)


def test_model_without_exits_or_labels_is_skipped_with_a_reason(tmp_path):
    kinds = ["early_exit.partition", "early_exit.threshold"]
    a = advise(
        AdviceRequest(
            model="digits_cnn",
            device=DEVICE,
            link=LINK,
            latency_ms=5,
            plans=kinds,
            out_dir=str(tmp_path / "a"),
            **FAST,
        )
    )
    for k in kinds:
        assert a.plan(k).status == "skipped" and "no early exits" in a.plan(k).reasons[0]
    with np.load(get_zoo(MODEL).labelled_data) as data:
        np.savez(tmp_path / "x.npz", x=data["x"][:16])
    b = advise(
        AdviceRequest(
            model=MODEL,
            device=DEVICE,
            link=LINK,
            latency_ms=5,
            plans=kinds,
            data=str(tmp_path / "x.npz"),
            out_dir=str(tmp_path / "b"),
            **FAST,
        )
    )
    for k in kinds:
        assert b.plan(k).status == "skipped" and "labelled data" in b.plan(k).reasons[0]


# --- where it is shown ----------------------------------------------------------------------


def test_json_report_and_charts_show_the_exit_table(tight, digits_plain):
    from advisor.report.renderers import render_html, render_markdown
    from app import charts

    data = json.loads(tight.model_dump_json())
    part = next(p for p in data["plans"] if p["kind"] == "early_exit.partition")
    assert part["extra"]["exit_cut_table"] and part["extra"]["chosen"]
    md = render_markdown(tight)
    assert "## Early exit" in md and "Exit × cut (Edgent)" in md
    assert md.count("| exit1 |") >= len(
        load_model(exit_submodel(load_model(f"zoo:{MODEL}"), "exit1")).nodes
    )
    assert "The cascade as run in ONNX Runtime" in md
    assert "Early exit" in render_html(tight)
    frame = charts.exit_cut_frame(tight)
    assert len(frame) == len(part["extra"]["exit_cut_table"]) and frame["chosen"].sum() == 1
    assert charts.exit_cut_chart(tight).to_dict()["layer"]
    assert not charts.threshold_frame(tight).empty
    assert charts.exit_cut_chart(digits_plain) is None
    assert "## Early exit" not in render_markdown(digits_plain)


@pytest.fixture(scope="module")
def digits_plain(tmp_path_factory) -> Advice:
    return advise(
        AdviceRequest(
            model="digits_cnn",
            device=DEVICE,
            link=LINK,
            latency_ms=5,
            plans=["baseline.device", "early_exit.partition"],
            out_dir=str(tmp_path_factory.mktemp("plain")),
            **FAST,
        )
    )


def test_runs_page_draws_the_exit_heat_map(tight):
    from pathlib import Path

    from streamlit.testing.v1 import AppTest

    from advisor.runs import RunStore

    run_id = RunStore().save(tight)
    pages = Path(__file__).resolve().parent.parent / "app" / "views"
    at = AppTest.from_file(str(pages / "runs.py"), default_timeout=120).run()
    at.selectbox(key="run_pick").set_value(run_id).run()
    assert not at.exception and not at.error
    assert "Early exit × cut" in [h.value for h in at.subheader]


# --- training and export (a smoke run on a tiny subset) --------------------------------------


def test_train_and_export_a_multi_exit_model(tmp_path):
    torch = pytest.importorskip("torch")
    from advisor.graph.exits import export_multi_exit, train_multi_exit
    from advisor.zoo.manifest import digits_train
    from advisor.zoo.models import MultiExitDigitsCNN

    x, y = digits_train()
    torch.manual_seed(0)
    net = train_multi_exit(MultiExitDigitsCNN(), x[:64], y[:64], weights=(1.0, 0.3, 0.3), epochs=1)
    path = tmp_path / "me.onnx"
    err = export_multi_exit(
        net,
        (torch.from_numpy(x[:2]),),
        path,
        input_names=["x"],
        output_names=["logits", "exit1", "exit2"],
        exits=list(net.EXITS),
    )
    assert err < 1e-4
    g = load_model(path)
    assert exits_of(g) == ("exit1", "exit2", "logits")
    assert not any(
        p.key == "pkg.torch.onnx.stack_trace" for n in g.model.graph.node for p in n.metadata_props
    )
    assert len(cascade_stages(g)) == 3


def test_device_agent_measures_the_cascade_as_an_expectation(tight, tmp_path):
    """On a real agent, a cascade's measured_target is the share-weighted path sum too."""
    from _agent_fixtures import TOKEN, agent_server

    from advisor.validate.onsite import measure_on_device_agent

    plan = tight.plan("early_exit.threshold")
    with np.load(get_zoo(MODEL).labelled_data) as data:
        x = {"x": data["x"][:1]}
    (tmp_path / "store").mkdir()
    with agent_server(tmp_path / "store") as (url, _pid):
        [got] = measure_on_device_agent([plan], url, TOKEN, x, runs=3)
    assert got.measured_target.kind == "measured_target"
    assert "expected over the measured exit shares" in got.measured_target.method
    best = [s.measured_target or s.predicted for s in got.stages]
    want = sum(
        p["share"] * sum(best[i].ms for i in p["stages"]) for p in got.extra["cascade"]["paths"]
    )
    assert got.measured_target.ms == pytest.approx(want, rel=1e-12)
    assert all(s.measured_target for s in got.stages if s.kind == "compute")
