"""Hand-built `Advice` objects for report and run-store tests (no model is run).

`make_advice(evil=...)` builds a three-tier-ish advice: a recommended partition, a candidate
baseline that misses the target, a rejected INT8 plan and a skipped planner, per-layer rows,
citations and a command. With `evil`, a node name, a layer name, a plan title, a reason and
the model name carry that string, so escaping can be checked.
"""

from __future__ import annotations

from advisor.advice import (
    Advice,
    AdviceRequest,
    Citation,
    Fidelity,
    Latency,
    LayerRow,
    ModelSummary,
    PlanResult,
    Stage,
)

EVIL = "<script>alert(1)</script>"


def _lat(ms: float, kind: str, method: str = "test method", p90: float | None = None):
    return Latency(ms=ms, kind=kind, method=method, p90_ms=p90)  # type: ignore[arg-type]


def _compute(name: str, target: str, pred: float, host: float) -> Stage:
    return Stage(
        name=name,
        kind="compute",
        target=target,
        predicted=_lat(pred, "predicted_target", "sum of per-node predictions"),
        measured_host=_lat(host, "measured_host", "ORT CPU, median of 3", host * 1.1),
        nodes=4,
    )


def make_advice(evil: str | None = None, recommended: bool = True) -> Advice:
    tag = evil or ""
    req = AdviceRequest(
        model="digits_cnn", device="rpi4", edge="edge_t4", link="wifi", latency_ms=5, runs=3
    )
    fid_ok = Fidelity(
        samples=64,
        max_abs_error=1.2e-6,
        cosine=1.0,
        top1_agreement=1.0,
        accuracy=0.97,
        baseline_accuracy=0.97,
        accuracy_drop_points=0.0,
    )
    fid_q = Fidelity(
        samples=64,
        max_abs_error=0.08,
        cosine=0.998,
        top1_agreement=0.95,
        accuracy=0.93,
        baseline_accuracy=0.97,
        accuracy_drop_points=4.0,
    )
    cite = [
        Citation(entry_id="neurosurgeon", name="Neurosurgeon", source="Kang et al., ASPLOS, 2017")
    ]
    split = PlanResult(
        id="partition.chain",
        kind="partition.chain",
        title=f"Split after conv2 {tag}".strip(),
        params={"cut": f"relu2{tag}"},
        status="recommended" if recommended else "candidate",
        stages=[
            _compute("device compute", "rpi4", 1.5, 0.2),
            Stage(
                name="uplink transfer",
                kind="transfer",
                target="wifi",
                bytes=3136,
                predicted=_lat(1.2, "predicted_target", "link model"),
            ),
            _compute("edge compute", "edge_t4", 0.3, 0.1),
        ],
        predicted=_lat(3.0, "predicted_target", "sum of stage predictions"),
        measured_host=_lat(1.5, "measured_host", "compute measured on this host", 1.7),
        fidelity=fid_ok,
        size_bytes=12_000,
        meets_latency=True,
        meets_accuracy=True,
        rationale=f"Cut after the second block {tag}.".strip(),
        citations=cite,
        artifacts=["/tmp/x/partition.chain/0_device_fp32.onnx"],
    )
    base = PlanResult(
        id="baseline.device",
        kind="baseline.device",
        title="FP32 on the device",
        status="misses_target",
        stages=[_compute("device compute", "rpi4", 7.5, 0.9)],
        predicted=_lat(7.5, "predicted_target"),
        measured_host=_lat(0.9, "measured_host"),
        fidelity=fid_ok,
        size_bytes=80_000,
        meets_latency=False,
        meets_accuracy=True,
        reasons=["predicted 7.5 ms misses the 5 ms target"],
    )
    int8 = PlanResult(
        id="quantize.static",
        kind="quantize.static",
        title="INT8 static",
        status="rejected",
        stages=[_compute("device compute", "rpi4", 2.5, 0.5)],
        predicted=_lat(2.5, "predicted_target"),
        measured_host=_lat(0.5, "measured_host"),
        fidelity=fid_q,
        meets_latency=True,
        meets_accuracy=False,
        reasons=[f"accuracy drops 4.00 points (budget 1) {tag}".strip()],
    )
    skipped = PlanResult(
        id="partition.three_tier",
        kind="partition.three_tier",
        title="Device, edge and cloud",
        status="skipped",
        reasons=["no cloud target given; add --cloud"],
    )
    layers = [
        LayerRow(
            name=f"conv1{tag}",
            op_type="Conv",
            layer=f"features.0{tag}",
            flops=100_000,
            output_bytes=12_544,
            host_ms=0.05,
            device_ms=0.4,
            server_ms=0.01,
        ),
        LayerRow(
            name="relu1",
            op_type="Relu",
            layer=f"features.0{tag}",
            flops=3_136,
            output_bytes=12_544,
            host_ms=0.01,
            device_ms=0.05,
            server_ms=0.001,
        ),
        LayerRow(
            name="conv2",
            op_type="Conv",
            layer="features.2",
            flops=400_000,
            output_bytes=3_136,
            host_ms=0.08,
            device_ms=0.9,
            server_ms=0.02,
        ),
        LayerRow(
            name="fc",
            op_type="Gemm",
            layer="classifier",
            flops=20_000,
            output_bytes=40,
            host_ms=0.02,
            device_ms=0.1,
            server_ms=0.005,
        ),
    ]
    plans = [split, base, int8, skipped]
    return Advice(
        request=req,
        model=ModelSummary(
            name=f"digits_cnn{tag}",
            source="zoo:digits_cnn",
            digest="ab" * 32,
            nodes=4,
            flops=523_136,
            params_bytes=80_000,
            inputs={"x": [1, 1, 28, 28]},
            outputs={"logits": [1, 10]},
        ),
        environment={
            "cpu_model": "Test CPU",
            "isa_flags": ["avx2", "fma"],
            "threads": 1,
            "ort_version": "1.32.0",
        },
        calibration={"gflops_fp32": 40.5, "bandwidth_gbps": 12.0, "method": "matmul + copy"},
        link={
            "id": "wifi",
            "name": "Wi-Fi 802.11ac",
            "up_mbps": 50.0,
            "down_mbps": 100.0,
            "rtt_ms": 4.0,
            "sources": {"up_mbps": "survey"},
        },
        plans=plans,
        recommended="partition.chain" if recommended else None,
        pareto=["partition.chain"],
        layers=layers,
        profile_self_check={"node_sum_ms": 0.16, "end_to_end_basic_ms": 0.18, "error": 0.11},
        notices=[f"using the zoo's held-out labelled split {tag}".strip()],
        command="edgedl advise digits_cnn --device rpi4 --edge edge_t4 --link wifi "
        "--latency-ms 5 --runs 3",
        stage_seconds={"profile": 0.5, "total": 2.0},
    )
