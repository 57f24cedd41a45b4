"""The advisor's typed request and result: `AdviceRequest` in, `Advice` out.

Every latency is a `Latency` that carries its kind — `measured_host` (run here in ONNX
Runtime), `measured_target` (run on the target by an agent) or `predicted_target` (scaled
from host measurements to the target's roofline) — with units (ms) and the method.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

LatencyKind = Literal["measured_host", "measured_target", "predicted_target"]
# "misses_target": valid (fidelity kept) but its predicted latency misses the target;
# "not_validated": predicted to miss the latency target beyond the predictor's error band, so
# not built and timed (AdviceRequest.validate_all builds it anyway)
PlanStatus = Literal[
    "recommended", "candidate", "misses_target", "rejected", "not_validated", "skipped"
]
#: what the recommendation optimises once a plan meets the target and the accuracy budget
Prefer = Literal["accuracy", "latency", "size"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AdviceRequest(_Model):
    """What the user asks: a model, where it may run, over which link, and how fast."""

    # every number a user gives must be finite: an infinite link or target once produced
    # plans at "inf ms" and a stored run that JSON could not carry
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    model: str = Field(description="path to an .onnx file, or a zoo id such as 'digits_cnn'")
    input_shapes: dict[str, list[int]] = Field(
        default_factory=dict, description="values for symbolic dimensions, per input name"
    )
    device: str = Field(description="hardware id of the end device (see `edgedl hardware list`)")
    edge: str | None = Field(default=None, description="hardware id of the edge server")
    cloud: str | None = Field(default=None, description="hardware id of the cloud server")
    link: str | None = Field(default=None, description="link preset id for device <-> server")
    up_mbps: float | None = Field(default=None, gt=0)
    down_mbps: float | None = Field(default=None, gt=0)
    rtt_ms: float | None = Field(default=None, ge=0)
    cloud_link: str = Field(default="ethernet", description="link preset for edge <-> cloud")
    latency_ms: float = Field(gt=0, description="end-to-end latency target in ms")
    accuracy_budget: float | None = Field(
        default=None,
        ge=0,
        le=100,
        description="max allowed drop in task accuracy, in percentage points (needs labels)",
    )
    min_agreement: float = Field(
        default=0.99, gt=0, le=1, description="min top-1 agreement with FP32 when no labels"
    )
    prefer: Prefer = Field(
        default="accuracy",
        description="among plans that meet the target and the budget: 'accuracy' (least "
        "accuracy lost, then the simplest plan; the default), 'latency' (the fastest) or "
        "'size' (the smallest model on the device)",
    )
    data: str | None = Field(default=None, description=".npz with inputs (and labels y)")
    calib_data: str | None = Field(
        default=None,
        description=".npz that static INT8 is calibrated on (else the first samples of `data` "
        "are held back for it and never evaluated)",
    )
    allow_nonfinite: bool = Field(
        default=False,
        description="accept NaN/inf FP32 outputs: fidelity compares the samples with finite ones",
    )
    max_memory: int | None = Field(
        default=None, gt=0, description="memory limit in bytes (default: available memory)"
    )
    plans: list[str] | None = Field(default=None, description="only these plan kinds")
    exits: list[str] | None = Field(
        default=None,
        description="outputs that are early exits, shallowest first and the final one last "
        "(a multi-exit model; zoo models declare theirs)",
    )
    runs: int = Field(default=20, ge=3, le=1000, description="timed runs per measurement")
    threads: int = Field(default=1, ge=1, le=256, description="ORT intra-op threads")
    catalog: list[str] = Field(
        default_factory=list, description="extra target files read besides the catalog"
    )
    target_threads: int | None = Field(
        default=None,
        ge=1,
        le=256,
        description="CPU threads a target may use; default: its best measured count or all "
        "its cores",
    )
    measurement: Literal["adaptive", "quick", "exhaustive"] = Field(
        default="adaptive",
        description="adaptive: time until each figure or decision is settled (95% interval, "
        "floor and cap of runs); quick: fewer runs, labelled so; exhaustive: the fixed counts "
        "(`runs` per stage, 7 guard rounds), for comparison",
    )
    validate_all: bool = Field(
        default=False,
        description="build and time every plan, also those predicted to miss the latency "
        "target beyond the predictor's error band",
    )
    max_eval_samples: int = Field(default=512, ge=1)
    out_dir: str | None = Field(default=None, description="folder for plan artifacts")
    device_agent: str | None = Field(default=None, description="URL of an agent on the device")
    server_agent: str | None = Field(default=None, description="URL of an agent on the server")
    validate_split: bool = Field(
        default=False, description="run the recommended partition through the server agent"
    )
    emulate_link: bool = Field(
        default=True, description="pace the split run at the request's link (else real network)"
    )
    agent_token: str | None = Field(default=None, exclude=True, repr=False)

    @model_validator(mode="after")
    def _one_link(self) -> AdviceRequest:
        custom = (self.up_mbps, self.down_mbps, self.rtt_ms)
        if self.link is None and any(v is None for v in custom):
            raise ValueError(
                "give a link preset (--link wifi) or all of --up-mbps, --down-mbps and --rtt-ms"
            )
        if self.link is not None and any(v is not None for v in custom):
            raise ValueError("give either a link preset or a custom link, not both")
        if self.validate_split and not self.server_agent:
            raise ValueError("--validate split needs --server-agent URL")
        return self

    def command(self) -> str:
        """The `edgedl advise` command line that reproduces this request."""
        import shlex

        req = self
        parts = ["edgedl", "advise", req.model, "--device", req.device]
        for flag, v in (
            ("--edge", req.edge),
            ("--cloud", req.cloud),
            ("--link", req.link),
            ("--up-mbps", req.up_mbps),
            ("--down-mbps", req.down_mbps),
            ("--rtt-ms", req.rtt_ms),
            ("--latency-ms", req.latency_ms),
            ("--accuracy-budget", req.accuracy_budget),
            ("--data", req.data),
            ("--calib-data", req.calib_data),
            ("--max-memory", req.max_memory),
        ):
            if v is not None:
                parts += [flag, str(v)]
        for name, shape in req.input_shapes.items():
            parts += ["--input-shape", f"{name}={'x'.join(map(str, shape))}"]
        if req.min_agreement != 0.99:
            parts += ["--min-agreement", str(req.min_agreement)]
        if req.prefer != "accuracy":
            parts += ["--prefer", req.prefer]
        if req.cloud_link != "ethernet":
            parts += ["--cloud-link", req.cloud_link]
        if req.runs != 20:
            parts += ["--runs", str(req.runs)]
        if req.threads != 1:
            parts += ["--threads", str(req.threads)]
        if req.measurement != "adaptive":
            parts += [f"--{req.measurement}"]
        if req.validate_all:
            parts += ["--validate-all"]
        if req.target_threads is not None:
            parts += ["--target-threads", str(req.target_threads)]
        for f in req.catalog:
            parts += ["--catalog", f]
        for p in req.plans or []:
            parts += ["--plan", p]
        for e in req.exits or []:
            parts += ["--exit", e]
        if req.allow_nonfinite:
            parts += ["--allow-nonfinite"]
        if req.device_agent:
            parts += ["--device-agent", req.device_agent]
        if req.server_agent:
            parts += ["--server-agent", req.server_agent]
        if req.validate_split:
            parts += ["--validate", "split"]
            if not req.emulate_link:
                parts += ["--no-emulate-link"]
        return shlex.join(parts)


LatencySource = Literal["measured_host", "measured_target", "target_profile", "catalog_priors"]


class Latency(_Model):
    """A latency in ms, what it is (`kind`), how it was obtained (`method`) and, for a
    prediction, what it rests on (`source`) and how far off it is expected to be (`band`:
    the measured value lies in ms * exp(±band) for about 80% of validated cases)."""

    ms: float
    kind: LatencyKind
    method: str
    target: str | None = None
    p90_ms: float | None = None
    source: LatencySource | None = None
    band: float | None = None  # ln-space half-width; None for measurements

    @property
    def low_ms(self) -> float:
        return self.ms * math.exp(-(self.band or 0.0))

    @property
    def high_ms(self) -> float:
        return self.ms * math.exp(self.band or 0.0)

    def band_text(self) -> str:
        """'0.82–1.6 ms (catalog priors)' for a prediction with a band, '' otherwise."""
        if not self.band:
            return ""
        label = (self.source or "").replace("_", " ")
        return f"{self.low_ms:.3g}–{self.high_ms:.3g} ms" + (f" ({label})" if label else "")


class Stage(_Model):
    """One step of a plan: compute on a tier, or a transfer between tiers."""

    name: str  # e.g. 'device compute', 'uplink transfer', 'edge compute'
    kind: Literal["compute", "transfer"]
    target: str | None  # hardware id, or link id for transfers
    predicted: Latency | None = None  # predicted_target on `target`
    measured_host: Latency | None = None  # compute measured here; transfer computed from bytes
    measured_target: Latency | None = None
    bytes: int | None = None  # bytes crossing, for transfers
    nodes: int | None = None  # graph nodes in this compute stage


class Fidelity(_Model):
    """How far the plan's outputs are from the FP32 model's, on the same inputs."""

    samples: int
    max_abs_error: float
    cosine: float
    top1_agreement: float | None = None
    accuracy: float | None = None  # task accuracy (fraction) when labels were given
    baseline_accuracy: float | None = None
    accuracy_drop_points: float | None = None


class Citation(_Model):
    entry_id: str
    name: str
    source: str  # authors, venue, year


class PlanResult(_Model):
    id: str
    kind: str  # a kb.schema.PlanKind value
    title: str
    params: dict[str, object] = Field(default_factory=dict)
    status: PlanStatus
    reasons: list[str] = Field(default_factory=list)
    stages: list[Stage] = Field(default_factory=list)
    predicted: Latency | None = None  # end to end, predicted_target
    measured_host: Latency | None = None  # end to end on this host (+ computed transfer)
    measured_target: Latency | None = None
    prediction_error: float | None = None  # |pred - measured| / measured, where both exist
    fidelity: Fidelity | None = None
    size_bytes: int | None = None  # bytes of the model(s) the device must hold
    meets_latency: bool | None = None
    meets_accuracy: bool | None = None
    rationale: str = ""
    citations: list[Citation] = Field(default_factory=list)
    artifacts: list[str] = Field(default_factory=list)
    extra: dict[str, object] = Field(default_factory=dict)  # planner-specific tables


class LayerRow(_Model):
    name: str
    op_type: str
    layer: str
    flops: int
    output_bytes: int
    host_ms: float  # measured_host per-node median (ORT_ENABLE_BASIC profiler)
    device_ms: float | None = None  # predicted_target on the device
    server_ms: float | None = None  # predicted_target on the edge (or cloud) server


class ModelSummary(_Model):
    name: str
    source: str
    digest: str
    nodes: int
    flops: int
    params_bytes: int
    inputs: dict[str, list[int]]
    outputs: dict[str, list[int]]


class SplitValidation(_Model):
    """The recommended partition run for real: head here, tail on the server agent."""

    plan_id: str
    server_agent: str
    link: str  # 'emulated <id>' (paced on the client) or 'real'
    repeats: int
    end_to_end: Latency  # measured_target: the whole request, median
    p90_ms: float
    breakdown_ms: dict[str, float]  # head, serialize, network, tail, return, deserialize
    planned_ms: float  # the plan's own figure for the same setting (measured_host + link model)
    max_abs_error: float  # joined output vs the full model's
    output_matches: bool


class SampleCounts(_Model):
    """Which samples calibrated static INT8 and which measured fidelity: disjoint sets."""

    calibration: int
    calibration_source: str
    evaluation: int
    evaluation_source: str
    nonfinite_dropped: int = 0  # evaluation inputs left out for NaN/inf FP32 outputs


class Advice(_Model):
    """The advisor's result: every plan tried, what was measured, and what is recommended."""

    request: AdviceRequest
    model: ModelSummary
    environment: dict[str, object]
    calibration: dict[str, object]
    link: dict[str, object]
    plans: list[PlanResult]
    recommended: str | None
    pareto: list[str] = Field(default_factory=list)
    layers: list[LayerRow] = Field(default_factory=list)
    profile_self_check: dict[str, float] = Field(default_factory=dict)
    notices: list[str] = Field(default_factory=list)
    command: str = ""
    stage_seconds: dict[str, float] = Field(default_factory=dict)
    split_validation: SplitValidation | None = None
    samples: SampleCounts | None = None  # "calibrated on K, evaluated on N"
    created: str = Field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))

    def plan(self, plan_id: str) -> PlanResult:
        for p in self.plans:
            if p.id == plan_id:
                return p
        raise KeyError(plan_id)

    @property
    def recommended_plan(self) -> PlanResult | None:
        return self.plan(self.recommended) if self.recommended else None
