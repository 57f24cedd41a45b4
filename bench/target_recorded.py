"""Score target predictions against a second machine's recorded measurements.

A capture (`python -m bench.device_capture` run on that machine, saved under
bench/results/devices/) holds its calibration suite, per-node profiles per thread count, each
model's time in one ORT_ENABLE_ALL session timed alone (`alone_ms`, the truth here), and
torch CUDA batch-1 timings when it has a GPU. `bench.bench_target` calls `score()` for every
capture it finds:

- cross-machine: each model profiled here at 1 thread, predicted for that machine at each
  recorded thread count from its suite (`advisor.targets.predict`, as `advise` does with a
  calibrated target), against `alone_ms` there. This host's figures are taken afresh (its
  suite at the start of scoring, then PROFILES profiles per model) and each count's figure
  is the median of the PROFILES predictions (from one profile each, this case's median
  error ranged 10-15% over six runs in one day, as this VM's speed moved);
- thread counts there: its own 1-thread per-node profile, predicted at 2+ threads from its own
  suite (`ratio_node_ms`, the step `advise` takes), against `alone_ms`;
- profile on target: the first profile's whole-run figure (what planning from per-node times
  measured there scales to), against `alone_ms`;
- best thread count: the count the predictions pick against the measured best (regret);
- GPU: the catalog's `cloud_h100` priors (the nearest catalog entry: same compute as the
  H200, less memory bandwidth) against torch eager and CUDA-graph replay.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np

from advisor.graph.load import load_model
from advisor.measure.calibrate import calibrate
from advisor.measure.profile import Profile, profile_model
from advisor.measure.suite import MeasuredProfile, host_profile
from advisor.model import sample_inputs
from advisor.targets.calibrated import target_from_profile
from advisor.targets.catalog import load_catalog
from advisor.targets.methods import ratio_node_ms
from advisor.targets.predict import opt_level_scale, predict, predict_model
from bench.common import ROOT

DEVICES = ROOT / "bench" / "results" / "devices"
ZOO = ["digits_cnn", "digits_multiexit", "resnet_style", "mobilenetv2_style", "transformer_encoder"]
GPU_TARGET = "cloud_h100"
PROFILES = 3  # this host's profiles per model in the cross-machine case (median prediction)


def captures() -> list[Path]:
    return sorted(DEVICES.glob("*.json.gz"))


def _graph(name: str, folder: Path):
    from bench.device_capture import _export

    return load_model(name if name in ZOO else str(_export(name, folder)))


def _row(model: str, threads: int | str, pred: float, true: float) -> dict:
    return {"model": f"{model} @{threads}", "predicted_ms": pred, "measured_ms": true,
            "error": pred / true - 1, "regret": float("nan")}  # fmt: skip


def predict_at(
    g, profile: Profile, scale: float, ref: MeasuredProfile, target: MeasuredProfile, t: int
) -> float:
    """The whole model on `target` at exactly `t` threads, by the arithmetic `advise` uses for
    a calibrated target (`targets.predict._from_profile`: `ratio_node_ms` per node plus the
    target's call cost), from `profile`'s per-node times × `scale` (its ALL/BASIC scale) on
    the machine whose suite is `ref`. `advise` itself runs each stage at its fastest measured
    count; the 'thread count picked' rows score that choice."""
    infos = {n.name: n for n in g.nodes}
    total = sum(
        ratio_node_ms(infos[n], nt.median_ms * scale, ref, profile.threads, target, t)
        for n, nt in profile.nodes.items()
        if n in infos
    )
    return total + target.at(t).call_ms


def _own_threads(g, rec: dict, suite: MeasuredProfile, t: int) -> float:
    """That machine's 1-thread per-node profile, stepped to `t` threads with its own suite."""
    one = Profile.model_validate(rec["by_threads"]["1"]["first"])
    return predict_at(g, one, one.end_to_end_ms / one.node_sum_ms, suite, suite, t)


def score(path: Path, folder: Path) -> dict:
    """Rows per case for one capture (see the module docstring)."""
    rec = json.loads(gzip.open(path).read())
    suite = MeasuredProfile.model_validate(rec["suite"])
    cases: dict[str, list[dict]] = {"cross": [], "threads": [], "on_target": [], "best": []}
    here_cal = calibrate(threads=1)
    ref = host_profile(1, cache=False)  # this host's rates, measured beside its profiles
    recorded = target_from_profile(suite, "recorded", memory_gb=1.0)
    for name, model in rec["cpu"].items():
        g = _graph(name, folder)
        profiles = [
            profile_model(g, sample_inputs(g), runs=15, threads=1, cache=False)
            for _ in range(PROFILES)
        ]
        here = profiles[0]
        truth: dict[int, float] = {}
        for key, run in model["by_threads"].items():
            t = int(key)
            truth[t] = run["alone_ms"]
            preds = [
                predict_at(g, p, opt_level_scale(p, here_cal), ref, suite, t) for p in profiles
            ]
            pred = float(np.median(preds))
            cases["cross"].append(_row(name, t, pred, truth[t]))
            first = Profile.model_validate(run["first"]).end_to_end_ms
            cases["on_target"].append(_row(name, t, first, truth[t]))
            if t > 1:
                cases["threads"].append(_row(name, t, _own_threads(g, model, suite, t), truth[t]))
        # what advise() does: every measured count, the fastest predicted one chosen
        pick = predict(g, here, recorded, here_cal).threads or 1
        best = min(truth, key=lambda k: truth[k])
        cases["best"].append({"model": name, "predicted_best": pick, "measured_best": best,
                              "regret": truth[pick] / truth[best] - 1})  # fmt: skip
    cases["gpu"] = _gpu(rec.get("gpu") or {}, folder)
    machine = rec["machine"]
    where = (f"{machine.get('cpu_model')}, {machine.get('physical_cores')} cores, ONNX Runtime "
             f"{machine.get('ort_version')}; recorded {rec['date']} ({path.name})")  # fmt: skip
    gpu = rec.get("gpu") or {}
    if gpu.get("available"):
        where += f"; GPU {gpu['name']}, torch {gpu['torch']}, CUDA {gpu['cuda']}"
    return {"where": where, "cases": cases}


def _gpu(gpu: dict, folder: Path) -> list[dict]:
    if not gpu.get("available"):
        return []
    target = load_catalog(user=False).target(GPU_TARGET)
    rows = []
    for name, by_precision in gpu["models"].items():
        fp32 = by_precision.get("fp32") or {}
        if "eager_ms" not in fp32:
            continue
        g = _graph(name, folder)
        p = predict_model(g.model, target, "fp32")
        pred = p.total_ms + p.run_overhead_ms
        for how in ("eager_ms", "cuda_graph_ms"):
            row = _row(name, how.removesuffix("_ms").replace("_", " "), pred, fp32[how])
            rows.append(row)
    return rows
