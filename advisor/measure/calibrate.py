"""This host's attained ceilings (`calibrate`): GEMM throughput, memory bandwidth, int8 rate
and the fixed cost of one inference call, measured by short ONNX Runtime micro-benchmarks and
cached per environment fingerprint and thread count.
"""

from __future__ import annotations

import math
import time

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper
from pydantic import BaseModel, ConfigDict, ValidationError

from advisor import cache as _cache
from advisor.errors import RequestError
from advisor.measure.environment import fingerprint
from advisor.measure.timing import make_session

__all__ = ["Calibration", "calibrate"]

_GEMM_N = 512  # 2*N^3 = 268 MFLOP per run: milliseconds on any CPU this runs on
_COPY_MB = 32  # fp32 array far larger than any last-level cache
_REPEATS = 12
_CAL_VERSION = 2  # bump when the micro-benchmark changes, so old cache entries are ignored


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Calibration(_Frozen):
    """This host's attained ceilings at a thread count (best of repeated micro-benchmarks)."""

    gflops_fp32: float
    gops_int8: float | None = None
    bandwidth_gbps: float
    method: str
    fingerprint_key: str
    threads: int
    run_overhead_ms: float = 0.0  # one session.run() of a trivial model: per-inference cost
    version: int = _CAL_VERSION
    seconds: float = 0.0  # how long the micro-benchmark took
    cached: bool = False


def _best_ms(sess: ort.InferenceSession, binding: ort.IOBinding, repeats: int) -> float:
    sess.run_with_iobinding(binding)  # warm-up: arena allocation, first-touch pages
    best = math.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        sess.run_with_iobinding(binding)
        best = min(best, time.perf_counter() - t0)
    return best * 1e3


def _bench(
    model: onnx.ModelProto, feeds: dict[str, np.ndarray], threads: int, repeats: int
) -> float:
    sess = make_session(model, threads=threads, opt_level="basic")
    binding = sess.io_binding()
    for name, arr in feeds.items():
        binding.bind_cpu_input(name, arr)
    for out in sess.get_outputs():
        binding.bind_output(out.name)  # ORT-allocated, reused between runs
    return _best_ms(sess, binding, repeats)


def _one_node_model(
    node: onnx.NodeProto, inputs: list, outputs: list, inits: list
) -> onnx.ModelProto:
    graph = helper.make_graph([node], "calibration", inputs, outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8  # opset 17's IR; helper's default (newest) is refused by older ORT
    return model


def _measure_ceilings(threads: int) -> tuple[float, float | None, float]:
    rng = np.random.default_rng(0)
    n = _GEMM_N
    vi = helper.make_tensor_value_info
    # fp32 GEMM: ORT's MLAS SGEMM, the kernel behind Conv/MatMul/Gemm nodes
    b = numpy_helper.from_array(rng.standard_normal((n, n)).astype(np.float32), "b")
    gemm = _one_node_model(
        helper.make_node("MatMul", ["a", "b"], ["c"]),
        [vi("a", TensorProto.FLOAT, [n, n])], [vi("c", TensorProto.FLOAT, [n, n])], [b],
    )  # fmt: skip
    a = rng.standard_normal((n, n)).astype(np.float32)
    gflops = 2 * n**3 / (_bench(gemm, {"a": a}, threads, _REPEATS) * 1e6)
    # int8 GEMM: MLAS u8 x s8 -> s32, the kernel behind quantized MatMul/Conv
    bq = numpy_helper.from_array(rng.integers(-127, 127, (n, n), dtype=np.int8), "bq")
    igemm = _one_node_model(
        helper.make_node("MatMulInteger", ["aq", "bq"], ["cq"]),
        [vi("aq", TensorProto.UINT8, [n, n])], [vi("cq", TensorProto.INT32, [n, n])], [bq],
    )  # fmt: skip
    aq = rng.integers(0, 255, (n, n), dtype=np.uint8)
    try:
        gops: float | None = 2 * n**3 / (_bench(igemm, {"aq": aq}, threads, _REPEATS) * 1e6)
    except Exception:  # noqa: BLE001 - an ORT build without MatMulInteger: no int8 ceiling
        gops = None
    # bandwidth: one element-wise pass over a large fp32 array (read once, write once)
    count = _COPY_MB * 2**20 // 4
    scale = numpy_helper.from_array(np.array(1.0001, dtype=np.float32), "s")
    stream = _one_node_model(
        helper.make_node("Mul", ["x", "s"], ["y"]),
        [vi("x", TensorProto.FLOAT, [count])], [vi("y", TensorProto.FLOAT, [count])], [scale],
    )  # fmt: skip
    x = np.full(count, 0.5, dtype=np.float32)  # values do not matter; RNG would cost more
    ms = _bench(stream, {"x": x}, threads, _REPEATS // 2)
    gbps = 2 * x.nbytes / (ms * 1e6)
    return gflops, gops, gbps


def _run_overhead_ms(threads: int) -> float:
    """Median wall time of session.run() on a one-Identity model: the per-inference cost
    (input checks, output allocation, executor start) that no node's kernel time includes."""
    vi = helper.make_tensor_value_info
    ident = _one_node_model(
        helper.make_node("Identity", ["x"], ["y"]),
        [vi("x", TensorProto.FLOAT, [4])], [vi("y", TensorProto.FLOAT, [4])], [],
    )  # fmt: skip
    sess = make_session(ident, threads=threads, opt_level="all")
    feed = {"x": np.zeros(4, dtype=np.float32)}
    for _ in range(50):
        sess.run(None, feed)
    times = []
    for _ in range(300):
        t0 = time.perf_counter()
        sess.run(None, feed)
        times.append(time.perf_counter() - t0)
    return float(np.median(times)) * 1e3


def calibrate(threads: int = 1, cache: bool = True) -> Calibration:
    """Host compute and bandwidth ceilings at `threads`, cached per environment fingerprint."""
    if threads < 1:
        raise RequestError(f"threads must be at least 1 (got {threads})")
    fp = fingerprint(threads)
    key = f"{fp.key()}-v{_CAL_VERSION}"
    if cache:
        hit = _cached(key)
        if hit is not None:
            return hit
    t0 = time.perf_counter()
    gflops, gops, gbps = _measure_ceilings(threads)
    overhead = _run_overhead_ms(threads)
    result = Calibration(
        run_overhead_ms=overhead,
        gflops_fp32=gflops,
        gops_int8=gops,
        bandwidth_gbps=gbps,
        method=(
            f"ONNX Runtime {ort.__version__} micro-benchmark at {threads} thread(s), best of "
            f"{_REPEATS}: {_GEMM_N}^3 fp32 MatMul (GFLOP/s), {_GEMM_N}^3 uint8 x int8 "
            f"MatMulInteger (GOP/s), element-wise Mul over {_COPY_MB} MiB fp32 counting read + "
            "write bytes (GB/s); median session.run() of a one-Identity model (per-inference "
            "overhead)"
        ),
        fingerprint_key=fp.key(),
        threads=threads,
        seconds=time.perf_counter() - t0,
    )
    if cache:
        _cache.write_json("calibration", key, result.model_dump(mode="json"))
    return result


def _cached(key: str) -> Calibration | None:
    data = _cache.read_json("calibration", key)
    if data is None:
        return None
    try:
        return Calibration.model_validate(data).model_copy(update={"cached": True})
    except ValidationError:
        return None
