"""Client of the inference server: upload sub-models, run them, profile them.

>>> with AgentClient("http://127.0.0.1:8765", token) as agent:   # doctest: +SKIP
...     model_id = agent.upload_model(onnx_bytes)
...     outputs, compute_ms = agent.run(model_id, {"x": x})

Every failure (refused token, body over a limit, bad tensors, server down, timeout) is an
AgentError whose message names the agent, what was attempted and what to do.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import onnx

from advisor.agent.codec import decode_tensors, encode_tensors
from advisor.agent.link import EmulatedLink
from advisor.errors import AgentError, InputDataError

_MAX_RESPONSE_TENSOR_BYTES = 1 << 34  # 16 GiB: the client trusts its own agent's outputs


@dataclass(frozen=True)
class RemoteRun:
    """One remote run and where its time went (ms, wall clock on this client unless noted).

    total_ms = serialize_ms + network_ms + server_ms + return_ms + deserialize_ms, where
    network_ms is the time from the first byte sent to the response headers, less the
    server's own time (so: upload + link latency + HTTP overhead), and return_ms is the
    response body's download.
    """

    outputs: dict[str, np.ndarray]
    serialize_ms: float
    network_ms: float
    server_ms: float  # server side: body received -> response ready (X-Server-Ms)
    compute_ms: float  # server side: session.run only (X-Compute-Ms)
    queue_ms: float  # server side: waiting for a worker slot (X-Queue-Ms)
    return_ms: float
    deserialize_ms: float
    total_ms: float
    bytes_up: int
    bytes_down: int


def _detail(response: httpx.Response) -> str:
    try:
        detail = response.json().get("detail")
    except ValueError:
        return response.text.strip()[:500] or response.reason_phrase
    if isinstance(detail, list):  # FastAPI's validation errors for query parameters
        return "; ".join(
            f"{'.'.join(str(p) for p in d.get('loc', ()))}: {d.get('msg')}" for d in detail
        )
    return str(detail)


class AgentClient:
    """A connection to one agent (`edgedl agent serve`) at ``url`` with its bearer token."""

    def __init__(self, url: str, token: str | None = None, timeout: float = 60.0) -> None:
        if not url.startswith(("http://", "https://")):
            raise AgentError(f"agent URL {url!r} must start with http:// or https://")
        self.url = url.rstrip("/")
        self.timeout = timeout
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout)

    def __enter__(self) -> AgentClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # -- plumbing --------------------------------------------------------------------------

    def _fail(self, response: httpx.Response, action: str) -> AgentError:
        detail = _detail(response)
        code = response.status_code
        if code == 401:
            return AgentError(f"agent at {self.url} refused to {action}: {detail}")
        return AgentError(f"agent at {self.url} could not {action} (HTTP {code}): {detail}")

    def _transport_error(self, exc: httpx.HTTPError, action: str) -> AgentError:
        if isinstance(exc, httpx.ConnectError):
            return AgentError(
                f"cannot reach the agent at {self.url} to {action}: {exc}; is "
                "`edgedl agent serve` running there and the URL right?"
            )
        if isinstance(exc, httpx.TimeoutException):
            return AgentError(
                f"the agent at {self.url} did not answer within {self.timeout:g} s while "
                f"trying to {action}; raise the client timeout or check the agent"
            )
        return AgentError(
            f"the connection to the agent at {self.url} failed during {action}: {exc}"
        )

    def _request(self, method: str, path: str, action: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise self._transport_error(exc, action) from exc
        if response.status_code >= 400:
            raise self._fail(response, action)
        return response

    # -- API --------------------------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        """Status, limits and the agent's environment fingerprint (no token needed)."""
        return self._request("GET", "/health", "report its health").json()

    def upload_model(self, model: bytes | onnx.ModelProto | str | Path) -> str:
        """Store a model on the agent (skipped when it already holds these bytes); its id."""
        if isinstance(model, onnx.ModelProto):
            data = model.SerializeToString()
        elif isinstance(model, (str, Path)):
            data = Path(model).read_bytes()
        else:
            data = bytes(model)
        model_id = hashlib.sha256(data).hexdigest()
        try:
            present = self._http.get(f"/models/{model_id}")
        except httpx.HTTPError as exc:
            raise self._transport_error(exc, "look up a model") from exc
        if present.status_code == 200:
            return model_id
        if present.status_code != 404:
            raise self._fail(present, "look up a model")
        response = self._request(
            "PUT",
            "/models",
            "store the model",
            content=data,
            headers={"Content-Type": "application/octet-stream"},
        )
        stored = str(response.json()["model_id"])
        if stored != model_id:
            raise AgentError(f"agent at {self.url} stored the model as {stored}, not {model_id}")
        return stored

    def run(
        self, model_id: str, inputs: dict[str, np.ndarray]
    ) -> tuple[dict[str, np.ndarray], float]:
        """Run a stored model on ``inputs``; (outputs by name, server-side compute ms)."""
        result = self.run_timed(model_id, inputs)
        return result.outputs, result.compute_ms

    def run_timed(
        self, model_id: str, inputs: dict[str, np.ndarray], link: EmulatedLink | None = None
    ) -> RemoteRun:
        """Run a stored model and time each leg; ``link`` emulates a slower link (loopback)."""
        action = "run the model"
        t0 = time.perf_counter()
        body = encode_tensors(inputs)
        t1 = time.perf_counter()
        headers = {"Content-Type": "application/octet-stream", "Content-Length": str(len(body))}
        content = link.send(body) if link else body
        try:
            with self._http.stream(
                "POST", f"/models/{model_id}/run", content=content, headers=headers
            ) as response:
                t2 = time.perf_counter()
                if response.status_code >= 400:
                    response.read()
                    raise self._fail(response, action)
                data = link.receive(response.iter_bytes()) if link else response.read()
                t3 = time.perf_counter()
        except httpx.HTTPError as exc:
            raise self._transport_error(exc, action) from exc
        try:
            outputs = decode_tensors(data, max_bytes=_MAX_RESPONSE_TENSOR_BYTES)
        except InputDataError as exc:
            raise AgentError(f"agent at {self.url} sent unreadable outputs: {exc}") from exc
        t4 = time.perf_counter()
        try:
            server_ms = float(response.headers["X-Server-Ms"])
            compute_ms = float(response.headers["X-Compute-Ms"])
            queue_ms = float(response.headers.get("X-Queue-Ms", 0.0))
        except (KeyError, ValueError) as exc:
            raise AgentError(f"{self.url} is not an EdgeDL agent (no timing headers)") from exc
        return RemoteRun(
            outputs=outputs,
            serialize_ms=(t1 - t0) * 1e3,
            network_ms=(t2 - t1) * 1e3 - server_ms,
            server_ms=server_ms,
            compute_ms=compute_ms,
            queue_ms=queue_ms,
            return_ms=(t3 - t2) * 1e3,
            deserialize_ms=(t4 - t3) * 1e3,
            total_ms=(t4 - t0) * 1e3,
            bytes_up=len(body),
            bytes_down=len(data),
        )

    def profile(
        self,
        model_id: str,
        runs: int = 20,
        warmup: int = 5,
        inputs: dict[str, np.ndarray] | None = None,
    ) -> dict[str, Any]:
        """Profile a stored model on the agent's machine (per-node medians, latency,
        fingerprint; labelled 'measured_target'). Without ``inputs`` the agent makes
        sample inputs."""
        content = encode_tensors(inputs) if inputs else b""
        return self._request(
            "POST",
            f"/models/{model_id}/profile",
            "profile the model",
            params={"runs": runs, "warmup": warmup},
            content=content,
            headers={"Content-Type": "application/octet-stream"},
        ).json()

    def calibrate(self, threads: list[int] | None, quick: bool = False) -> dict[str, Any]:
        """Run the target calibration suite (advisor.measure.suite) on the agent's machine at
        each thread count (None: 1 and each power of two up to its cores); the answer holds
        the measured profile, fingerprint and memory."""
        counts = "auto" if threads is None else ",".join(str(t) for t in threads)
        return self._request(
            "POST",
            "/calibrate",
            "calibrate the agent's machine",
            params={"threads": counts, "quick": str(quick).lower()},
        ).json()
