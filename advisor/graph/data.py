"""The data a plan is checked on: evaluation inputs (with labels when known) and the samples
static INT8 is calibrated on, from `--data` (and `--calib-data`), the zoo's labelled split, or
valid random inputs. Calibration and evaluation samples never overlap: without
`--calib-data`, the first samples of `--data` are held back for calibration and not evaluated.

>>> from advisor.graph.load import load_model
>>> from advisor.zoo import get_zoo
>>> g = load_model("digits_cnn")
>>> d = eval_data(g, None, get_zoo("digits_cnn"), max_samples=50)
>>> len(d.inputs), d.labels.shape, len(d.calib)
(50, (50,), 64)
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np

from advisor.advice import SampleCounts
from advisor.errors import InputDataError, ModelError, RequestError
from advisor.graph.inputs import load_npz, sample_inputs
from advisor.graph.model import ModelGraph
from advisor.graph.npzfile import array_headers

if TYPE_CHECKING:
    from advisor.zoo.manifest import ZooModel

__all__ = [
    "EvalData", "eval_data", "split_samples", "sample_count", "data_shapes", "finite_reference",
    "NO_LABEL_EVAL_SAMPLES", "CALIB_SAMPLES", "MIN_SPLIT_SAMPLES",
]  # fmt: skip

NO_LABEL_EVAL_SAMPLES = 8
CALIB_SAMPLES = 64
#: --data needs this many samples to hold some back for calibration (a quarter, at most 64)
MIN_SPLIT_SAMPLES = 4


def sample_count(inputs: dict[str, np.ndarray], graph: ModelGraph) -> int:
    """How many samples batched arrays (N, ...) hold for the model's inputs (all must agree)."""
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
    return counts.pop()


def split_samples(
    inputs: dict[str, np.ndarray], graph: ModelGraph, limit: int, start: int = 0
) -> list[dict[str, np.ndarray]]:
    """Turn batched arrays (N, ...) into per-sample dicts matching the model's shapes: samples
    `start` .. `start + limit - 1` (fewer when the arrays hold fewer)."""
    n = min(sample_count(inputs, graph), start + limit)
    out = []
    for i in range(start, n):
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


def data_shapes(path: str | None, input_names: list[str] | None = None) -> dict[str, tuple]:
    """Shapes of the arrays in an .npz, by name, read from headers only ({} without a path).
    With one model input, an array 'x' stands for it (as `load_npz` reads it)."""
    if not path:
        return {}
    shapes = {k: h.shape for k, h in array_headers(path).items()}
    if input_names and len(input_names) == 1 and input_names[0] not in shapes and "x" in shapes:
        shapes[input_names[0]] = shapes["x"]
    return shapes


@dataclass(frozen=True)
class EvalData:
    inputs: list[dict[str, np.ndarray]]  # evaluation samples, one dict each
    labels: np.ndarray | None
    calib: list[dict[str, np.ndarray]]  # quantization calibration samples
    notices: list[str]
    counts: SampleCounts  # how many of each, from where


def eval_data(
    graph: ModelGraph,
    data: str | None,
    zoo_entry: ZooModel | None,
    max_samples: int,
    calib_data: str | None = None,
    calibrate: Literal["none", "optional", "required"] = "optional",
    max_bytes: int | None = None,
) -> EvalData:
    """Evaluation inputs (with labels when known) and calibration inputs, never overlapping.

    --data wins; a zoo model brings its held-out labelled split; otherwise a few valid random
    inputs measure agreement with FP32. Calibration uses --calib-data when given; else, with
    --data, its first samples (a quarter, at most 64), which are then not evaluated; else the
    zoo's calibration set (drawn from the training split), else other random inputs.
    `calibrate`: "none" when no plan that runs calibrates (nothing is held back), "required"
    when one was asked for by name (then --data too small to split is a RequestError; with
    "optional" it is a notice, and static INT8 is skipped). A data file larger than
    `max_bytes` (default: the memory available now) is refused unread.
    """
    if data and calib_data and Path(data).resolve() == Path(calib_data).resolve():
        raise RequestError(
            f"--calib-data and --data are the same file ({Path(data).name}): calibration and "
            "evaluation would share samples; give another --calib-data, or leave it out to hold "
            "back the first samples of --data"
        )
    notices: list[str] = []
    data_path, labels = data, None
    if data_path is None and zoo_entry is not None and zoo_entry.labelled_data:
        data_path = str(zoo_entry.labelled_data)
        notices.append(f"using the zoo's held-out labelled split {Path(data_path).name}")
    calib: list[dict[str, np.ndarray]] | None = None
    if data_path:
        batched, labels = load_npz(data_path, graph, notices, max_bytes)
        total, hold = sample_count(batched, graph), 0
        if data is not None and calib_data is None and calibrate != "none":
            hold = min(CALIB_SAMPLES, total // 4) if total >= MIN_SPLIT_SAMPLES else 0
            calib = split_samples(batched, graph, hold)
            if not hold:
                _too_few(data, total, notices, calibrate == "required")
        inputs = split_samples(batched, graph, max_samples, start=hold)
        if labels is not None:
            labels = np.asarray(labels).reshape(-1)[hold : hold + len(inputs)]
        notices += _unused_arrays(data_path, graph)
        eval_src = f"{len(inputs)} of {total} samples of {Path(data_path).name}" + (
            f" (after the first {hold}, held back for calibration)" if hold else ""
        )
    else:
        inputs = [sample_inputs(graph, seed=i) for i in range(NO_LABEL_EVAL_SAMPLES)]
        eval_src = f"{NO_LABEL_EVAL_SAMPLES} random valid inputs"
        notices.append(
            f"no --data given: fidelity measured on {NO_LABEL_EVAL_SAMPLES} random "
            "valid inputs (agreement with FP32, not task accuracy)"
        )
    if calibrate == "none" and not calib_data:  # a given --calib-data is still checked
        calib, calib_src = [], "no samples (no plan asked for calibrates)"
    else:
        calib, calib_src = _calibration(
            graph, calib, data, calib_data, zoo_entry, notices, max_bytes
        )
    counts = SampleCounts(
        calibration=len(calib),
        calibration_source=calib_src,
        evaluation=len(inputs),
        evaluation_source=eval_src,
    )
    notices.append(
        f"calibrated on {counts.calibration}, evaluated on {counts.evaluation} (disjoint "
        f"samples): static INT8 calibrated on {calib_src}; fidelity measured on {eval_src}"
    )
    return EvalData(inputs, labels, calib, notices, counts)


def _too_few(data: str, total: int, notices: list[str], required: bool) -> None:
    why = (
        f"--data {Path(data).name} holds {total} sample(s), too few to hold back calibration "
        f"samples and still evaluate on others (it takes {MIN_SPLIT_SAMPLES})"
    )
    if required:
        raise RequestError(f"{why}; give a separate calibration set with --calib-data FILE.npz")
    notices.append(f"{why}: static INT8 is not calibrated (give --calib-data FILE.npz)")


def _calibration(graph, calib, data, calib_data, zoo_entry, notices, max_bytes):
    """(calibration samples, where they come from), when not already held back from --data."""
    if calib == []:
        return [], "no samples (--data is too small to hold some back)"
    if calib is not None:
        return calib, f"the first {len(calib)} samples of {Path(data).name} (held back)"
    if calib_data:
        cb, _ = load_npz(calib_data, graph, notices, max_bytes)
        calib = split_samples(cb, graph, CALIB_SAMPLES)
        return calib, f"{len(calib)} samples of {Path(calib_data).name} (--calib-data)"
    if zoo_entry is not None and zoo_entry.calibration_data:
        cb, _ = load_npz(zoo_entry.calibration_data, graph)
        calib = split_samples(cb, graph, CALIB_SAMPLES)
        return calib, f"the zoo's calibration split {Path(zoo_entry.calibration_data).name}"
    seeds = range(1000, 1000 + NO_LABEL_EVAL_SAMPLES)  # not the evaluation inputs' seeds
    return [sample_inputs(graph, seed=i) for i in seeds], "random valid inputs"


def _unused_arrays(data_path: str, graph: ModelGraph) -> list[str]:
    names = set(array_headers(data_path))
    used = {t.name for t in graph.inputs} | {"y", "labels"}
    used |= {"x"} if len(graph.inputs) == 1 else set()
    unused = sorted(names - used)
    if not unused:
        return []
    return [
        f"{Path(data_path).name}: ignored array(s) {', '.join(unused)} (the model's "
        f"inputs are {', '.join(t.name for t in graph.inputs)}; labels go under 'y')"
    ]


def finite_reference(
    data: EvalData, reference: list, out_names: list[str], allow: bool
) -> tuple[EvalData, list]:
    """Check the FP32 outputs on the evaluation inputs are finite (NaN == NaN would read as
    perfect agreement). Non-finite: ModelError naming the output and the count, or, with
    `allow`, the evaluation inputs whose outputs are all finite, with a notice."""

    def nonfinite(a) -> int:
        a = np.asarray(a)
        return int(a.size - np.count_nonzero(np.isfinite(a))) if a.dtype.kind in "fc" else 0

    bad = [sum(nonfinite(r[k]) for r in reference) for k in range(len(out_names))]
    if not any(bad):
        return data, reference
    worst = max(range(len(bad)), key=lambda k: bad[k])
    total = sum(int(np.size(r[worst])) for r in reference)
    what = (
        f"the FP32 model's output {out_names[worst]!r} holds {bad[worst]:,} NaN or infinite "
        f"value(s) of {total:,} on the {len(reference)} evaluation inputs"
    )
    keep = [i for i, r in enumerate(reference) if not any(nonfinite(a) for a in r)]
    if not allow:
        raise ModelError(
            f"{what}: fidelity against it means nothing (NaN weights, an overflow?); fix the "
            "model or its inputs, or pass --allow-nonfinite to compare finite outputs only"
        )
    if not keep:
        raise ModelError(
            f"{what}, and no evaluation input gives all-finite outputs, so there is nothing to "
            "compare (even with --allow-nonfinite); fix the model (NaN weights?) or its inputs"
        )
    labels = data.labels[keep] if data.labels is not None else None
    dropped = len(reference) - len(keep)
    note = (
        f"--allow-nonfinite: {what}; fidelity compares the {len(keep)} evaluation inputs "
        f"whose FP32 outputs are all finite ({dropped} left out)"
    )
    counts = data.counts.model_copy(update={"evaluation": len(keep), "nonfinite_dropped": dropped})
    inputs = [data.inputs[i] for i in keep]
    new = replace(data, inputs=inputs, labels=labels, notices=[*data.notices, note], counts=counts)
    return new, [reference[i] for i in keep]
