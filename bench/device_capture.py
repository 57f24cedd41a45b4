"""Capture a second machine's measurements once, to score target predictions against later.

    python -m bench.device_capture --out DIR [--threads 1,2,4,8,16] [--budget-s 360]

Run it on the machine to be predicted (a lent GPU box, a Pi, a server) when no agent can reach
it from here. It writes DIR/device_capture.json after every step, so a run cut short still
leaves what it measured:

- `suite`: the calibration suite at each thread count (`advisor.measure.suite.run_suite`, the
  same profile `edgedl hardware calibrate` saves);
- `cpu`: per model and thread count, two independent `profile_model` runs (per-node medians at
  ORT_ENABLE_BASIC, whole-run medians at ORT_ENABLE_ALL) — the first is what profile-on-target
  plans from, the second a repeat — and `alone_ms`, the model's median in one ORT_ENABLE_ALL
  session timed by itself, as a deployment runs it: the figure predictions are judged by;
- `gpu` (when torch sees CUDA): each architecture of `bench.archs` at batch 1 in torch, fp32
  and fp16, eager and replayed as a CUDA graph (median ms of timed runs, synchronised each run).

`python -m bench.bench_target --recorded DIR/device_capture.json` then predicts that machine
from a profile measured here and reports the errors (BENCHMARKS.md, section bench_target).
The models are the zoo's ONNX files and `bench.archs` architectures exported with seeded
weights, so both machines run the same computation.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ZOO = ["digits_cnn", "digits_multiexit", "resnet_style", "mobilenetv2_style", "transformer_encoder"]
CPU_ARCHS = ["squeezenet1_1", "mobilenet_v2", "resnet18"]
GPU_ARCHS = ["squeezenet1_1", "mobilenet_v2", "mobilenet_v1", "resnet18", "resnet50",
             "googlenet", "efficientnet_b0"]  # fmt: skip
RUNS = 15


def _write(out: Path, record: dict) -> None:
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(record, indent=1))
    tmp.replace(out)


def _log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def _export(name: str, folder: Path) -> Path:
    """The architecture as ONNX (dynamo exporter; the TorchScript one if dynamo fails)."""
    from bench.archs import export_onnx

    path = folder / f"{name}.onnx"
    if not path.exists():
        try:
            export_onnx(name, path)
        except Exception as exc:  # noqa: BLE001 - an older exporter: fall back, say so
            _log(f"dynamo export of {name} failed ({type(exc).__name__}); TorchScript export")
            export_onnx(name, path, dynamo=False, opset=17)
    return path


def capture_cpu(record: dict, out: Path, threads: list[int], models: list[str], deadline: float):
    from advisor.graph.load import load_model
    from advisor.measure.profile import profile_model
    from advisor.measure.suite import run_suite
    from advisor.measure.timing import measure_latency
    from advisor.model import sample_inputs

    _log(f"calibration suite at {threads} thread(s)")
    record["suite"] = run_suite(threads).model_dump(mode="json")
    _write(out, record)
    folder = Path(tempfile.mkdtemp(prefix="edgedl-capture-"))
    for name in models:
        if time.monotonic() > deadline:
            record["skipped"].append(f"cpu {name}: out of time")
            continue
        g = load_model(name if name in ZOO else str(_export(name, folder)))
        feeds = sample_inputs(g)
        runs = {}
        for t in threads:
            first = profile_model(g, feeds, runs=RUNS, threads=t, cache=False)
            again = profile_model(g, feeds, runs=RUNS, threads=t, cache=False)
            alone = measure_latency(g.model, feeds, runs=3 * RUNS, warmup=5, threads=t)
            runs[str(t)] = {"first": first.model_dump(mode="json"),
                            "again": again.model_dump(mode="json"),
                            "alone_ms": alone.median_ms, "alone_p90_ms": alone.p90_ms}  # fmt: skip
            _log(f"cpu {name} @{t}: profiled {first.end_to_end_ms:.3f} / "
                 f"{again.end_to_end_ms:.3f} ms, alone {alone.median_ms:.3f} ms")  # fmt: skip
        record["cpu"][name] = {"digest": g.digest, "by_threads": runs}
        _write(out, record)


def _median_ms(fn, runs: int = 50, warmup: int = 10) -> float:
    import torch

    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def _gpu_one(name: str, dtype) -> dict:
    import torch

    from bench.archs import build, example_input

    model = build(name, device="cuda").to(dtype)
    x = example_input(name, device="cuda")
    if x.is_floating_point():
        x = x.to(dtype)
    with torch.inference_mode():
        eager = _median_ms(lambda: model(x))
        static_x = x.clone()
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            for _ in range(3):
                model(static_x)
        torch.cuda.current_stream().wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            model(static_x)
        replay = _median_ms(graph.replay)
    return {"eager_ms": round(eager, 5), "cuda_graph_ms": round(replay, 5)}


def capture_gpu(record: dict, out: Path, archs: list[str], deadline: float) -> None:
    import torch

    if not torch.cuda.is_available():
        record["gpu"] = {"available": False}
        return
    record["gpu"] = {
        "available": True,
        "name": torch.cuda.get_device_name(0),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn_tf32": torch.backends.cudnn.allow_tf32,
        "matmul_tf32": torch.backends.cuda.matmul.allow_tf32,
        "models": {},
    }
    torch.backends.cudnn.benchmark = True
    for name in archs:
        if time.monotonic() > deadline:
            record["skipped"].append(f"gpu {name}: out of time")
            continue
        row = {}
        for label, dtype in (("fp32", torch.float32), ("fp16", torch.float16)):
            try:
                row[label] = _gpu_one(name, dtype)
            except Exception as exc:  # noqa: BLE001 - record and go on
                row[label] = {"error": f"{type(exc).__name__}: {exc}"[:300]}
        record["gpu"]["models"][name] = row
        _log(f"gpu {name}: {row}")
        _write(out, record)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="folder for device_capture.json")
    ap.add_argument("--threads", default="1,2,4,8,16")
    ap.add_argument("--models", default=",".join(ZOO + CPU_ARCHS))
    ap.add_argument("--gpu-archs", default=",".join(GPU_ARCHS))
    ap.add_argument("--budget-s", type=float, default=360.0, help="stop starting new models after")
    args = ap.parse_args(argv)
    threads = sorted({int(t) for t in args.threads.split(",")})
    threads = [t for t in threads if t <= (os.cpu_count() or 1)]
    out = Path(args.out) / "device_capture.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    import onnxruntime as ort

    from advisor.measure.environment import fingerprint

    record: dict = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
        "machine": fingerprint(1).model_dump(mode="json"),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "ort_providers": ort.get_available_providers(),
        "threads": threads,
        "cpu": {},
        "skipped": [],
    }
    deadline = time.monotonic() + args.budget_s
    # GPU first: it is quick, and the CPU part uses the whole budget left
    capture_gpu(record, out, [a for a in args.gpu_archs.split(",") if a], deadline)
    _write(out, record)
    capture_cpu(record, out, threads, [m for m in args.models.split(",") if m], deadline)
    record["seconds"] = round(args.budget_s - (deadline - time.monotonic()), 1)
    _write(out, record)
    _log(f"wrote {out} ({record['seconds']} s; skipped: {record['skipped'] or 'nothing'})")
    return record


if __name__ == "__main__":
    main()
