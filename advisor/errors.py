"""Errors raised by the advisor.

    AdvisorError                 base class; the CLI turns it into exit code 2 and one line
    ├── ModelError               a model cannot be read or used (corrupt, unsupported op,
    │   │                        missing or unsafe external data)
    │   └── ShapeError           a dimension is symbolic and no value was given
    ├── InputDataError           a sample/labelled data file (.npz) is missing, malformed or
    │                            does not match the model's inputs
    ├── UnknownIdError           an unknown zoo model, hardware target, link preset or run id
    ├── CatalogError             data/hardware.yaml (or another catalog) is malformed
    ├── RequestError             an advice request is inconsistent (e.g. negative latency target)
    ├── AgentError               a measurement agent or inference server failed or refused
    └── ReportError              an advice JSON or the runs database cannot be read, or a
                                 report format is unknown
Messages say what was wrong and what to do about it.
"""

from __future__ import annotations

import re


class AdvisorError(Exception):
    """Base class of every advisor error."""


class ModelError(AdvisorError):
    """The model cannot be loaded, checked or run."""


class ShapeError(ModelError):
    """A symbolic dimension has no value; pass --input-shape NAME=1x3x224x224."""


class InputDataError(AdvisorError):
    """Sample or labelled data does not fit the model."""


class UnknownIdError(AdvisorError, KeyError):
    """An id (zoo model, target, link, run) that does not exist."""

    def __str__(self) -> str:  # KeyError would otherwise quote the message
        return str(self.args[0]) if self.args else ""


class CatalogError(AdvisorError):
    """A catalog file under data/ is malformed."""


class RequestError(AdvisorError):
    """An advice request is inconsistent."""


class AgentError(AdvisorError):
    """A remote agent or inference server failed or refused a request."""


class ReportError(AdvisorError):
    """An advice JSON file, a stored run or a report format cannot be used."""


# ONNX Runtime's error text, cleaned for one-line messages
_ORT_PREFIX = re.compile(r"^\[ONNXRuntimeError\] : \d+ : \w+ : ")
_ORT_LOAD = re.compile(r"^Load model from .*? failed:")
# "/onnxruntime_src/.../model_load_utils.h:46 void onnxruntime::...::Fn(const std::...&, int) "
_CPP_WHERE = re.compile(r"/\S+\.(?:h|cc|cpp):\d+ [^()]*\((?:[^()]|\([^()]*\))*\) ")


def ort_message(exc: BaseException, limit: int = 420) -> str:
    """ONNX Runtime's error text without its status prefix and C++ source locations, cut at a
    sentence or word boundary, so the reason survives in one line.

    >>> ort_message(RuntimeError("[ONNXRuntimeError] : 1 : FAIL : /src/a.h:46 void f(int, "
    ...     "const std::string&) Opset 99 is under development. Current official support is 28."))
    'Opset 99 is under development. Current official support is 28.'
    """
    text = " ".join(str(exc).split())
    text = _ORT_PREFIX.sub("", text)
    text = _ORT_LOAD.sub("", text).strip()
    text = _CPP_WHERE.sub("", text).strip()
    if not text:
        return type(exc).__name__
    if len(text) <= limit:
        return text
    cut = text[:limit]
    end = cut.rfind(". ")
    return cut[: end + 1] if end > limit // 3 else cut.rsplit(" ", 1)[0] + " …"
