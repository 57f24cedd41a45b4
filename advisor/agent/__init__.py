"""The measurement agent: an inference server for ONNX sub-models and its client.

``edgedl agent serve`` runs :func:`serve`; :class:`AgentClient` talks to it;
:func:`measure_on_agent` profiles a model on the agent's machine (cached per target);
``advisor.validate.split`` runs a partition through one or more agents. The server side (FastAPI)
and the measurement side are imported only when asked for.
"""

from __future__ import annotations

import importlib
from typing import Any

from advisor.agent.client import AgentClient, RemoteRun
from advisor.agent.link import EmulatedLink

__all__ = [
    "AgentClient",
    "AgentLimits",
    "EmulatedLink",
    "RemoteRun",
    "TargetProfile",
    "create_app",
    "measure_on_agent",
    "serve",
]

_LAZY = {
    "AgentLimits": "advisor.agent.limits",
    "create_app": "advisor.agent.server",
    "serve": "advisor.agent.server",
    "TargetProfile": "advisor.agent.measure",
    "measure_on_agent": "advisor.agent.measure",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'advisor.agent' has no attribute {name!r}")
