"""Sweeps on Ray: SPEC validation, a two-node cluster on this machine (timings never overlap
on a node, every cell stored once), and a killed sweep that resumes with only the missing
cells."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from advisor.runs import RunStore
from advisor.sweep import SweepSpec, load_spec, stored_result, sweep, sweep_rows
from app.cli import cli

ROOT = Path(__file__).resolve().parent.parent
# small and quick: no fine-tuning planner, few timed runs
PLANS = ["baseline.device", "quantize.dynamic_int8", "partition.chain"]
OBJECT_STORE = 100 * 1024 * 1024


def _spec_yaml(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "spec.yaml"
    path.write_text(body, encoding="utf-8")
    return path


GOOD = """
models: [digits_cnn]
targets: [rpi4]
edge: edge_t4
links: [wifi]
latency_ms: [5]
"""

BAD_SPECS = [
    (GOOD + "modles: [x]\n", "unknown key 'modles' at modles; allowed keys: name, models"),
    (GOOD.replace("targets: [rpi4]", "targets: [{device: rpi4, edg: edge_t4}]"), "'edg'"),
    (GOOD.replace("links: [wifi]", "links: [wifii]"), "wifii"),
    (GOOD.replace("targets: [rpi4]", "targets: [rpi44]"), "rpi44"),
    (GOOD.replace("models: [digits_cnn]", "models: [no_such_model]"), "no_such_model"),
    (GOOD.replace("latency_ms: [5]", "latency_ms: [-5]"), "latency_ms"),
    (GOOD.replace("latency_ms: [5]", "latency_ms: []"), "latency_ms"),
    (GOOD.replace("links: [wifi]", ""), "missing key 'links'"),
    (GOOD + "plans: [partition.nope]\n", "partition.nope"),
    ("models: [digits_cnn\n", "not valid YAML"),
    ("- just a list\n", "a SPEC is a mapping"),
]


@pytest.mark.parametrize(("text", "message"), BAD_SPECS)
def test_bad_spec_exits_2_with_one_line(tmp_path, monkeypatch, text, message):
    monkeypatch.setenv("EDGEDL_CACHE_DIR", str(tmp_path / "cache"))
    path = _spec_yaml(tmp_path, text)
    r = CliRunner().invoke(cli, ["sweep", str(path), "--quiet", "--db", str(tmp_path / "r.db")])
    lines = r.output.strip().splitlines()
    assert r.exit_code == 2, r.output
    assert len(lines) == 1 and message in lines[0], r.output
    assert "Traceback" not in r.output


def test_unreachable_cluster_address_exits_2_in_seconds(tmp_path, monkeypatch):
    import socket

    monkeypatch.setenv("EDGEDL_CACHE_DIR", str(tmp_path / "cache"))
    with socket.socket() as s:  # a port nothing listens on: bind, then close
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    path = _spec_yaml(tmp_path, GOOD)
    t0 = time.monotonic()
    r = CliRunner().invoke(
        cli,
        [
            "sweep",
            str(path),
            "--quiet",
            "--db",
            str(tmp_path / "r.db"),
            "--address",
            f"127.0.0.1:{port}",
        ],
    )
    assert r.exit_code == 2, r.output
    assert "nothing answers there" in r.output and "Traceback" not in r.output
    assert time.monotonic() - t0 < 30


def test_cells_are_the_product_and_keys_follow_content(tmp_path):
    spec = SweepSpec(
        models=["digits_cnn", "resnet_style"],
        targets=["rpi4", {"device": "rpi5", "edge": "edge_l4"}],
        edge="edge_t4",
        links=["wifi", "4g"],
        latency_ms=[5, 50],
        accuracy_budgets=[None, 1.0],
    )
    cells = spec.cells()
    assert len(cells) == 2 * 2 * 2 * 2 * 2
    assert {c.label() for c in cells} == {"rpi4 + edge_t4", "rpi5 + edge_l4"}
    keys = {c.key("sha-a", spec) for c in cells}
    assert len(keys) == len(cells)  # every cell its own key
    # the same cell of a changed model (other bytes) is another cell
    assert cells[0].key("sha-a", spec) != cells[0].key("sha-b", spec)
    # the same SPEC has the same id; another setting, another id
    assert spec.sweep_id() == SweepSpec.model_validate(spec.model_dump()).sweep_id()
    assert spec.sweep_id() != spec.model_copy(update={"runs": 7}).sweep_id()


# --- on a two-node Ray cluster on this machine ---------------------------------------------


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """Two Ray nodes on this machine, 2 CPUs and one 'timing' unit each; the advisor's
    cache folder set before the nodes start, so their workers inherit it."""
    ray = pytest.importorskip("ray")
    from ray.cluster_utils import Cluster

    old = os.environ.get("EDGEDL_CACHE_DIR")
    os.environ["EDGEDL_CACHE_DIR"] = str(tmp_path_factory.mktemp("sweep-cache"))
    # other processes on a shared test machine can push memory past Ray's kill threshold;
    # these nodes are small and short-lived, so their memory monitor stays off
    old_monitor = os.environ.get("RAY_memory_monitor_refresh_ms")
    os.environ["RAY_memory_monitor_refresh_ms"] = "0"
    node = {
        "num_cpus": 2,
        "resources": {"timing": 1},
        "object_store_memory": OBJECT_STORE,
    }
    c = Cluster(initialize_head=True, head_node_args={**node, "include_dashboard": False})
    try:
        c.add_node(**node)
        c.wait_for_nodes()
        ray.init(address=c.address, log_to_driver=False, logging_level="ERROR")
        yield c
    finally:
        ray.shutdown()
        c.shutdown()
        if old is None:
            os.environ.pop("EDGEDL_CACHE_DIR", None)
        else:
            os.environ["EDGEDL_CACHE_DIR"] = old
        if old_monitor is None:
            os.environ.pop("RAY_memory_monitor_refresh_ms", None)
        else:
            os.environ["RAY_memory_monitor_refresh_ms"] = old_monitor


def _overlaps(rows) -> list[tuple[str, str]]:
    by_node: dict[str, list] = {}
    for r in rows:
        by_node.setdefault(r.node_id, []).append(r)
    bad = []
    for cells in by_node.values():
        cells.sort(key=lambda r: r.timing_start)
        for a, b in zip(cells, cells[1:], strict=False):
            if b.timing_start < a.timing_end:
                bad.append((a.cell_key, b.cell_key))
    return bad


def test_two_node_sweep_never_overlaps_timings_and_stores_each_cell_once(cluster, tmp_path):
    import ray

    assert ray.cluster_resources()["timing"] == 2
    spec = SweepSpec(
        models=["digits_cnn", "digits_multiexit", "mobilenetv2_style"],
        targets=["rpi4"],
        edge="edge_t4",
        links=["wifi"],
        latency_ms=[5, 50],
        runs=3,
        plans=PLANS,
    )
    store = RunStore(tmp_path / "runs.sqlite")
    seen = []
    result = sweep(spec, store=store, out_dir=tmp_path / "out", progress=seen.append)
    assert result.failures == []
    assert result.advised_now == 6 and len(result.rows) == 6
    # progress: done never goes back, the counts add up, and it ends with every cell done
    assert [p.done for p in seen] == sorted(p.done for p in seen)
    assert all(p.done + p.running + p.left == p.total == 6 for p in seen)
    assert seen[-1].done == 6 and seen[-1].eta_s is not None
    keys = [r.cell_key for r in result.rows]
    assert len(set(keys)) == 6
    assert [c["cell_key"] for c in store.sweep_cells(result.sweep_id)].count(keys[0]) == 1
    assert len(store) == 6
    assert all(r.timing_start and r.timing_end and r.node_id for r in result.rows)
    # three models on two nodes: some node timed two models, one after the other
    per_node = {
        n: {r.model for r in result.rows if r.node_id == n}
        for n in {r.node_id for r in result.rows}
    }
    assert max(len(m) for m in per_node.values()) >= 2
    assert _overlaps(result.rows) == []
    # every cell is an ordinary run: listed with its sweep id, its advice readable
    assert {s.sweep_id for s in store.list()} == {result.sweep_id}
    advice = store.get(result.rows[0].run_id)
    assert advice.request.model == result.rows[0].model
    # the table and the report
    for kind in ("csv", "json", "md", "html"):
        assert Path(result.outputs[kind]).is_file()
    html = Path(result.outputs["html"]).read_text()
    assert "<svg" in html and "digits_multiexit" in html
    assert Path(result.outputs["csv"]).read_text().count("\n") == 7  # header + 6 cells
    # a second run of the same SPEC advises nothing
    again = sweep(spec, store=store, out_dir=tmp_path / "out")
    assert again.advised_now == 0 and len(again.rows) == 6 and len(store) == 6


def test_killed_sweep_resumes_with_only_the_missing_cells(cluster, tmp_path):
    spec_path = _spec_yaml(
        tmp_path,
        f"""
models: [digits_cnn]
targets: [rpi4, rpi5]
edge: edge_t4
links: [wifi, 4g]
latency_ms: [5, 50]
runs: 3
plans: {PLANS}
""",
    )
    db = tmp_path / "runs.sqlite"
    store = RunStore(db)
    args = [
        sys.executable,
        "-c",
        "from app.cli import main; main()",
        "sweep",
        str(spec_path),
        "--address",
        cluster.address,
        "--db",
        str(db),
        "--out",
        str(tmp_path / "out"),
        "--quiet",
    ]
    proc = subprocess.Popen(
        args, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=os.environ.copy()
    )
    try:
        deadline = time.monotonic() + 240
        while len(store) == 0 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        assert len(store) >= 1, proc.stderr.read().decode() if proc.poll() is not None else ""
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        proc.stderr.close()
    before = {c["cell_key"] for c in store.sweep_cells()}
    assert 1 <= len(before) < 8, "the sweep was killed after every cell was stored"
    spec = load_spec(spec_path)
    resumed = sweep(spec, store=store, out_dir=tmp_path / "out")
    assert resumed.failures == []
    assert resumed.advised_now == 8 - len(before)
    cells = store.sweep_cells(spec.sweep_id())
    assert len(cells) == 8 and len({c["cell_key"] for c in cells}) == 8
    assert before <= {c["cell_key"] for c in cells}
    assert len(stored_result(spec, store).rows) == 8


# --- without Ray: the task body, the rows, and the app's Sweeps page ------------------------


def _run_inline(spec: SweepSpec, store: RunStore) -> None:
    """Run a sweep's cells through the timing task's body in this process (no Ray)."""
    from advisor.sweep.run import advise_cells
    from advisor.sweep.spec import model_digest

    cells = [
        {
            "key": c.key(model_digest(c.model), spec),
            "cell": c.model_dump(mode="json"),
            "request": {
                "model": c.model,
                "device": c.device,
                "edge": c.edge,
                "link": c.link,
                "latency_ms": c.latency_ms,
                "runs": spec.runs,
                "plans": spec.plans,
            },
        }
        for c in spec.cells()
    ]
    from advisor.advice import Advice

    store.record_sweep(
        spec.sweep_id(), spec.name, spec.model_dump_json(), [c["key"] for c in cells]
    )
    events = list(advise_cells(cells, spec.model_dump(mode="json")))
    assert [e["event"] for e in events] == ["start", "done"] * len(cells)
    for e in events[1::2]:
        assert e["error"] is None, e["error"]
        store.save(
            Advice.model_validate_json(e["advice_json"]),
            sweep_id=spec.sweep_id(),
            cell_key=e["cell_key"],
            sweep_record=e["record"],
        )


@pytest.fixture(scope="module")
def inline_sweep(tmp_path_factory):
    """A 1 model × 2 links × 2 latency targets sweep stored in a private cache folder; one
    latency target (1 µs) that no plan can meet."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("EDGEDL_CACHE_DIR", str(tmp_path_factory.mktemp("inline-cache")))
        spec = SweepSpec(
            models=["digits_cnn"],
            targets=["rpi4"],
            edge="edge_t4",
            links=["wifi", "4g"],
            latency_ms=[0.001, 50],
            runs=3,
            plans=PLANS,
        )
        store = RunStore()
        _run_inline(spec, store)
        yield spec, store


def test_rows_report_and_memo_reuse(inline_sweep, tmp_path):
    from advisor.sweep.report import write_outputs

    spec, store = inline_sweep
    rows = sweep_rows(store, spec.sweep_id())
    assert len(rows) == 4
    # another sweep holding the same cells (same content keys) shows them, stored once
    other = spec.model_copy(update={"name": "the same cells again"})
    keys = [r.cell_key for r in rows]
    store.record_sweep(other.sweep_id(), other.name, other.model_dump_json(), keys)
    assert [r.run_id for r in sweep_rows(store, other.sweep_id())] == [r.run_id for r in rows]
    assert len(store) == 4
    missed = [r for r in rows if r.latency_ms == 0.001]
    met = [r for r in rows if r.latency_ms == 50]
    assert all(r.recommended is None and r.margin is not None and r.margin < 0 for r in missed)
    assert all(r.recommended and r.margin is not None and 0 < r.margin <= 1 for r in met)
    assert all(r.predicted_kind == "predicted_target" for r in rows)
    assert all(r.measured_kind == "measured_host" for r in rows)
    # later cells reuse the first cell's measurements of identical artifacts, and say so
    last = store.get(rows[-1].run_id)
    base = last.plan("baseline.device")
    assert "reused" in base.stages[0].measured_host.method
    first = store.get(rows[0].run_id).plan("baseline.device")
    assert "reused" not in first.stages[0].measured_host.method
    assert base.stages[0].measured_host.ms == first.stages[0].measured_host.ms
    # outputs: the table and a report with one heatmap per link
    result = stored_result(spec, store)
    assert result.no_plan == 2 and len(result.rows) == 4
    out = write_outputs(result, tmp_path)
    html = Path(out["html"]).read_text()
    assert html.count("<svg") == 2 and "no plan met" in html
    md = Path(out["md"]).read_text()
    assert "## Link wifi" in md and "## Link 4g" in md and ".svg)" in md


def test_sweeps_page_shows_the_heatmap_and_opens_a_cell(inline_sweep):
    from streamlit.testing.v1 import AppTest

    spec, store = inline_sweep
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("EDGEDL_CACHE_DIR", str(store.path.parent))
        at = AppTest.from_file(str(ROOT / "app" / "views" / "sweeps.py"), default_timeout=120)
        at.query_params["sweep"] = spec.sweep_id()  # a link to one sweep opens it
        at.run()
        assert not at.exception and not at.error, [e.value for e in at.error]
        assert at.selectbox(key="sweep_pick").value == spec.sweep_id()
        shown = "".join(str(h.proto.body) for h in at.get("html"))
        assert "<svg" in shown and "digits_cnn" in shown
        runs = {r.run_id for r in sweep_rows(store, spec.sweep_id())}
        pick = at.selectbox(key="cell_pick")
        assert pick.value in runs and len(pick.options) == 4
        at.radio(key="sweep_link").set_value("4g").run()
        pick.set_value(sorted(runs)[0]).run()
        assert not at.exception and not at.error, [e.value for e in at.error]
        assert "Ranked plans" in [h.value for h in at.subheader]


def test_cells_measured_on_different_machines_say_so(inline_sweep):
    from advisor.sweep import _notices

    spec, store = inline_sweep
    rows = sweep_rows(store, spec.sweep_id())
    assert _notices(rows, len(rows)) == []  # one machine
    other = [rows[0].model_copy(update={"fingerprint_key": "another-machine"}), *rows[1:]]
    (note,) = _notices(other, len(rows))
    assert "2 machines with different environment fingerprints" in note
    assert "2 of 6 cells are not stored" in _notices(rows, 6)[0]


def test_a_database_from_before_sweeps_gains_the_columns_and_stays_readable(tmp_path):
    import sqlite_utils

    from advisor import runs

    path = tmp_path / "old.sqlite"
    old = {
        k: v for k, v in runs._COLUMNS.items() if k not in ("sweep_id", "cell_key", "sweep_json")
    }
    db = sqlite_utils.Database(path)
    db["runs"].create(old, pk="id")
    row = dict.fromkeys(old)
    row.update(id="abcdef123456", saved="2026-01-01T00:00:00", created="2026-01-01T00:00:00")
    row.update(latency_ms=5.0, n_plans=0)
    row.update(advice_json="{}", model="m", device="rpi4")
    db["runs"].insert(row)
    db.conn.close()
    store = RunStore(path)
    assert [s.id for s in store.list()] == ["abcdef123456"]
    assert store.list()[0].sweep_id is None
    assert store.sweep_cells() == [] and store.stored_cells(["x"]) == {}
    assert {"sweep_id", "cell_key", "sweep_json"} <= set(
        sqlite_utils.Database(path)["runs"].columns_dict
    )


@pytest.mark.slow
def test_prepare_builds_the_pruned_model_beside_timing_once(tmp_path, monkeypatch):
    from advisor.sweep.run import needs_prepare, prepare_model

    monkeypatch.setenv("EDGEDL_CACHE_DIR", str(tmp_path / "cache"))
    assert needs_prepare("digits_cnn", None)
    assert not needs_prepare("digits_cnn", PLANS)  # pruning not asked for
    assert not needs_prepare("digits_multiexit", None)  # early exits: pruning is skipped
    assert not needs_prepare("resnet_style", None)  # untrained: nothing to fine-tune
    first = prepare_model("digits_cnn")
    assert first["error"] is None and first["built"] == ["prune.structured"]
    assert first["end"] > first["start"]
    again = prepare_model("digits_cnn")
    assert again["error"] is None and again["built"] == []  # found in the cache
    # the timing task's advice then reuses it
    from advisor import AdviceRequest, advise

    a = advise(
        AdviceRequest(
            model="digits_cnn",
            device="rpi4",
            link="wifi",
            latency_ms=50,
            runs=3,
            plans=["baseline.device", "prune.structured"],
            out_dir=str(tmp_path / "o"),
        )
    )
    assert a.plan("prune.structured").params["reused_from_cache"] is True


def test_public_surface():
    import advisor.measure.memo
    import advisor.sweep

    assert advisor.sweep.__all__ == [
        "CellRow",
        "SpecError",
        "SweepProgress",
        "SweepResult",
        "SweepSpec",
        "heatmap_svg",
        "load_spec",
        "stored_result",
        "sweep",
        "sweep_rows",
    ]
    assert advisor.measure.memo.__all__ == [
        "REUSED",
        "MeasurementMemo",
        "digest_bytes",
        "feeds_key",
    ]
