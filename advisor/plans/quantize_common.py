"""ONNX Runtime quantization tooling, wrapped once for the quantization planners."""

from __future__ import annotations

import contextlib
import logging
import tempfile
import warnings
from pathlib import Path

import numpy as np
import onnx
import onnx.version_converter
from onnxruntime.quantization import (
    CalibrationDataReader,
    QuantFormat,
    QuantType,
    quantize_dynamic,
    quantize_static,
)

from advisor.errors import ModelError
from advisor.measure.timing import save_model


@contextlib.contextmanager
def _quiet_root_logger():
    """ORT's quantization tooling logs advice (pre-processing hints, per-weight axis notes) on
    the root logger at WARNING, and the sessions it opens log through ONNX Runtime's default
    logger; both would garble the CLI's output, so they are held back here. ONNX Runtime has
    no getter for that logger's level: it goes back to its documented default, warning (2)."""
    import onnxruntime as ort

    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    ort.set_default_logger_severity(3)
    try:
        with warnings.catch_warnings():
            # numpy's divide/cast warnings from the calibrator; a bad scale they point at is
            # caught by _check_scales with a reason
            warnings.simplefilter("ignore", RuntimeWarning)
            yield
    finally:
        root.setLevel(level)
        ort.set_default_logger_severity(2)


def _check_scales(model: onnx.ModelProto) -> onnx.ModelProto:
    """Refuse a quantized model whose (De)QuantizeLinear scales are not finite: calibration
    met a tensor with infinite values (an attention mask of -inf, typically)."""
    from onnx import numpy_helper

    inits = {i.name: i for i in model.graph.initializer}
    bad = []
    for node in model.graph.node:
        if node.op_type in ("QuantizeLinear", "DequantizeLinear") and len(node.input) > 1:
            scale = inits.get(node.input[1])
            if scale is not None and not np.all(np.isfinite(numpy_helper.to_array(scale))):
                bad.append(node.input[0])
    if bad:
        raise ModelError(
            f"calibration gave {len(set(bad))} tensor(s) an infinite INT8 scale (e.g. "
            f"{sorted(set(bad))[0]!r}, which holds infinite values such as an attention mask "
            "of -inf); such a model cannot be quantized as it is"
        )
    return model


class _Reader(CalibrationDataReader):
    def __init__(self, samples: list[dict[str, np.ndarray]], names: set[str]):
        self._it = iter([{k: v for k, v in s.items() if k in names} for s in samples])

    def get_next(self):
        return next(self._it, None)


def _preprocess(src: Path, dst: Path) -> Path:
    """ORT's recommended pre-processing (shape inference + graph optimisation); if it cannot
    handle the model, quantize the model as it is."""
    try:
        from onnxruntime.quantization.shape_inference import quant_pre_process

        quant_pre_process(str(src), str(dst), skip_symbolic_shape=True)
        return dst
    except Exception:  # noqa: BLE001 - pre-processing is an optimisation, never required
        return src


QDQ_OPSET = 13  # per-channel DequantizeLinear (its axis attribute) needs opset 13


def quantize_skip_reason(graph) -> str | None:
    """Why ORT's quantization tooling cannot take this model as it is, or None."""
    if graph.precision == "fp16":
        return (
            "the model is already FP16; ONNX Runtime's quantization tooling takes FP32 models "
            "(quantize the FP32 export instead)"
        )
    return None


def _at_least_opset(model: onnx.ModelProto, opset: int) -> onnx.ModelProto:
    """The model at `opset` or newer: older exports (opset 9-12) are upgraded with onnx's
    version converter, since the quantizer writes ops of the newer opsets."""
    current = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), opset)
    if current >= opset:
        return model
    try:
        return onnx.version_converter.convert_version(model, opset)
    except Exception as exc:  # noqa: BLE001 - the converter raises many kinds
        raise ModelError(
            f"the model is at opset {current} and onnx's version converter could not raise it "
            f"to {opset}, which INT8 quantization needs ({type(exc).__name__}); re-export it "
            f"with opset {opset} or newer"
        ) from None


def _cached(
    kind: str, model: onnx.ModelProto, extra: list[bytes], build, digest: str | None = None
) -> onnx.ModelProto:
    """`build()`, or the model an earlier run built from the same bytes (advisor.cache,
    namespace 'quantized', keyed by the source model's bytes, `extra` and ORT's version).
    `digest`: the SHA-256 of the model's bytes, when the caller has it (a loaded graph's:
    serializing and hashing a 100 MB model again costs ~0.2 s)."""
    import onnxruntime as ort

    from advisor import cache
    from advisor.measure.timing import serialized

    if digest is not None:
        key = cache.content_key(kind, ort.__version__, f"sha256:{digest}", *extra)
    else:
        data = serialized(model)  # None past protobuf's limit: a model that large is not cached
        if data is None:
            return build()
        key = cache.content_key(kind, ort.__version__, data, *extra)
        del data
    hit = cache.read_model("quantized", key)
    if hit is not None:
        return hit
    out = build()
    cache.write_model("quantized", key, out)
    return out


def _samples_bytes(samples: list[dict[str, np.ndarray]]) -> bytes:
    """The calibration samples as bytes: names, dtypes, shapes and values, in order."""
    parts = []
    for s in samples:
        for name in sorted(s):
            arr = np.ascontiguousarray(s[name])
            parts.append(f"{name}|{arr.dtype}|{arr.shape}|".encode() + arr.tobytes())
    return b"".join(parts)


def static_int8(
    model: onnx.ModelProto,
    calib: list[dict[str, np.ndarray]],
    per_channel: bool = True,
    digest: str | None = None,
) -> onnx.ModelProto:
    """QDQ INT8 (signed activations and weights), per-channel weights, calibrated (MinMax);
    cached by content (the same model and calibration data quantize once; `digest`: the
    SHA-256 of the model's bytes, when known)."""
    if not calib:
        raise ModelError("static INT8 needs calibration inputs; pass --data FILE.npz")
    extra = [_samples_bytes(calib), str(per_channel).encode()]
    return _cached(
        "static_int8-v1", model, extra, lambda: _static_int8(model, calib, per_channel), digest
    )


def _static_int8(
    model: onnx.ModelProto, calib: list[dict[str, np.ndarray]], per_channel: bool
) -> onnx.ModelProto:
    names = {i.name for i in model.graph.input}
    model = _at_least_opset(model, QDQ_OPSET)
    with tempfile.TemporaryDirectory() as tmp, _quiet_root_logger():
        src = Path(tmp) / "fp32.onnx"
        save_model(model, src)
        pre = _preprocess(src, Path(tmp) / "pre.onnx")
        out = Path(tmp) / "int8.onnx"
        quantize_static(
            str(pre),
            str(out),
            _Reader(calib, names),
            quant_format=QuantFormat.QDQ,
            per_channel=per_channel,
            activation_type=QuantType.QInt8,
            weight_type=QuantType.QInt8,
        )
        return _check_scales(onnx.load(out))


def dynamic_int8(model: onnx.ModelProto, digest: str | None = None) -> onnx.ModelProto:
    """Weights to INT8 ahead of time, activations quantized on the fly (ORT's defaults);
    cached by content (`digest`: the SHA-256 of the model's bytes, when known)."""
    return _cached("dynamic_int8-v1", model, [], lambda: _dynamic_int8(model), digest)


def _dynamic_int8(model: onnx.ModelProto) -> onnx.ModelProto:
    model = _at_least_opset(model, QDQ_OPSET)
    with tempfile.TemporaryDirectory() as tmp, _quiet_root_logger():
        src = Path(tmp) / "fp32.onnx"
        save_model(model, src)
        out = Path(tmp) / "dyn.onnx"
        quantize_dynamic(str(src), str(out), weight_type=QuantType.QInt8)
        return onnx.load(out)
