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
