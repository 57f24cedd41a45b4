"""`edgedl advise --device-agent` and `--validate split` against agents on 127.0.0.1."""

from __future__ import annotations

import json

import onnx
import pytest
from _agent_fixtures import TOKEN, agent_server, residual_block_model
from click.testing import CliRunner

from advisor import Advice, AdviceRequest, advise
from app.cli import cli


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("EDGEDL_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "edgedl-cache"))


@pytest.fixture(scope="module")
def agent(tmp_path_factory):
    with agent_server(tmp_path_factory.mktemp("agent-store")) as (url, pid):
        yield url


def test_device_agent_adds_measured_target(agent, tmp_path):
    report = tmp_path / "r.html"
    r = CliRunner().invoke(
        cli,
        [
            "advise",
            "digits_cnn",
            "--device",
            "rpi4",
            "--edge",
            "edge_t4",
            "--link",
            "wifi",
            "--latency-ms",
            "5",
            "--runs",
            "5",
            "--quiet",
            "--json",
            "--out",
            str(tmp_path / "a"),
            "--plan",
            "baseline.device",
            "--plan",
            "quantize.static_int8",
            "--plan",
            "compress.boundary_int8",
            "--device-agent",
            agent,
            "--token",
            TOKEN,
            "--report",
            str(report),
        ],
    )
    assert r.exit_code in (0, 1), r.output
    advice = Advice.model_validate_json(r.output[r.output.index("{") :])
    measured = [p for p in advice.plans if p.measured_target is not None]
    assert {p.id for p in measured} >= {"baseline.device", "quantize.static_int8"}
    for p in measured:
        assert p.measured_target.kind == "measured_target" and p.measured_target.ms > 0
        assert p.prediction_error is not None
        dev = [s for s in p.stages if s.kind == "compute" and s.name.startswith("device")]
        assert all(s.measured_target and s.measured_target.kind == "measured_target" for s in dev)
    from app.commands.advise import _table

    text = _table(advice)  # the CLI's text table shows the per-plan error beside the figure
    assert "measured_target ms" in text and "prediction error" in text
    base = next(p for p in measured if p.id == "baseline.device")
    row = next(line for line in text.splitlines() if line.startswith("baseline.device "))
    assert f"{base.measured_target.ms:.3f}" in row and f"{base.prediction_error * 100:.1f}%" in row
    html = report.read_text()
    assert "measured_target" in html
    assert TOKEN not in html and TOKEN not in r.output


def test_validate_split_runs_partition_through_server(agent, tmp_path):
    path = tmp_path / "res.onnx"
    onnx.save(residual_block_model(), path)
    a = advise(
        AdviceRequest(
            model=str(path),
            device="rpi4",
            edge="edge_t4",
            up_mbps=50,
            down_mbps=50,
            rtt_ms=2,
            latency_ms=1000,
            runs=3,
            out_dir=str(tmp_path / "out"),
            plans=["baseline.device", "compress.boundary_int8", "partition.dag"],
            server_agent=agent,
            agent_token=TOKEN,
            validate_split=True,
        )
    )
    sv = a.split_validation
    assert sv is not None and sv.output_matches
    assert sv.end_to_end.kind == "measured_target" and sv.end_to_end.ms > 0
    assert set(sv.breakdown_ms) >= {"head", "network", "tail"}
    assert json.loads(a.model_dump_json())["split_validation"]["plan_id"] == sv.plan_id
    from advisor.report.renderers import render_html, render_markdown

    for text in (render_html(a), render_markdown(a)):
        assert "Split run through the server agent" in text and sv.plan_id in text


def test_unreachable_agent_is_a_clear_error(tmp_path):
    r = CliRunner().invoke(
        cli,
        [
            "advise",
            "digits_cnn",
            "--device",
            "rpi4",
            "--link",
            "wifi",
            "--latency-ms",
            "5",
            "--runs",
            "3",
            "--quiet",
            "--plan",
            "baseline.device",
            "--out",
            str(tmp_path),
            "--device-agent",
            "http://127.0.0.1:9",
            "--token",
            "x",
        ],
    )
    assert r.exit_code == 2 and "127.0.0.1:9" in r.output
