"""The agent as a separate process on loopback: auth, limits, tensor checks, load, memory."""

from __future__ import annotations

import io
import socket
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import onnx
import onnxruntime as ort
import psutil
import pytest
from _agent_fixtures import TOKEN, agent_server, residual_block_model
from click.testing import CliRunner
from onnx import TensorProto, helper

from advisor.agent import AgentClient, measure_on_agent
from advisor.agent.codec import decode_tensors, encode_tensors
from advisor.agent.server import AgentLimits, exposure_warning, is_loopback
from advisor.errors import AgentError, InputDataError, RequestError
from advisor.measure.profile import Profile
from advisor.validate.split import max_abs_error

pytestmark = pytest.mark.timeout(120)
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    store = tmp_path_factory.mktemp("agent")
    args = ("--max-body-mb", "1", "--max-model-mb", "0.5", "--timeout-s", "4")
    with agent_server(store, *args) as (url, pid):
        yield url, pid


@pytest.fixture(scope="module")
def client(server):
    with AgentClient(server[0], TOKEN, timeout=30) as c:
        yield c


@pytest.fixture(scope="module")
def model() -> onnx.ModelProto:
    return residual_block_model()


@pytest.fixture(scope="module")
def model_id(client, model) -> str:
    return client.upload_model(model)


@pytest.fixture(scope="module")
def inputs() -> dict[str, np.ndarray]:
    return {"x": np.random.default_rng(2).standard_normal((1, 4, 64, 64)).astype(np.float32)}


@pytest.fixture(scope="module")
def reference(model, inputs) -> dict[str, np.ndarray]:
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return {"y": sess.run(["y"], inputs)[0]}


def still_serves(client, model_id, inputs, reference) -> None:
    outputs, compute_ms = client.run(model_id, inputs)
    assert max_abs_error(outputs, reference) <= 1e-5 and compute_ms > 0


def test_health_needs_no_token_and_reports_fingerprint(server):
    body = httpx.get(f"{server[0]}/health").json()
    assert body["status"] == "ok"
    assert body["fingerprint"]["ort_version"] == ort.__version__
    assert body["limits"]["max_body_bytes"] == 1024 * 1024
    from app.cli import cli

    result = CliRunner().invoke(cli, ["agent", "health", server[0], "--json"])
    assert result.exit_code == 0 and '"status": "ok"' in result.output


def test_upload_is_content_addressed_and_runs_match_full_model(
    server, client, model, model_id, inputs, reference
):
    import hashlib

    assert model_id == hashlib.sha256(model.SerializeToString()).hexdigest()
    assert client.upload_model(model) == model_id  # already stored: no second upload
    described = httpx.get(f"{server[0]}/models/{model_id}", headers=AUTH).json()
    assert described["inputs"] == [{"name": "x", "shape": [1, 4, 64, 64], "dtype": "float32"}]
    r = httpx.post(
        f"{server[0]}/models/{model_id}/run", content=encode_tensors(inputs), headers=AUTH
    )
    assert r.status_code == 200
    assert float(r.headers["X-Compute-Ms"]) <= float(r.headers["X-Server-Ms"])
    out = dict(np.load(io.BytesIO(r.content), allow_pickle=False))
    assert max_abs_error(out, reference) <= 1e-5
    # a bare .npy body is accepted for a one-input model
    buf = io.BytesIO()
    np.save(buf, inputs["x"])
    r = httpx.post(f"{server[0]}/models/{model_id}/run", content=buf.getvalue(), headers=AUTH)
    assert r.status_code == 200


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        ({}, "missing bearer token"),
        ({"Authorization": "Bearer nope"}, "wrong bearer token"),
        ({"Authorization": f"Basic {TOKEN}"}, "missing bearer token"),
    ],
)
def test_token_required(server, client, model_id, inputs, reference, headers, message):
    for method, path in [
        ("POST", f"/models/{model_id}/run"),
        ("PUT", "/models"),
        ("GET", f"/models/{model_id}"),
        ("POST", f"/models/{model_id}/profile"),
    ]:
        r = httpx.request(method, server[0] + path, content=encode_tensors(inputs), headers=headers)
        assert r.status_code == 401, (method, path)
        assert message in r.json()["detail"]
        assert r.headers["WWW-Authenticate"] == "Bearer"
    with pytest.raises(AgentError, match="refused to run the model: wrong bearer token"):
        AgentClient(server[0], "nope").run(model_id, inputs)
    still_serves(client, model_id, inputs, reference)


def test_oversized_bodies_get_413(server, client, model_id, inputs, reference):
    big = encode_tensors({"x": np.zeros((1, 400_000), np.float32)})  # 1.6 MB > 1 MiB
    r = httpx.post(f"{server[0]}/models/{model_id}/run", content=big, headers=AUTH)
    assert r.status_code == 413 and "--max-body-mb" in r.json()["detail"]
    # without Content-Length (chunked) the limit is enforced while reading
    chunks = (big[i : i + 65536] for i in range(0, len(big), 65536))
    r = httpx.post(f"{server[0]}/models/{model_id}/run", content=chunks, headers=AUTH)
    assert r.status_code == 413
    r = httpx.put(f"{server[0]}/models", content=b"\0" * 600_000, headers=AUTH)
    assert r.status_code == 413 and "--max-model-mb" in r.json()["detail"]
    still_serves(client, model_id, inputs, reference)


@pytest.mark.parametrize(
    ("tensors", "message"),
    [
        (
            {"x": np.zeros((1, 4, 64, 64), np.float64)},
            "'x' has dtype float64, the model expects float32",
        ),
        ({"x": np.zeros((1, 4, 32, 32), np.float32)}, "'x' has shape [1, 4, 32, 32]"),
        ({"x": np.zeros((4, 64, 64), np.float32)}, "'x' has shape [4, 64, 64]"),
        ({}, "input tensor 'x' is missing"),
        (
            {"x": np.zeros((1, 4, 64, 64), np.float32), "extra": np.zeros(1)},
            "'extra' is not an input",
        ),
    ],
)
def test_wrong_tensors_get_422_naming_the_tensor(
    server, client, model_id, inputs, reference, tensors, message
):
    r = httpx.post(
        f"{server[0]}/models/{model_id}/run", content=encode_tensors(tensors), headers=AUTH
    )
    assert r.status_code == 422
    assert message in r.json()["detail"]
    with pytest.raises(AgentError, match="HTTP 422"):
        client.run(model_id, tensors)
    still_serves(client, model_id, inputs, reference)


def test_bad_bodies_and_models_get_clear_errors(server, client, model_id, inputs, reference):
    url = server[0]
    r = httpx.post(f"{url}/models/{model_id}/run", content=b"not numpy", headers=AUTH)
    assert r.status_code == 422 and ".npz" in r.json()["detail"]
    r = httpx.put(f"{url}/models", content=b"definitely not onnx", headers=AUTH)
    assert r.status_code == 422 and "not an ONNX model" in r.json()["detail"]
    # passes onnx.checker (unknown domain) but ONNX Runtime has no kernel for it
    node = helper.make_node("Frobnicate", ["a"], ["b"], domain="com.example")
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("a", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("b", TensorProto.FLOAT, [1])],
    )
    odd = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.example", 1)]
    )
    r = httpx.put(f"{url}/models", content=odd.SerializeToString(), headers=AUTH)
    assert r.status_code == 422 and "ONNX Runtime cannot load" in r.json()["detail"]
    # external data would be read from the agent's disk: refused outright
    ext = residual_block_model()
    w = ext.graph.initializer[0]
    onnx.external_data_helper.set_external_data(w, location="../../../etc/passwd")
    w.data_location = TensorProto.EXTERNAL
    w.ClearField("raw_data")
    w.ClearField("float_data")
    r = httpx.put(f"{url}/models", content=ext.SerializeToString(), headers=AUTH)
    assert r.status_code == 422 and "external data" in r.json()["detail"]
    r = httpx.post(f"{url}/models/{'0' * 64}/run", content=encode_tensors(inputs), headers=AUTH)
    assert r.status_code == 404 and "upload the model" in r.json()["detail"]
    r = httpx.post(f"{url}/models/..%2F..%2Fetc/run", content=encode_tensors(inputs), headers=AUTH)
    assert r.status_code == 404
    still_serves(client, model_id, inputs, reference)


def test_slow_body_gets_408_and_the_agent_keeps_serving(
    server, client, model_id, inputs, reference
):
    """A client that declares 1000 bytes and sends 10 gets 408 at the 4 s request limit."""
    port = int(server[0].rsplit(":", 1)[1])
    head = (
        f"POST /models/{model_id}/run HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Authorization: Bearer {TOKEN}\r\nContent-Length: 1000\r\n\r\n"
    )
    start = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=20) as sock:
        sock.sendall(head.encode() + b"\0" * 10)
        reply = b""
        while b"\r\n\r\n" not in reply or not reply.rstrip().endswith(b"}"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            reply += chunk
    assert reply.startswith(b"HTTP/1.1 408"), reply[:200]
    assert b"not received within 4 s" in reply
    assert 3.5 <= time.monotonic() - start <= 15
    still_serves(client, model_id, inputs, reference)


def test_profile_measures_on_the_agent(server, client, model, model_id, inputs):
    result = client.profile(model_id, runs=3, warmup=1)  # the agent samples inputs
    assert result["kind"] == "measured_target"
    assert result["fingerprint"]["ort_version"] == ort.__version__
    profile = Profile.model_validate(result["profile"])  # the agent's own record, intact
    assert profile.runs == 3 and result["model_id"] == model_id
    assert set(profile.nodes) == {n.name for n in model.graph.node}
    assert profile.end_to_end_ms > 0 and sum(t.median_ms for t in profile.nodes.values()) > 0
    given = Profile.model_validate(
        client.profile(model_id, runs=2, warmup=0, inputs=inputs)["profile"]
    )
    assert given.runs == 2
    with pytest.raises(AgentError, match="'x' has dtype float64"):
        client.profile(model_id, runs=2, inputs={"x": inputs["x"].astype(np.float64)})
    with pytest.raises(AgentError, match="over this agent's limit"):
        client.profile(model_id, runs=5000)


def test_measure_on_agent_is_measured_target_and_cached(monkeypatch, tmp_path, client, model):
    monkeypatch.setenv("EDGEDL_CACHE_DIR", str(tmp_path))
    first = measure_on_agent(client, model, runs=3, warmup=1)
    assert first.kind == "measured_target" and not first.cached
    assert first.end_to_end_ms > 0 and set(first.node_ms()) == {n.name for n in model.graph.node}
    assert first.fingerprint.ort_version == ort.__version__
    again = measure_on_agent(client, model, runs=3, warmup=1)
    assert again.cached and again.profile == first.profile
    assert not measure_on_agent(client, model, runs=3, warmup=1, cache=False).cached


def test_200_concurrent_requests_complete_and_memory_is_stable(
    server, client, model_id, inputs, reference
):
    proc = psutil.Process(server[1])

    def one(_: int) -> float:
        outputs, _ms = client.run(model_id, inputs)
        return max_abs_error(outputs, reference)

    with ThreadPoolExecutor(max_workers=16) as pool:
        list(pool.map(one, range(80), timeout=60))  # warm-up: session, arenas, buffers
        before = proc.memory_info().rss
        errors = list(pool.map(one, range(200), timeout=60))
    after = proc.memory_info().rss
    assert len(errors) == 200 and max(errors) <= 1e-5
    assert after <= before * 1.10, f"RSS grew from {before} to {after} bytes"


def test_client_reports_unreachable_agent():
    with pytest.raises(AgentError, match="cannot reach the agent"):
        AgentClient("http://127.0.0.1:9", TOKEN, timeout=2).health()
    with pytest.raises(AgentError, match="http://"):
        AgentClient("127.0.0.1:9", TOKEN)


def test_serve_refuses_to_start_without_token():
    from app.cli import cli

    result = CliRunner().invoke(cli, ["agent", "serve"], env={"EDGEDL_AGENT_TOKEN": None})
    assert result.exit_code == 2
    assert "refusing to start without a token" in result.output


def test_loopback_detection_and_limits_validation():
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.5")
    assert exposure_warning("127.0.0.1") is None
    assert "reachable from other machines" in (exposure_warning("0.0.0.0") or "")
    with pytest.raises(RequestError, match="max_body_bytes"):
        AgentLimits(max_body_bytes=0)


def test_codec_keeps_any_tensor_name_and_refuses_bombs_and_pickles():
    tensors = {
        "allow_pickle": np.arange(3),  # np.savez would swallow this name as its own keyword
        "file": np.ones((2, 2), np.float16),
        "/layer1/Conv_output_0": np.array(True),
        "empty": np.zeros((0, 3)),
    }
    back = decode_tensors(encode_tensors(tensors), max_bytes=1 << 20)
    assert set(back) == set(tensors)
    assert all(np.array_equal(back[k], v) and back[k].dtype == v.dtype for k, v in tensors.items())
    bomb = io.BytesIO()
    np.savez_compressed(bomb, x=np.zeros(10**7))  # ~80 KB that inflates to 80 MB
    with pytest.raises(InputDataError, match="would expand to 80000128 bytes"):
        decode_tensors(bomb.getvalue(), max_bytes=1 << 20)
    pickled = io.BytesIO()
    np.save(pickled, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(InputDataError, match="allow_pickle"):
        decode_tensors(pickled.getvalue(), max_bytes=1 << 20)


def test_public_surface():
    import advisor.agent
    import advisor.validate.split

    assert advisor.agent.__all__ == [
        "AgentClient", "AgentLimits", "EmulatedLink", "RemoteRun", "TargetProfile",
        "create_app", "measure_on_agent", "serve",
    ]  # fmt: skip
    assert all(getattr(advisor.agent, name) for name in advisor.agent.__all__)
    assert all(getattr(advisor.validate.split, name) for name in advisor.validate.split.__all__)
