"""Shared by test_agent.py and test_split.py: a residual-block model built with onnx.helper,
and an agent server started as its own process on a free loopback port."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "test-token-0123456789"

# node names of the residual model, layer-coded
STEM = ("stem.conv", "stem.relu")
SKIP_CUT = (*STEM, "block.conv1", "block.relu1")  # crossing: the skip r0 and b1


def residual_block_model(channels: int = 8, hw: int = 64, seed: int = 0) -> onnx.ModelProto:
    """x[1,4,hw,hw] -> conv/relu -> (conv/relu/conv) + skip -> relu -> pool -> fc -> y[1,10]."""
    rng = np.random.default_rng(seed)

    def init(name: str, *shape: int) -> onnx.TensorProto:
        return numpy_helper.from_array((rng.standard_normal(shape) * 0.2).astype(np.float32), name)

    c = channels
    inits = [
        init("w0", c, 4, 3, 3),
        init("b0", c),
        init("w1", c, c, 3, 3),
        init("b1w", c),
        init("w2", c, c, 3, 3),
        init("b2", c),
        init("w3", 10, c),
        init("b3", 10),
    ]
    conv = {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1]}
    nodes = [
        helper.make_node("Conv", ["x", "w0", "b0"], ["c0"], name="stem.conv", **conv),
        helper.make_node("Relu", ["c0"], ["r0"], name="stem.relu"),
        helper.make_node("Conv", ["r0", "w1", "b1w"], ["c1"], name="block.conv1", **conv),
        helper.make_node("Relu", ["c1"], ["b1"], name="block.relu1"),
        helper.make_node("Conv", ["b1", "w2", "b2"], ["c2"], name="block.conv2", **conv),
        helper.make_node("Add", ["c2", "r0"], ["s"], name="block.add"),
        helper.make_node("Relu", ["s"], ["r1"], name="block.relu2"),
        helper.make_node("GlobalAveragePool", ["r1"], ["g"], name="head.pool"),
        helper.make_node("Flatten", ["g"], ["f"], name="head.flatten"),
        helper.make_node("Gemm", ["f", "w3", "b3"], ["y"], name="head.fc", transB=1),
    ]
    graph = helper.make_graph(
        nodes,
        "residual",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, hw, hw])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 10])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    model = onnx.shape_inference.infer_shapes(model)
    onnx.checker.check_model(model)
    return model


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def agent_server(
    store: Path, *args: str, startup_s: float = 60.0, limits: dict[str, Any] | None = None
) -> Iterator[tuple[str, int]]:
    """Start `edgedl agent serve` on 127.0.0.1 in its own process; yield (url, pid); stop it
    by its PID on exit.

    With ``limits`` (AgentLimits fields, some of which the CLI has no flag for) the process
    runs advisor.agent.server.serve with them instead of the CLI; ``args`` are then unused.
    """
    port = free_port()
    env = {**os.environ, "EDGEDL_AGENT_TOKEN": TOKEN, "EDGEDL_CACHE_DIR": str(store / "cache")}
    if limits is None:
        cmd = [
            sys.executable,
            "-m",
            "app.cli",
            "agent",
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--store",
            str(store / "models"),
            *args,
        ]
    else:
        code = (
            "import os, sys\n"
            "from advisor.agent.server import AgentLimits, serve\n"
            f"serve('127.0.0.1', {port}, os.environ['EDGEDL_AGENT_TOKEN'], "
            f"AgentLimits(**{limits!r}), store={str(store / 'models')!r})\n"
        )
        cmd = [sys.executable, "-c", code]
    log_path = store / f"agent-{port}.log"  # a file, not a pipe: a full pipe would block it
    log = log_path.open("w")
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + startup_s
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"agent exited ({proc.returncode}): {log_path.read_text()}")
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"agent did not answer on {url} within {startup_s} s")
            time.sleep(0.1)
        yield url, proc.pid
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        log.close()
