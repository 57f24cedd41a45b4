"""Measure sub-models on a target through its agent, and keep what was measured.

``measure_on_agent`` uploads a model to the agent running on the target device, has it
profile the model there (warm-up, repeats, per-node medians) and returns a TargetProfile:
figures 'measured_target', with the target's fingerprint. Results are cached (advisor.cache,
namespace ``target_profiles``) by model hash, input digest, run counts and the target's
fingerprint, so a fleet of devices builds up a measured record over time.
"""

from __future__ import annotations

import hashlib
from typing import Any, Literal

import numpy as np
import onnx
from pydantic import BaseModel, ConfigDict, ValidationError

from advisor import cache as _cache
from advisor.agent.client import AgentClient
from advisor.errors import AgentError
from advisor.measure.profile import Fingerprint, Profile

__all__ = ["TargetProfile", "measure_on_agent"]


class TargetProfile(BaseModel):
    """A profile measured on a target by its agent (ms). ``profile`` is the agent's own
    record, where 'measured_host' means the agent's machine: the target."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    kind: Literal["measured_target"] = "measured_target"
    units: Literal["ms"] = "ms"
    agent: str
    model_id: str
    fingerprint: Fingerprint
    profile: Profile
    cached: bool = False

    @property
    def end_to_end_ms(self) -> float:
        """Median whole-model latency on the target (ORT_ENABLE_ALL)."""
        return self.profile.end_to_end_ms

    def node_ms(self) -> dict[str, float]:
        """Per-node medians on the target (ORT_ENABLE_BASIC attribution)."""
        return {name: t.median_ms for name, t in self.profile.nodes.items()}


def _input_digest(inputs: dict[str, np.ndarray] | None) -> str:
    if not inputs:
        return "sampled"
    h = hashlib.sha256()
    for name in sorted(inputs):
        arr = np.ascontiguousarray(inputs[name])
        h.update(f"{name}|{arr.dtype}|{arr.shape}|".encode())
        h.update(arr.tobytes())
    return h.hexdigest()[:16]


def measure_on_agent(
    agent: AgentClient,
    model: Any,
    *,
    runs: int = 20,
    warmup: int = 5,
    inputs: dict[str, np.ndarray] | None = None,
    cache: bool = True,
) -> TargetProfile:
    """Profile ``model`` (ModelProto, ModelGraph or .onnx bytes) on the agent's machine.

    Without ``inputs`` the agent samples valid ones (advisor.model.sample_inputs)."""
    proto = getattr(model, "model", model)
    data = proto.SerializeToString() if isinstance(proto, onnx.ModelProto) else bytes(proto)
    model_id = hashlib.sha256(data).hexdigest()
    fingerprint = Fingerprint.model_validate(agent.health()["fingerprint"])
    key = f"{model_id[:24]}-{_input_digest(inputs)}-{fingerprint.key()}-r{runs}w{warmup}"
    if cache:
        hit = _cache.read_json("target_profiles", key)
        if hit is not None:
            try:
                return TargetProfile.model_validate(hit).model_copy(update={"cached": True})
            except ValidationError:
                pass  # an older format: measure again
    agent.upload_model(data)
    answer = agent.profile(model_id, runs=runs, warmup=warmup, inputs=inputs)
    try:
        result = TargetProfile(
            agent=agent.url,
            model_id=model_id,
            fingerprint=Fingerprint.model_validate(answer["fingerprint"]),
            profile=Profile.model_validate(answer["profile"]),
        )
    except (KeyError, ValidationError) as exc:
        raise AgentError(f"agent at {agent.url} sent a malformed profile: {exc}") from exc
    if cache:
        _cache.write_json("target_profiles", key, result.model_dump(mode="json"))
    return result
