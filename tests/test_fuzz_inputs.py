"""Hostile and odd inputs through the real CLI (issue 16): malformed models, data files, run
stores and report paths. For every case: exit 0, 1 or 2 only (3 is a bug of ours), exactly
one line on stderr for 2, no traceback, and nothing written outside `--out` and the cache.

Each case builds its files in `tmp/in`, runs `edgedl` in-process with the working directory
`tmp/cwd` and the cache in one shared folder (so the host is calibrated once), and may check
what the output says. Cases that get past loading run the baseline plan only, 3 runs.
"""

from __future__ import annotations

import os
import random
import shutil
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnx.helper as oh
import pytest
from click.testing import CliRunner
from conftest import make_chain_model, make_int64_model, save_with_external_data
from onnx import TensorProto, numpy_helper

from app.cli import cli


def _runner() -> CliRunner:
    """stdout and stderr apart: click >= 8.2 always, click 8.1 with mix_stderr=False."""
    try:
        return CliRunner(mix_stderr=False)  # type: ignore[call-arg]
    except TypeError:
        return CliRunner()


F = TensorProto.FLOAT
ADVISE = ["--device", "rpi4", "--link", "wifi", "--latency-ms", "50", "--runs", "3", "--quiet"]


@dataclass(frozen=True)
class Case:
    name: str
    build: Callable[[Path], list[str]]  # (the case's input folder) -> CLI arguments
    exits: tuple[int, ...] = (2,)
    says: str | None = None  # a text the output must hold (stderr for 2, else stdout+stderr)
    own_cache: bool = False  # the case damages the cache (run store): give it a copy


# --- models -------------------------------------------------------------------------------


def _save(model: onnx.ModelProto, d: Path, name: str = "m.onnx") -> Path:
    p = d / name
    p.write_bytes(model.SerializeToString())
    return p


def _advise(path: Path | str, *extra: str) -> list[str]:
    return ["advise", str(path), *ADVISE, "--plan", "baseline.device", *extra]


def _graph(nodes, inputs, outputs, inits=(), opset=17, ir=8) -> onnx.ModelProto:
    m = oh.make_model(
        oh.make_graph(nodes, "g", inputs, outputs, list(inits)),
        opset_imports=[oh.make_opsetid("", opset)],
    )
    m.ir_version = ir
    return m


def _vi(name, dims, t=F):
    return oh.make_tensor_value_info(name, t, dims)


def _relu(opset=17, ir=8, shape=(1, 4), t=F) -> onnx.ModelProto:
    return _graph(
        [oh.make_node("Relu", ["x"], ["y"], "r")], [_vi("x", shape, t)], [_vi("y", shape, t)],
        opset=opset, ir=ir,
    )  # fmt: skip


def _chain(d: Path) -> Path:
    return _save(make_chain_model(), d)


def m_empty(d):
    (d / "m.onnx").write_bytes(b"")
    return _advise(d / "m.onnx")


def m_random(d):
    (d / "m.onnx").write_bytes(random.Random(1).randbytes(3000))
    return _advise(d / "m.onnx")


def m_truncated(d):
    p = _chain(d)
    p.write_bytes(p.read_bytes()[:300])
    return _advise(p)


def m_unknown_op(d):
    m = _graph(
        [oh.make_node("Frobnicate", ["x"], ["y"], "f")], [_vi("x", [1, 4])], [_vi("y", [1, 4])]
    )
    return _advise(_save(m, d))


def m_unknown_domain(d):
    m = _graph(
        [oh.make_node("Frob", ["x"], ["y"], "f", domain="com.example")],
        [_vi("x", [1, 4])], [_vi("y", [1, 4])],
    )  # fmt: skip
    m.opset_import.append(oh.make_opsetid("com.example", 1))
    return _advise(_save(m, d))


def m_cycle(d):
    nodes = [
        oh.make_node("Add", ["x", "b"], ["a"], "n1"),
        oh.make_node("Relu", ["a"], ["b"], "n2"),
    ]
    return _advise(_save(_graph(nodes, [_vi("x", [1, 4])], [_vi("b", [1, 4])]), d))


def m_undefined_input(d):
    nodes = [oh.make_node("Add", ["x", "nowhere"], ["y"], "add")]
    return _advise(_save(_graph(nodes, [_vi("x", [1, 4])], [_vi("y", [1, 4])]), d))


def m_duplicate_outputs(d):
    nodes = [oh.make_node("Relu", ["x"], ["y"], "a"), oh.make_node("Neg", ["x"], ["y"], "b")]
    return _advise(_save(_graph(nodes, [_vi("x", [1, 4])], [_vi("y", [1, 4])]), d))


def m_duplicate_graph_outputs(d):
    nodes = [oh.make_node("Relu", ["x"], ["y"], "a")]
    m = _graph(nodes, [_vi("x", [1, 4])], [_vi("y", [1, 4]), _vi("y", [1, 4])])
    return _advise(_save(m, d))


def _external(d: Path, location: str | None = None, offset: int | None = None) -> Path:
    p = save_with_external_data(make_chain_model(), d / "model")
    m = onnx.load(p, load_external_data=False)
    for init in m.graph.initializer:
        for e in init.external_data:
            if e.key == "location" and location is not None:
                e.value = location
            if e.key == "offset" and offset is not None:
                e.value = str(offset)
        if offset is not None and not any(e.key == "offset" for e in init.external_data):
            init.external_data.add(key="offset", value=str(offset))
    p.write_bytes(m.SerializeToString())
    return p


def m_ext_escape(d):
    (d / "outside.bin").write_bytes(b"\0" * 4096)
    return _advise(_external(d, "../outside.bin"))


def m_ext_absolute(d):
    (d / "abs.bin").write_bytes(b"\0" * 4096)
    return _advise(_external(d, str((d / "abs.bin").resolve())))


def m_ext_missing(d):
    return _advise(_external(d, "gone.bin"))


def m_ext_negative_offset(d):
    return _advise(_external(d, offset=-64))


def m_opset_high(d):
    return _advise(_save(_relu(opset=99), d))


def m_opset_low(d):
    return _advise(_save(_relu(opset=1), d))


def m_ir_high(d):
    return _advise(_save(_relu(ir=99), d))


def m_ir_low(d):
    return _advise(_save(_relu(ir=1), d))


def m_string_input(d):
    s = TensorProto.STRING
    m = _graph(
        [oh.make_node("Identity", ["x"], ["y"], "i")], [_vi("x", [1, 2], s)], [_vi("y", [1, 2], s)]
    )
    return _advise(_save(m, d))


def m_bool_input(d):
    b = TensorProto.BOOL
    m = _graph(
        [oh.make_node("Not", ["x"], ["y"], "n")], [_vi("x", [1, 4], b)], [_vi("y", [1, 4], b)]
    )
    return _advise(_save(m, d))


def m_zero_dim(d):
    return _advise(_save(_relu(shape=(0, 4)), d))


def m_negative_dim(d):
    return _advise(_save(_relu(shape=(1, -5)), d))


def m_negative_input_shape(d):
    return _advise(_save(make_int64_model(seq="seq"), d), "--input-shape", "input_ids=1x-5")


def m_huge_input_shape(d):
    shapes = ["--input-shape", "input_ids=1x100000000000", "--input-shape", "attention_mask=1x8"]
    return _advise(_save(make_int64_model(seq="seq"), d), *shapes)


def m_overflowing_input_shape(d):
    return _advise(_save(make_int64_model(seq="seq"), d), "--input-shape", f"input_ids=1x{10**30}")


def m_huge_input(d):
    m = make_chain_model()
    dims = m.graph.input[0].type.tensor_type.shape.dim
    dims[2].dim_value = dims[3].dim_value = 100_000
    return _advise(_save(m, d))


def m_huge_intermediate(d):
    shape = numpy_helper.from_array(np.array([300_000, 300_000], np.int64), "shape")
    nodes = [
        oh.make_node("Expand", ["x", "shape"], ["big"], "expand"),
        oh.make_node("ReduceSum", ["big"], ["y"], "sum", keepdims=0),
    ]
    return _advise(_save(_graph(nodes, [_vi("x", [1, 1])], [_vi("y", [])], [shape]), d))


def m_max_memory(d):
    return _advise(_chain(d), "--max-memory", "1k")


def d_max_memory(d):
    return _with_data(d, lambda p: np.savez(p, x=_x(64)), "--max-memory", "20k")


def m_max_memory_junk(d):
    return _advise(_chain(d), "--max-memory", "lots")


def m_symbolic_no_data(d):
    return _advise(_save(make_int64_model(seq="seq", batch="batch"), d))


def m_no_nodes(d):
    return _advise(_save(_graph([], [_vi("x", [1, 4])], [_vi("x", [1, 4])]), d))


def _nan_chain(d: Path) -> Path:
    m = make_chain_model()
    for i, init in enumerate(m.graph.initializer):
        if init.name == "fc.w":
            w = np.full(tuple(init.dims), np.nan, np.float32)
            m.graph.initializer[i].CopyFrom(numpy_helper.from_array(w, "fc.w"))
    return _save(m, d)


def m_nan_weights(d):
    return _advise(_nan_chain(d))


def m_nan_weights_allowed(d):
    return _advise(_nan_chain(d), "--allow-nonfinite")


def m_some_nonfinite_allowed(d):
    m = _graph([oh.make_node("Log", ["x"], ["y"], "log")], [_vi("x", [1, 1])], [_vi("y", [1, 1])])
    return _advise(_save(m, d), "--allow-nonfinite")


def m_some_nonfinite(d):
    m = _graph([oh.make_node("Log", ["x"], ["y"], "log")], [_vi("x", [1, 1])], [_vi("y", [1, 1])])
    return _advise(_save(m, d))


def m_folder(d):
    (d / "m.onnx").mkdir()
    return _advise(d / "m.onnx")


def m_missing(d):
    return _advise(d / "absent.onnx")


def m_torch_pickle(d):
    import pickle

    (d / "m.onnx").write_bytes(pickle.dumps({"w": [1, 2, 3]}))
    return _advise(d / "m.onnx")


def m_initializer_without_data(d):
    w = onnx.TensorProto(name="w", data_type=F, dims=[10**7, 10**6])  # 36 TiB claimed, 0 held
    nodes = [oh.make_node("Add", ["x", "w"], ["y"], "add")]
    return _advise(_save(_graph(nodes, [_vi("x", [1, 4])], [_vi("y", [1, 4])], [w]), d))


def m_negative_initializer_dim(d):
    w = onnx.TensorProto(name="w", data_type=F, dims=[-4])
    nodes = [oh.make_node("Add", ["x", "w"], ["y"], "add")]
    return _advise(_save(_graph(nodes, [_vi("x", [1, 4])], [_vi("y", [1, 4])], [w]), d))


def m_undefined_output(d):
    nodes = [oh.make_node("Relu", ["x"], ["h"], "r")]
    return _advise(_save(_graph(nodes, [_vi("x", [1, 4])], [_vi("z", [1, 4])]), d))


def m_path_like_names(d):
    m = make_chain_model()
    for i, node in enumerate(m.graph.node):
        node.name = f"../../escaped{i}/n"
    return _advise(_save(m, d), "--plan", "partition.chain")


def m_loop(d):
    body = oh.make_graph(
        [
            oh.make_node("Add", ["v_in", "one"], ["v_out"], "add"),
            oh.make_node("Identity", ["cond_in"], ["cond_out"], "id"),
        ],
        "body",
        [
            _vi("i", [], TensorProto.INT64),
            _vi("cond_in", [], TensorProto.BOOL),
            _vi("v_in", [1, 4]),
        ],
        [_vi("cond_out", [], TensorProto.BOOL), _vi("v_out", [1, 4])],
    )
    inits = [
        numpy_helper.from_array(np.array(3, np.int64), "n"),
        numpy_helper.from_array(np.array(True), "c"),
        numpy_helper.from_array(np.ones((1, 4), np.float32), "one"),
    ]
    nodes = [oh.make_node("Loop", ["n", "c", "x"], ["y"], "loop", body=body)]
    return _advise(_save(_graph(nodes, [_vi("x", [1, 4])], [_vi("y", [1, 4])], inits), d))


# --- data files (for the chain model: x 1x3x8x8 float32, 10 classes) ---------------------


def _with_data(d: Path, write: Callable[[Path], None], *extra: str, model=None) -> list[str]:
    p = d / "data.npz"
    write(p)
    return _advise(model or _chain(d), "--data", str(p), *extra)


def _x(n=8, dtype=np.float32, shape=(3, 8, 8)):
    return np.random.default_rng(0).standard_normal((n, *shape)).astype(dtype)


def d_empty(d):
    return _with_data(d, lambda p: p.write_bytes(b""))


def d_random(d):
    return _with_data(d, lambda p: p.write_bytes(random.Random(2).randbytes(2000)))


def d_npy(d):
    return _with_data(d, lambda p: np.save(open(p, "wb"), _x()))


def _lying(p: Path, shape=(10**13,)) -> None:
    with zipfile.ZipFile(p, "w") as z, z.open("x.npy", "w") as fh:
        np.lib.format.write_array_header_1_0(
            fh, {"descr": "<f4", "fortran_order": False, "shape": shape}
        )
        fh.write(b"\0" * 64)


def d_lying_header(d):
    return _with_data(d, _lying)


def d_lying_header_npy(d):
    def write(p):
        with open(p, "wb") as fh:
            np.lib.format.write_array_header_1_0(
                fh, {"descr": "<f4", "fortran_order": False, "shape": (10**13,)}
            )
            fh.write(b"\0" * 64)

    return _with_data(d, write)


def d_pickled(d):
    return _with_data(d, lambda p: np.savez(p, x=np.array([{"a": 1}, None], dtype=object)))


def d_empty_batch(d):
    return _with_data(d, lambda p: np.savez(p, x=np.zeros((0, 3, 8, 8), np.float32)))


def d_wrong_shape(d):
    return _with_data(d, lambda p: np.savez(p, x=_x(shape=(3, 9, 9))))


def d_wrong_rank(d):
    return _with_data(d, lambda p: np.savez(p, x=np.zeros((4, 192), np.float32)))


def d_float_for_int(d):
    model = _save(make_int64_model(), d)
    arr = np.zeros((4, 6), np.float32)
    return _with_data(d, lambda p: np.savez(p, input_ids=arr, attention_mask=arr), model=model)


def d_float64(d):
    return _with_data(d, lambda p: np.savez(p, x=_x(dtype=np.float64)))


def d_int32(d):
    return _with_data(d, lambda p: np.savez(p, x=(_x() * 10).astype(np.int32)))


def d_labels_out_of_range(d):
    return _with_data(d, lambda p: np.savez(p, x=_x(), y=np.full(8, 50)))


def d_labels_negative(d):
    return _with_data(d, lambda p: np.savez(p, x=_x(), y=np.full(8, -1)))


def d_labels_count(d):
    return _with_data(d, lambda p: np.savez(p, x=_x(), y=np.zeros(3, np.int64)))


def d_labels_strings(d):
    return _with_data(d, lambda p: np.savez(p, x=_x(), y=np.array(["cat"] * 8)))


def d_strings(d):
    return _with_data(d, lambda p: np.savez(p, x=np.full((4, 3, 8, 8), "abc")))


def d_complex(d):
    return _with_data(d, lambda p: np.savez(p, x=_x().astype(np.complex64)))


def d_one_hot_labels(d):
    return _with_data(d, lambda p: np.savez(p, x=_x(), y=np.eye(10, dtype=np.int64)[:8]))


def d_compressed(d):
    return _with_data(d, lambda p: np.savez_compressed(p, x=_x(), y=np.arange(8)))


def d_not_npy_member(d):
    def write(p):
        with zipfile.ZipFile(p, "w") as z:
            z.writestr("x.npy", "plain text, not an array")

    return _with_data(d, write)


def d_nan(d):
    def write(p):
        x = _x()
        x[0, 0, 0, 0] = np.nan
        np.savez(p, x=x)

    return _with_data(d, write)


def d_missing_key(d):
    return _with_data(d, lambda p: np.savez(p, image=_x()))


def d_folder(d):
    (d / "data.npz").mkdir()
    return _advise(_chain(d), "--calib-data", str(d / "data.npz"))


def d_too_few_to_split(d):
    return _with_data(d, lambda p: np.savez(p, x=_x(2)), "--plan", "quantize.static_int8")


def d_calib_missing(d):
    return _with_data(d, lambda p: np.savez(p, x=_x()), "--calib-data", str(d / "nope.npz"))


def d_calib_same_file(d):
    return _with_data(d, lambda p: np.savez(p, x=_x()), "--calib-data", str(d / "data.npz"))


def d_calib_wrong_shape(d):
    (d / "calib.npz").write_bytes(b"")
    np.savez(d / "calib.npz", x=_x(shape=(3, 4, 4)))
    return _with_data(d, lambda p: np.savez(p, x=_x()), "--calib-data", str(d / "calib.npz"))


def d_dynamic_transformer(d):
    model = _save(make_int64_model(seq="seq", batch="batch", vocab=50), d)
    ids = (np.arange(32, dtype=np.int64) % 50).reshape(1, 32)
    return _with_data(
        d, lambda p: np.savez(p, input_ids=ids, attention_mask=np.ones_like(ids)), model=model
    )


def d_dynamic_disagree(d):
    model = _save(make_int64_model(seq="seq", batch="batch", vocab=50), d)
    ids = np.zeros((1, 32), np.int64)
    mask = np.ones((1, 16), np.int64)
    return _with_data(d, lambda p: np.savez(p, input_ids=ids, attention_mask=mask), model=model)


# --- run store and report paths ---------------------------------------------------------


def _cache(d: Path) -> Path:
    return Path(os.environ["EDGEDL_CACHE_DIR"])


def s_runs_folder(d):
    (_cache(d) / "runs.sqlite").mkdir()
    return _advise(_chain(d))


def s_runs_corrupt(d):
    (_cache(d) / "runs.sqlite").write_bytes(random.Random(3).randbytes(5000))
    return _advise(_chain(d))


def s_runs_empty(d):
    (_cache(d) / "runs.sqlite").write_bytes(b"")
    return _advise(_chain(d))


def s_report_db_missing(d):
    return ["report", "latest", "--db", str(d / "missing.sqlite")]


def s_runs_list_db_missing(d):
    return ["runs", "show", "latest", "--db", str(d / "missing.sqlite")]


def s_runs_db_folder(d):
    return ["runs", "list", "--db", str(d)]


def s_report_db_not_runs(d):
    import sqlite3

    with sqlite3.connect(d / "other.sqlite") as conn:
        conn.execute("create table t (x)")
    return ["report", "latest", "--db", str(d / "other.sqlite")]


def s_report_proc(d):
    return _advise(_chain(d), "--report", "/proc/x.html")


CASES = [
    Case("empty file", m_empty, says="not a valid ONNX model"),
    Case("random bytes", m_random),
    Case("truncated protobuf", m_truncated),
    Case("unknown op", m_unknown_op, says="Frobnicate"),
    Case("unknown domain", m_unknown_domain, says="Frob"),
    Case("cycle", m_cycle),
    Case("undefined input", m_undefined_input),
    Case("duplicate node outputs", m_duplicate_outputs),
    Case("duplicate graph outputs", m_duplicate_graph_outputs, exits=(0, 1, 2)),
    Case("external data escaping the folder", m_ext_escape, says="path traversal"),
    Case("external data absolute", m_ext_absolute, says="path traversal"),
    Case("external data missing", m_ext_missing, says="gone.bin"),
    Case("external data negative offset", m_ext_negative_offset, says="negative"),
    Case("opset too high", m_opset_high),
    Case("opset too low", m_opset_low),
    Case("IR version too high", m_ir_high),
    Case("IR version too low", m_ir_low),
    Case("string input", m_string_input, exits=(0, 1, 2)),
    Case("bool input", m_bool_input, exits=(0, 1, 2)),
    Case("zero-size dim", m_zero_dim, says="size 0"),
    Case("negative dim", m_negative_dim, says="negative"),
    Case("negative --input-shape", m_negative_input_shape, says="positive integers"),
    Case("huge input", m_huge_input, says="largest tensor is 'x'"),
    Case("huge --input-shape", m_huge_input_shape, says="largest tensor is 'input_ids'"),
    Case("--input-shape past int64", m_overflowing_input_shape, says="at most 2**40"),
    Case("huge intermediate", m_huge_intermediate, says="largest tensor is 'big'"),
    Case("--max-memory below the model", m_max_memory, says="--max-memory"),
    Case("--max-memory not a size", m_max_memory_junk, says="--max-memory"),
    Case("data over --max-memory", d_max_memory, says="more than the 20.0 KiB"),
    Case("symbolic dim, no data", m_symbolic_no_data, says="--input-shape"),
    Case("no nodes", m_no_nodes, says="no nodes"),
    Case("NaN weights", m_nan_weights, says="NaN or infinite"),
    Case("NaN weights, --allow-nonfinite", m_nan_weights_allowed, says="nothing to compare"),
    Case("some NaN outputs", m_some_nonfinite, says="--allow-nonfinite"),
    Case("some NaN outputs, allowed", m_some_nonfinite_allowed, (0, 1), "--allow-nonfinite:"),
    Case("initializer claims 36 TiB, holds nothing", m_initializer_without_data),
    Case("negative initializer dim", m_negative_initializer_dim, says="Negative dimension"),
    Case("undefined graph output", m_undefined_output, says="'z'"),
    Case("path-like node names", m_path_like_names, (0, 1)),
    Case("Loop with a body", m_loop, (0, 1)),
    Case("model is a folder", m_folder, says="folder"),
    Case("model missing", m_missing, says="not found"),
    Case("pickle as a model", m_torch_pickle),
    Case("data: empty file", d_empty, says="not an .npz"),
    Case("data: random bytes", d_random, says="not an .npz"),
    Case("data: an .npy file", d_npy, says="not an .npz"),
    Case("data: header claims 10^13 elements", d_lying_header, says="claims shape"),
    Case("data: .npy header claims 10^13", d_lying_header_npy, says="not an .npz"),
    Case("data: pickled npz", d_pickled, says="pickle"),
    Case("data: empty batch", d_empty_batch, says="0 samples"),
    Case("data: wrong shape", d_wrong_shape, says="shape"),
    Case("data: wrong rank", d_wrong_rank, says="shape"),
    Case("data: float for int input", d_float_for_int, says="int64"),
    Case("data: float64 for float32", d_float64, (0, 1), "cast to the model's float32"),
    Case("data: int32 for float32", d_int32, (0, 1), "cast to the model's float32"),
    Case("labels out of range", d_labels_out_of_range, says="labels"),
    Case("labels negative", d_labels_negative, says="negative"),
    Case("labels count", d_labels_count, says="labels"),
    Case("labels strings", d_labels_strings, says="labels"),
    Case("data: NaN", d_nan, says="NaN"),
    Case("data: strings", d_strings, says="not real numbers"),
    Case("data: complex", d_complex, says="not real numbers"),
    Case("labels one-hot", d_one_hot_labels, says="one class index per sample"),
    Case("data: compressed npz", d_compressed, (0, 1)),
    Case("data: member not an array", d_not_npy_member, says="not a valid .npy member"),
    Case("data: no array for the input", d_missing_key, says="no array"),
    Case("calib data is a folder", d_folder),
    Case("data: too few to split, static INT8 asked", d_too_few_to_split, says="--calib-data"),
    Case("calib data missing", d_calib_missing, says="not found"),
    Case("calib data wrong shape", d_calib_wrong_shape, says="shape"),
    Case("calib data is the --data file", d_calib_same_file, says="same file"),
    Case("dynamic axes fixed by --data", d_dynamic_transformer, (0, 1), "from the --data"),
    Case("dynamic axes, arrays disagree", d_dynamic_disagree, says="disagree"),
    Case("runs.sqlite is a folder", s_runs_folder, (0, 1), "not stored", own_cache=True),
    Case("runs.sqlite corrupt", s_runs_corrupt, (0, 1), "not stored", own_cache=True),
    Case("runs.sqlite 0 bytes", s_runs_empty, (0, 1), "0 bytes", own_cache=True),
    Case("report --db missing", s_report_db_missing, says="no runs database"),
    Case("runs show --db missing", s_runs_list_db_missing, says="no runs database"),
    Case("runs list --db a folder", s_runs_db_folder, says="is a folder"),
    Case("report --db another database", s_report_db_not_runs, says="not a runs database"),
    Case("--report /proc/x.html", s_report_proc, says="--report"),
    Case("--report a folder", lambda d: _advise(_chain(d), "--report", str(d)), says="folder"),
]


@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cache")


def _files(root: Path, skip: tuple[Path, ...]) -> dict[str, int]:
    out = {}
    for p in root.rglob("*"):
        if any(p == s or s in p.parents for s in skip):
            continue
        out[str(p.relative_to(root))] = p.stat().st_size if p.is_file() else -1
    return out


def test_enough_cases():
    assert len(CASES) >= 40
    assert len({c.name for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_hostile_input(case: Case, tmp_path, shared_cache, monkeypatch):
    cache = shared_cache
    if case.own_cache:
        cache = tmp_path / "cache"
        shutil.copytree(shared_cache, cache, ignore=shutil.ignore_patterns("runs.sqlite*"))
    monkeypatch.setenv("EDGEDL_CACHE_DIR", str(cache))
    monkeypatch.delenv("EDGEDL_DEBUG", raising=False)
    inputs, cwd, out = tmp_path / "in", tmp_path / "cwd", tmp_path / "out"
    inputs.mkdir()
    cwd.mkdir()
    args = case.build(inputs)
    if args[0] == "advise":
        args += ["--out", str(out)]
    monkeypatch.chdir(cwd)
    before = _files(tmp_path, (out, cache))
    r = _runner().invoke(cli, args)
    text = r.stdout + r.stderr
    assert r.exit_code in case.exits, f"exit {r.exit_code}: {text}"
    assert "Traceback" not in text and "internal error" not in text, text
    assert r.exception is None or isinstance(r.exception, SystemExit), repr(r.exception)
    if r.exit_code == 2:
        assert len(r.stderr.strip().splitlines()) == 1, r.stderr
    if case.says:
        assert case.says in (r.stderr if r.exit_code == 2 else text), text
    assert _files(tmp_path, (out, cache)) == before, "files written outside --out and the cache"
