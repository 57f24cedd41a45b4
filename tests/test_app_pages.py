"""The Streamlit pages through `streamlit.testing.v1.AppTest`, and the app's table/chart helpers.

One AppTest per page: Explore (search, facets, taxonomy, entry, compare, downloads), Advise
(bad uploads, symbolic shapes, a real advice on an uploaded model and on the digits CNN),
Hardware (catalog, fingerprint, calibration) and Runs. Every page must finish without an
exception and without an `st.error`, except where a test feeds it bad input on purpose.
"""

from __future__ import annotations

import importlib.util
import io
import time
import zipfile
from pathlib import Path

import pytest
from conftest import make_chain_model, make_symbolic_model
from streamlit.testing.v1 import AppTest

from app import charts, ui

PAGES = Path(__file__).resolve().parent.parent / "app" / "views"
KINDS = ("predicted_target", "measured_host", "measured_target")


@pytest.fixture(scope="module", autouse=True)
def _cache(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("EDGEDL_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "edgedl-cache"))
        yield


def page(name: str, timeout: float = 120, **query: str) -> AppTest:
    at = AppTest.from_file(str(PAGES / f"{name}.py"), default_timeout=timeout)
    at.query_params.update(query)
    return at.run()


def clean(at: AppTest) -> None:
    """No exception and no st.error reached the page."""
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def texts(at: AppTest) -> str:
    parts = [m.value for m in at.markdown] + [c.value for c in at.caption]
    return "\n".join(str(p) for p in parts)


def node_types(at: AppTest) -> list[str]:
    out: list[str] = []

    def walk(node) -> None:
        out.append(getattr(node, "type", ""))
        for child in getattr(node, "children", {}).values():
            walk(child)

    walk(at._tree)
    return out


def frame_with(at: AppTest, column: str):
    for df in at.dataframe:
        if column in df.value.columns:
            return df.value
    raise AssertionError(f"no table with column {column!r}")


def button(at: AppTest, label: str):
    return next(b for b in at.button if b.label == label)


def selectbox(at: AppTest, label: str):
    return next(s for s in at.selectbox if s.label == label)


def test_app_entry_point_navigates():
    at = AppTest.from_file(str(PAGES.parent / "streamlit_app.py"), default_timeout=120).run()
    clean(at)
    assert at.title[0].value.startswith("Explore")  # the default page
    at.switch_page(str(PAGES / "hardware.py")).run()
    clean(at)
    assert at.title[0].value.startswith("Hardware")


# --- Explore -------------------------------------------------------------------------------


def test_explore_search_select_compare_download():
    at = page("explore")
    clean(at)
    at.text_input(key="q").input("partition latency mobile cloud").run()
    clean(at)
    assert "neurosurgeon" in list(frame_with(at, "match")["id"])
    selectbox(at, "Open an entry").set_value("neurosurgeon").run()
    clean(at)
    assert any(h.value.startswith("Neurosurgeon") for h in at.subheader)
    body = texts(at)
    assert "reported by the source, not measured here" in body
    assert "(./?entry=" in body  # related entries link to their entry pages
    graph = at.get("graphviz_chart")
    assert graph and '"neurosurgeon"' in graph[0].proto.spec
    assert at.query_params["entry"] in ("neurosurgeon", ["neurosurgeon"])

    at.multiselect(key="compare_ids").set_value(["neurosurgeon", "dads", "jalad"]).run()
    clean(at)
    table = frame_with(at, "DADS (Dynamic Adaptive DNN Surgery)")
    assert table.shape[1] == 3 and "claims" in table.index
    labels = [b.label for b in at.get("download_button")]
    for want in ("Download CSV", "Download Markdown", "Download BibTeX"):
        assert want in labels


def test_explore_facets_and_taxonomy():
    at = page("explore")
    at.sidebar.selectbox(key="f_kind").set_value("hardware").run()
    clean(at)
    assert set(frame_with(at, "match")["kind"]) == {"hardware"}
    at.sidebar.selectbox(key="f_kind").set_value("(any)")
    at.sidebar.radio(key="f_exec").set_value("executable").run()
    clean(at)
    assert "advice only" not in set(frame_with(at, "match")["advisor"])
    at.sidebar.radio(key="f_exec").set_value("any")
    base = ui.knowledge_base()
    top = max(base.tree(), key=lambda n: n.count).id
    at.sidebar.selectbox[0].set_value(top).run()
    clean(at)
    labels = [s.label for s in at.sidebar.selectbox]
    assert "↳ sub-branch" in labels  # the path goes one level deeper
    assert f"`{top}`" in texts(at)  # the outline lists every branch
    for cats in frame_with(at, "match")["categories"]:
        assert any(base.path_to_root(c)[-1] == top for c in cats.split(", "))


def test_explore_opens_entry_from_link():
    at = page("explore", entry="branchynet")
    clean(at)
    assert any(h.value.startswith("BranchyNet") for h in at.subheader)


# --- Advise --------------------------------------------------------------------------------


def upload(at: AppTest, name: str, data: bytes) -> AppTest:
    at.radio(key="model_source").set_value("Upload an ONNX file").run()
    at.file_uploader(key="upload_model").set_value((name, data, "application/octet-stream"))
    return at.run()


def test_advise_rejects_bytes_that_are_not_onnx():
    at = upload(page("advise"), "model.onnx", b"this is not a model at all" * 10)
    assert not at.exception
    assert any("not an ONNX model" in e.value for e in at.error)
    assert at.button(key="run_advice").disabled


def test_upload_limit_and_check():
    assert "over the" in ui.check_upload("big.onnx", b"x" * 4096, limit_mb=0.001)
    assert ui.check_upload("ok.onnx", make_chain_model().SerializeToString()) is None
    assert "empty" in ui.check_upload("empty.onnx", b"")


def test_advise_asks_for_symbolic_shapes():
    model = make_symbolic_model(("batch", "seq", 16)).SerializeToString()
    at = upload(page("advise"), "seq.onnx", model)
    assert not at.exception
    assert any("cannot be resolved" in e.value for e in at.error)
    field = at.text_input(key="shape_x")
    field.input("1x5x16").run()
    clean(at)
    msg = next(s.value for s in at.success)
    assert msg.startswith("seq.onnx:") and "`x` 1×5×16" in msg  # its name; no raw dicts
    assert "{" not in msg and "[" not in msg
    assert not at.button(key="run_advice").disabled


def wait_for_results(at: AppTest, limit_s: float = 600) -> tuple[AppTest, set[str]]:
    """Rerun the page (as the browser's poll does) until the background run's results show;
    the node types seen on the way (the live progress box among them)."""
    seen: set[str] = set()
    deadline = time.monotonic() + limit_s
    while "Ranked plans" not in [h.value for h in at.subheader]:
        assert not at.exception, [e.value for e in at.exception]
        assert time.monotonic() < deadline, "no results within the time limit"
        seen |= set(node_types(at))
        time.sleep(0.5)
        at.run()
    return at, seen


def run_advice(at: AppTest) -> AppTest:
    at.number_input(key="runs").set_value(3)
    at.number_input(key="max_eval").set_value(16)
    at.number_input(key="latency_ms").set_value(50.0)
    at.run()
    at, seen = wait_for_results(at.button(key="run_advice").click().run())
    assert "progress" in seen  # the live stage was shown while it ran
    return at


def check_results(at: AppTest) -> None:
    clean(at)
    assert "Ranked plans" in [h.value for h in at.subheader]
    table = frame_with(at, "predicted_target e2e (ms)")
    assert len(table) >= 1 and table.iloc[0]["status"] in ("recommended", "candidate")
    assert "meets target" in table.columns
    for col in table.columns:
        if "(ms)" in col:
            assert any(k in col for k in KINDS), col
    assert "Report (JSON)" in [b.label for b in at.get("download_button")]
    types = node_types(at)
    assert types.count("vega_lite_chart") >= 3  # stages, Pareto, per-layer
    assert [t.label for t in at.tabs] == ["Plans", "Charts", "Layers", "Report"]


def test_advise_runs_an_uploaded_model():
    at = upload(page("advise", timeout=300), "chain.onnx", make_chain_model().SerializeToString())
    clean(at)
    check_results(run_advice(at))


def test_advise_digits_cnn():
    at = page("advise", timeout=300)
    clean(at)
    at.selectbox(key="zoo_id").set_value("digits_cnn")
    at = run_advice(at)
    check_results(at)
    labels = [b.label for b in at.get("download_button")]
    if importlib.util.find_spec("advisor.report.renderers") is not None:
        assert {"Report (HTML)", "Report (Markdown)"} <= set(labels)
    assert any(lbl.startswith("Artifacts of") for lbl in labels)


def test_invalid_latency_and_link_block_run_with_the_reason():
    """Out-of-range values are kept and refused under their field (the API's own rules),
    and Run stays disabled until they are fixed (they used to run with the previous value)."""
    at = page("advise")
    clean(at)
    assert not at.button(key="run_advice").disabled
    for bad in (-5.0, 0.0):
        at.number_input(key="latency_ms").set_value(bad).run()
        assert any("Latency target: input should be greater than 0" in e.value for e in at.error)
        assert at.button(key="run_advice").disabled
        assert any("Run is blocked: fix Latency target" in c.value for c in at.caption)
    at.number_input(key="latency_ms").set_value(5.0).run()
    clean(at)
    at.radio(key="link_mode").set_value("Custom").run()
    at.number_input(key="up_mbps").set_value(0.0)
    at.number_input(key="rtt_ms").set_value(-1.0).run()
    errors = [e.value for e in at.error]
    assert any(e.startswith("Uplink (Mbit/s): input should be greater than 0") for e in errors)
    assert any(
        "Round-trip time (ms): input should be greater than or equal to 0" in e for e in errors
    )
    assert at.button(key="run_advice").disabled
    at.number_input(key="up_mbps").set_value(10.0)
    at.number_input(key="rtt_ms").set_value(20.0).run()
    clean(at)
    assert not at.button(key="run_advice").disabled


def test_accuracy_controls_say_which_applies():
    at = page("advise", model="digits_cnn")
    clean(at)
    # digits_cnn ships labels: the budget (default shown) applies, the agreement slider does not
    assert at.number_input(key="accuracy_budget").value == 1.0
    assert not at.number_input(key="accuracy_budget").disabled
    assert at.slider(key="min_agreement").disabled
    assert at.radio(key="prefer").value == "accuracy"


def test_a_widget_change_during_a_run_does_not_lose_it():
    from advisor.runs import RunStore

    before = len(RunStore())
    at = upload(
        page("advise", timeout=300), "my_chain.onnx", make_chain_model().SerializeToString()
    )
    at.number_input(key="runs").set_value(3)
    at.number_input(key="max_eval").set_value(8)
    at.number_input(key="latency_ms").set_value(50.0).run()
    at.button(key="run_advice").click().run()
    assert any("Running the advisor on my_chain.onnx" in i.value for i in at.info)
    at.number_input(key="latency_ms").set_value(40.0).run()  # a click during the run
    at, _ = wait_for_results(at)
    clean(at)
    assert len(RunStore()) == before + 1  # stored in Runs
    newest = RunStore().list(limit=1)[0]
    assert newest.model == "my_chain"  # the upload keeps its file name
    assert any("results are for earlier inputs" in w.value for w in at.warning)  # stale
    labels = [m.label for m in at.metric]
    assert "Latency, predicted_target (ms)" in labels
    assert any(c.value.startswith("Reproduce from a terminal in the folder") for c in at.caption)
    assert any("edgedl advise my_chain.onnx" in c.value for c in at.code)
    at.number_input(key="latency_ms").set_value(50.0).run()  # back to the run's inputs
    assert not any("results are for earlier inputs" in w.value for w in at.warning)


# --- Hardware ------------------------------------------------------------------------------


def test_hardware_catalog_fingerprint_and_calibration():
    at = page("hardware")
    clean(at)
    targets = frame_with(at, "fp32 peak (GFLOP/s)")
    assert len(targets) >= 3 and targets["tier"].isin(["device", "edge", "cloud"]).all()
    assert len(frame_with(at, "RTT (ms)")) >= 2
    sources = frame_with(at, "source")
    assert sources["source"].str.len().min() > 0
    assert "cpu_model" in list(frame_with(at, "field")["field"])
    button(at, "Calibrate this host").click().run()
    clean(at)
    labels = [m.label for m in at.metric]
    assert "fp32 compute (measured_host)" in labels
    assert float(at.metric[0].value.split()[0]) > 0


# --- Runs ----------------------------------------------------------------------------------


def test_runs_page_reopens_a_stored_run(advice):
    from advisor.runs import RunStore

    run_id = RunStore().save(advice)  # stored by another "session": this process, no page
    at = page("runs")
    clean(at)
    assert run_id in list(frame_with(at, "recommended")["id"])
    at.selectbox(key="run_pick").set_value(run_id).run()
    clean(at)
    assert "Ranked plans" in [h.value for h in at.subheader]
    shown = frame_with(at, "predicted_target e2e (ms)")
    assert list(shown["id"]) == [p.id for p in charts.ranked_plans(advice)]
    labels = [b.label for b in at.get("download_button")]
    assert "Report (JSON)" in labels and "Report (HTML)" in labels


# --- helpers: tables and charts over a real advice -----------------------------------------


@pytest.fixture(scope="module")
def advice(tmp_path_factory):
    from advisor import AdviceRequest, advise
    from advisor.targets.catalog import load_catalog

    cat = load_catalog()
    device = next(t.id for t in cat.targets.values() if t.tier == "device")
    edge = next(t.id for t in cat.targets.values() if t.tier == "edge")
    path = tmp_path_factory.mktemp("model") / "chain.onnx"
    path.write_bytes(make_chain_model().SerializeToString())
    return advise(
        AdviceRequest(
            model=str(path),
            device=device,
            edge=edge,
            link=next(iter(cat.links)),
            latency_ms=50,
            runs=3,
            max_eval_samples=8,
        )
    )


def test_plans_table_labels_every_latency(advice):
    table = charts.plans_table(advice)
    assert len(table) == len(charts.ranked_plans(advice))
    assert list(table["id"]) == [p.id for p in charts.ranked_plans(advice)]
    ms_cols = [c for c in table.columns if "(ms)" in c]
    assert ms_cols and all(any(k in c for k in KINDS) for c in ms_cols)
    rejected = charts.rejected_table(advice)
    assert len(rejected) + len(table) == len(advice.plans)


def test_layer_rows_sum_to_the_profile(advice):
    frame = charts.layers_frame(advice)
    assert frame["measured_host (ms)"].sum() == pytest.approx(sum(r.host_ms for r in advice.layers))
    assert frame["nodes"].sum() == len(advice.layers)
    assert charts.layers_chart(advice).to_dict()


def test_stage_and_pareto_charts(advice):
    for kind in ("predicted_target", "measured_host"):
        stages = charts.stages_frame(advice, kind)
        assert set(stages["latency kind"]) <= {kind}
        assert charts.stage_chart(advice, kind).to_dict()
    pareto = charts.pareto_frame(advice)
    assert set(advice.pareto) <= set(pareto["plan"])
    assert charts.pareto_chart(advice).to_dict()


def test_artifacts_zip_holds_the_files(advice):
    plan = next(p for p in advice.plans if p.artifacts)
    with zipfile.ZipFile(io.BytesIO(charts.artifacts_zip(plan))) as zf:
        names = zf.namelist()
        first = next(Path(a) for a in plan.artifacts if Path(a).is_file())
        assert zf.read(f"{plan.id}/{first.name}") == first.read_bytes()
    assert names


def test_relation_dot_has_the_neighbourhood():
    base = ui.knowledge_base()
    dot = charts.relation_dot(base, "neurosurgeon", depth=1)
    for entry, _ in base.related("neurosurgeon", depth=1):
        assert f'"{entry.id}"' in dot
    assert "->" in dot and dot.startswith("digraph")


def test_parse_shape():
    assert ui.parse_shape("1x3x224x224") == [1, 3, 224, 224]
    assert ui.parse_shape("1, 5, 16") == [1, 5, 16]
    with pytest.raises(ValueError, match="positive integers"):
        ui.parse_shape("1xHx3")


def test_edgedl_app_is_the_server_so_its_pid_stops_it(tmp_path):
    """`edgedl app` execs Streamlit: SIGTERM to the PID a supervisor holds stops the server
    (it used to stop only the wrapper and orphan Streamlit)."""
    import os
    import subprocess
    import sys
    import time
    import urllib.request

    spec = importlib.util.spec_from_file_location(
        "make_screenshot", Path(__file__).resolve().parent.parent / "docs" / "make_screenshot.py"
    )
    flow = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(flow)
    port = flow.free_port()
    env = {**os.environ, "EDGEDL_CACHE_DIR": str(tmp_path / "cache")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "app", "--port", str(port)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}/_stcore/health"
    try:
        for _ in range(120):  # bounded: up to a minute
            try:
                with urllib.request.urlopen(url, timeout=2) as r:
                    if r.read() == b"ok":
                        break
            except OSError:
                time.sleep(0.5)
        else:
            pytest.fail("the app did not answer its health check within a minute")
        proc.terminate()
        proc.wait(timeout=20)
        with pytest.raises(OSError):
            urllib.request.urlopen(url, timeout=2)
    finally:
        flow.stop_server(proc)
