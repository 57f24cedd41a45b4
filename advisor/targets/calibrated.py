"""A target built from a measured profile: what `edgedl hardware calibrate --save ID` writes.

`measure_target()` runs the calibration suite (`advisor.measure.suite`) here, or on a device
through its agent's /calibrate route, and `target_from_profile()` turns the result into a
catalog `Target` whose every figure says it was measured, where and when. Saved with
`advisor.targets.catalog.save_target`, it is listed beside the built-in targets and used by
id in `advise`; its per-class rates drive `target_profile` predictions.

>>> from advisor.measure.suite import MeasuredProfile, RatePoint, ThreadRates
>>> pts = [RatePoint(work=1e8, rate=40.0, ms=2.5)]
>>> rates = {"conv": pts, "elementwise": [RatePoint(work=1e7, rate=9.0, ms=1.1)]}
>>> prof = MeasuredProfile(cpu_model="Cortex-A72", fingerprint_key="ab12", ort_version="1.20",
...     date="2026-12-01", by_threads={4: ThreadRates(threads=4, rates=rates, dispatch_us=3,
...     call_ms=0.05)})
>>> t = target_from_profile(prof, "my_pi", memory_gb=4.0)
>>> t.peak_gflops, t.mem_bandwidth_gbps, t.measured
({'fp32': 40.0}, 9.0, True)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from advisor.errors import AgentError
from advisor.measure.suite import MeasuredProfile, auto_threads, run_suite
from advisor.targets.catalog import Precision, Target

__all__ = ["measure_target", "target_from_profile"]

_FP32 = ("conv", "conv1x1", "dense")
_INT8 = ("conv_int8", "dense_int8")


def measure_target(
    threads: Sequence[int] | None,
    *,
    agent: str | None = None,
    token: str | None = None,
    quick: bool = False,
) -> tuple[MeasuredProfile, float]:
    """(the measured profile, the machine's memory in GB): here, or on `agent`'s machine.
    `threads` None measures 1 and each power of two up to that machine's cores."""
    if agent is None:
        import psutil

        counts = auto_threads() if threads is None else threads
        return run_suite(counts, quick=quick), round(psutil.virtual_memory().total / 1e9, 1)
    from advisor.agent import AgentClient

    n = 6 if threads is None else len(threads)
    with AgentClient(agent, token, timeout=max(120.0, 90.0 * n)) as client:
        answer = client.calibrate(None if threads is None else list(threads), quick=quick)
    try:
        return MeasuredProfile.model_validate(answer["profile"]), float(answer["memory_gb"])
    except (KeyError, TypeError, ValueError) as exc:
        raise AgentError(
            f"the agent at {agent} answered /calibrate without a valid profile ({exc}); "
            "install this version of the edgedl-advisor package on the agent's machine"
        ) from None


def _best(profile: MeasuredProfile, classes: Sequence[str]) -> float | None:
    rates = [
        p.rate for tr in profile.by_threads.values() for c in classes for p in tr.rates.get(c, [])
    ]
    return max(rates) if rates else None


def target_from_profile(
    profile: MeasuredProfile,
    target_id: str,
    *,
    memory_gb: float,
    name: str | None = None,
    tier: Literal["device", "edge", "cloud"] = "device",
) -> Target:
    """A CPU target whose peaks are the best attained rates of the suite (fp32: Conv/MatMul;
    int8: QLinearConv/MatMulInteger; bandwidth: the element-wise pass), with the profile."""
    src = profile.source()
    counts = ", ".join(str(t) for t in profile.thread_counts)
    peaks: dict[Precision, float] = {}
    sources = {"memory_gb": f"{src}: total memory of the machine"}
    fp32 = _best(profile, _FP32)
    if fp32 is None:
        raise AgentError("the calibration measured no fp32 Conv or MatMul rate; run it again")
    peaks["fp32"] = round(fp32, 3)
    sources["peak_gflops.fp32"] = (
        f"{src}: best attained fp32 Conv/MatMul rate over the suite's sizes at {counts} "
        "thread(s) (attained, not a datasheet peak)"
    )
    int8 = _best(profile, _INT8)
    if int8 is not None:
        peaks["int8"] = round(int8, 3)
        sources["peak_gflops.int8"] = (
            f"{src}: best attained int8 QLinearConv/MatMulInteger rate at {counts} thread(s)"
        )
    bandwidth = _best(profile, ("elementwise",)) or 1.0
    sources["mem_bandwidth_gbps"] = f"{src}: best attained element-wise Add rate (GB/s moved)"
    cores = max(profile.thread_counts)
    sources["cores"] = f"{src}: the largest thread count measured"
    return Target(
        id=target_id,
        name=name or f"{profile.cpu_model or 'CPU'} (measured, {counts} thread(s))",
        tier=tier,
        kind="cpu",
        peak_gflops=peaks,
        mem_bandwidth_gbps=round(bandwidth, 3),
        memory_gb=max(memory_gb, 0.1),
        precisions=list(peaks),
        sources=sources,
        cores=cores,
        profile=profile,
        notes=f"Measured target profile ({profile.seconds:g} s of measurement). Predictions "
        "for it use the per-class rates, dispatch and call costs below, not the peaks.",
    )
