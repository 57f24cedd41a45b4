"""ONNX Runtime quantization tooling, wrapped once for the quantization planners."""

from __future__ import annotations

import contextlib
import logging
import tempfile
from pathlib import Path

import numpy as np
import onnx
from onnxruntime.quantization import (
    CalibrationDataReader,
    QuantFormat,
    QuantType,
    quantize_dynamic,
    quantize_static,
)

from advisor.errors import ModelError


@contextlib.contextmanager
def _quiet_root_logger():
    """ORT's quantization tooling logs advice (pre-processing hints, per-weight axis notes) on
    the root logger at WARNING; it would garble the CLI's output, so it is held back here."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


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


def static_int8(
    model: onnx.ModelProto, calib: list[dict[str, np.ndarray]], per_channel: bool = True
) -> onnx.ModelProto:
    """QDQ INT8 (signed activations and weights), per-channel weights, calibrated (MinMax)."""
    if not calib:
        raise ModelError("static INT8 needs calibration inputs; pass --data FILE.npz")
    names = {i.name for i in model.graph.input}
    with tempfile.TemporaryDirectory() as tmp, _quiet_root_logger():
        src = Path(tmp) / "fp32.onnx"
        onnx.save(model, src)
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
        return onnx.load(out)


def dynamic_int8(model: onnx.ModelProto) -> onnx.ModelProto:
    """Weights to INT8 ahead of time, activations quantized on the fly (ORT's defaults)."""
    with tempfile.TemporaryDirectory() as tmp, _quiet_root_logger():
        src = Path(tmp) / "fp32.onnx"
        onnx.save(model, src)
        out = Path(tmp) / "dyn.onnx"
        quantize_dynamic(str(src), str(out), weight_type=QuantType.QInt8)
        return onnx.load(out)
