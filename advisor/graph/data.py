"""The data a plan is checked on: evaluation inputs (with labels when known) and the samples
static INT8 is calibrated on, from `--data`, the zoo's labelled split, or valid random inputs.

>>> from advisor.graph.load import load_model
>>> from advisor.zoo import get_zoo
>>> g = load_model("digits_cnn")
>>> d = eval_data(g, None, get_zoo("digits_cnn"), max_samples=50)
>>> len(d.inputs), d.labels.shape, len(d.calib)
(50, (50,), 64)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from advisor.errors import InputDataError
from advisor.graph.inputs import load_npz, sample_inputs
from advisor.graph.model import ModelGraph

if TYPE_CHECKING:
    from advisor.zoo.manifest import ZooModel

__all__ = ["EvalData", "eval_data", "split_samples", "NO_LABEL_EVAL_SAMPLES", "CALIB_SAMPLES"]

NO_LABEL_EVAL_SAMPLES = 8
CALIB_SAMPLES = 64


def split_samples(
    inputs: dict[str, np.ndarray], graph: ModelGraph, limit: int
) -> list[dict[str, np.ndarray]]:
    """Turn batched arrays (N, ...) into per-sample dicts matching the model's shapes."""
    counts = set()
    for spec in graph.inputs:
        arr = inputs[spec.name]
        if tuple(arr.shape) == tuple(spec.shape):
            counts.add(1)
        elif (
            arr.ndim == len(spec.shape)
            and tuple(arr.shape[1:]) == tuple(spec.shape[1:])
            and spec.shape[0] == 1
        ):
            counts.add(arr.shape[0])
        else:
            raise InputDataError(
                f"data for input {spec.name!r} has shape {tuple(arr.shape)}; the model expects "
                f"{tuple(spec.shape)} (or N samples of {tuple(spec.shape[1:])})"
            )
    if len(counts) != 1:
        raise InputDataError(f"inputs hold different numbers of samples: {sorted(counts)}")
    n = min(counts.pop(), limit)
    out = []
    for i in range(n):
        out.append(
            {
                s.name: (
                    inputs[s.name]
                    if tuple(inputs[s.name].shape) == tuple(s.shape)
                    else inputs[s.name][i : i + 1]
                ).astype(np.dtype(s.dtype), copy=False)
                for s in graph.inputs
            }
        )
    return out


@dataclass(frozen=True)
class EvalData:
    inputs: list[dict[str, np.ndarray]]  # evaluation samples, one dict each
    labels: np.ndarray | None
    calib: list[dict[str, np.ndarray]]  # quantization calibration samples
    notices: list[str]


def eval_data(
    graph: ModelGraph, data: str | None, zoo_entry: ZooModel | None, max_samples: int
) -> EvalData:
    """Evaluation inputs (with labels when known) and calibration inputs.

    --data wins; a zoo model brings its held-out labelled split; otherwise a few valid random
    inputs measure agreement with FP32. Calibration uses the zoo's calibration set (drawn from
    the training split) when there is one, else the first evaluation samples.
    """
    notices = []
    data_path = data
    if data_path is None and zoo_entry is not None and zoo_entry.labelled_data:
        data_path = str(zoo_entry.labelled_data)
        notices.append(f"using the zoo's held-out labelled split {Path(data_path).name}")
    labels = None
    if data_path:
        batched, labels = load_npz(data_path, graph)
        inputs = split_samples(batched, graph, max_samples)
        with np.load(data_path, allow_pickle=False) as archive:
            used = {t.name for t in graph.inputs} | {"y", "labels"}
            used |= {"x"} if len(graph.inputs) == 1 else set()
            unused = sorted(set(archive.files) - used)
        if unused:
            notices.append(
                f"{Path(data_path).name}: ignored array(s) {', '.join(unused)} (the model's "
                f"inputs are {', '.join(t.name for t in graph.inputs)}; labels go under 'y')"
            )
    else:
        inputs = [sample_inputs(graph, seed=i) for i in range(NO_LABEL_EVAL_SAMPLES)]
        notices.append(
            f"no --data given: fidelity measured on {NO_LABEL_EVAL_SAMPLES} random "
            "valid inputs (agreement with FP32, not task accuracy)"
        )
    if labels is not None:
        labels = np.asarray(labels).reshape(-1)[: len(inputs)]
        if len(labels) < len(inputs):
            raise InputDataError(f"{data_path}: {len(labels)} labels for {len(inputs)} samples")
    if zoo_entry is not None and zoo_entry.calibration_data:
        cb, _ = load_npz(zoo_entry.calibration_data, graph)
        calib = split_samples(cb, graph, CALIB_SAMPLES)
    else:
        calib = inputs[:CALIB_SAMPLES]
        if data_path:
            notices.append(
                "static INT8 calibrated on the first samples of --data "
                "(no separate calibration set)"
            )
    return EvalData(inputs, labels, calib, notices)
