"""The agent's models: ONNX files on disk named by the sha256 of their bytes, live ONNX Runtime
sessions for the recently used ones, and the check of posted tensors against a session.

The files on disk stay within a quota in bytes: storing one more evicts the least recently
used (each file's mtime is its last use, so the order survives a restart).

Errors are the advisor's own (the server maps them to HTTP statuses in one place):
UnknownIdError (404), TooLargeError (413), ModelError and InputDataError (422).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort

from advisor.agent.codec import SINGLE, TooLargeError
from advisor.errors import InputDataError, ModelError, UnknownIdError
from advisor.measure.profile import make_session

_ID_CHARS = frozenset("0123456789abcdef")


@dataclass(frozen=True)
class TensorInput:
    """One input a session takes; ``None`` dims are symbolic, ``None`` dtype non-numeric."""

    name: str
    shape: tuple[int | None, ...]
    dtype: np.dtype | None

    def describe(self) -> str:
        dims = ", ".join("?" if d is None else str(d) for d in self.shape)
        return f"{self.name} ({self.dtype or 'non-numeric'}, shape [{dims}])"


@dataclass(frozen=True)
class LoadedModel:
    model: onnx.ModelProto
    session: ort.InferenceSession
    inputs: tuple[TensorInput, ...]
    outputs: tuple[str, ...]

    def signature(self) -> dict[str, Any]:
        return {
            "inputs": [
                {"name": i.name, "shape": list(i.shape), "dtype": str(i.dtype)} for i in self.inputs
            ],
            "outputs": list(self.outputs),
        }


def _input_specs(model: onnx.ModelProto, session: ort.InferenceSession) -> tuple[TensorInput, ...]:
    elem_types = {v.name: v.type.tensor_type.elem_type for v in model.graph.input}
    specs = []
    for arg in session.get_inputs():
        try:
            dtype: np.dtype | None = np.dtype(
                onnx.helper.tensor_dtype_to_np_dtype(elem_types[arg.name])
            )
        except (KeyError, TypeError, ValueError):
            dtype = None
        if dtype is not None and dtype.kind not in "biufc":
            dtype = None
        shape = tuple(d if isinstance(d, int) and d >= 0 else None for d in arg.shape)
        specs.append(TensorInput(arg.name, shape, dtype))
    return tuple(specs)


def _uses_external_data(model: onnx.ModelProto) -> bool:
    # onnx's own walker over initializers, Constant attributes and subgraphs
    return any(
        t.data_location == onnx.TensorProto.EXTERNAL
        for t in onnx.external_data_helper._get_all_tensors(model)
    )


def parse_model(data: bytes) -> onnx.ModelProto:
    """ONNX bytes -> a checked, self-contained ModelProto (ModelError says why not)."""
    model = onnx.ModelProto()
    try:
        model.ParseFromString(data)
    except Exception as exc:  # protobuf raises its own DecodeError; any failure = not ONNX
        raise ModelError(f"the body is not an ONNX model: {exc}") from exc
    if not model.graph.node and not model.graph.output:
        raise ModelError("the body is not an ONNX model (no graph); send the .onnx file's bytes")
    if _uses_external_data(model):
        # external data paths would be resolved on the agent's disk: never follow them
        raise ModelError(
            "the model refers to external data files; send one self-contained .onnx "
            "(onnx.save(model, path, save_as_external_data=False))"
        )
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)
        raise ModelError(f"onnx.checker rejects the model: {first}") from exc
    return model


class ModelStore:
    """Models under ``root`` by content hash, with an LRU of at most ``max_loaded`` sessions
    and at most ``max_bytes`` of files (least recently used evicted; None: no quota).

    Thread-safe: the server calls it from its worker threads."""

    def __init__(
        self, root: Path, *, threads: int = 1, max_loaded: int = 16, max_bytes: int | None = None
    ) -> None:
        self.root = root
        self.threads = threads
        self.max_loaded = max_loaded
        self.max_bytes = max_bytes
        self.root.mkdir(parents=True, exist_ok=True)
        self._live: OrderedDict[str, LoadedModel] = OrderedDict()
        self._lock = threading.Lock()
        self._disk = threading.Lock()  # writes and evictions of files

    def path(self, model_id: str) -> Path:
        if len(model_id) != 64 or not set(model_id) <= _ID_CHARS:
            raise UnknownIdError(f"model id {model_id!r} is not a sha256 hex digest")
        return self.root / f"{model_id}.onnx"

    def add(
        self, data: bytes, check: Callable[[str, onnx.ModelProto], None] | None = None
    ) -> tuple[str, LoadedModel]:
        """Check, load and store uploaded ONNX bytes; (model id, live model).

        ``check(model_id, model)`` runs on the parsed model before a session is made or
        anything is written (it raises to refuse). Raises TooLargeError if the file alone is
        over the store's quota; otherwise the least recently used files are evicted until
        the store fits."""
        if self.max_bytes is not None and len(data) > self.max_bytes:
            raise TooLargeError(
                f"the model is {len(data)} bytes, over this agent's store quota of "
                f"{self.max_bytes} bytes; send a smaller model or start the agent with a "
                "larger store quota"
            )
        model_id = hashlib.sha256(data).hexdigest()
        loaded = self._load(model_id, data, check)
        path = self.path(model_id)
        with self._disk:
            if not path.exists():
                tmp = path.with_suffix(f".{threading.get_ident()}.part")
                tmp.write_bytes(data)
                os.replace(tmp, path)  # atomic: a reader never sees half a file
            _touch(path)
            self._evict(keep=path)
        return model_id, loaded

    def _files(self) -> list[tuple[Path, int, int]]:
        found = []
        for path in self.root.glob("*.onnx"):
            try:
                st = path.stat()
            except FileNotFoundError:  # evicted meanwhile
                continue
            found.append((path, st.st_size, st.st_mtime_ns))
        return found

    def _evict(self, keep: Path) -> None:
        """Delete least recently used files until the store is within its quota."""
        if self.max_bytes is None:
            return
        files = sorted(self._files(), key=lambda f: f[2])
        total = sum(size for _path, size, _used in files)
        for path, size, _used in files:
            if total <= self.max_bytes:
                break
            if path == keep:
                continue
            path.unlink(missing_ok=True)
            total -= size
            with self._lock:
                self._live.pop(path.stem, None)

    def get(self, model_id: str) -> LoadedModel:
        """The live session of a stored model (loaded from disk on first use)."""
        path = self.path(model_id)
        with self._lock:
            if model_id in self._live:
                self._live.move_to_end(model_id)
                _touch(path)
                return self._live[model_id]
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise UnknownIdError(
                f"unknown model id {model_id}; upload the model with PUT /models"
            ) from None
        _touch(path)
        return self._load(model_id, data)

    def _load(
        self,
        model_id: str,
        data: bytes,
        check: Callable[[str, onnx.ModelProto], None] | None = None,
    ) -> LoadedModel:
        with self._lock:
            if model_id in self._live:
                return self._live[model_id]
        model = parse_model(data)
        if check is not None:
            check(model_id, model)
        session = make_session(data, threads=self.threads)  # ModelError if ORT cannot load it
        outputs = tuple(o.name for o in session.get_outputs())
        loaded = LoadedModel(model, session, _input_specs(model, session), outputs)
        with self._lock:
            self._live[model_id] = loaded
            self._live.move_to_end(model_id)
            while len(self._live) > self.max_loaded:
                self._live.popitem(last=False)
        return loaded


def _touch(path: Path) -> None:
    """Mark a stored file as just used (its mtime orders the evictions)."""
    with contextlib.suppress(FileNotFoundError):
        os.utime(path)


def check_feeds(loaded: LoadedModel, tensors: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Match posted tensors to the session's inputs by name, shape and dtype.

    Raises InputDataError naming the first tensor that does not fit and what was expected.
    """
    if SINGLE in tensors:
        if len(loaded.inputs) != 1:
            raise InputDataError(
                "a bare .npy body fits only one-input models; this one needs "
                f"{', '.join(i.name for i in loaded.inputs)}: send an .npz with them by name"
            )
        tensors = {loaded.inputs[0].name: tensors[SINGLE]}
    expected = {i.name: i for i in loaded.inputs}
    unknown = sorted(set(tensors) - set(expected))
    if unknown:
        raise InputDataError(
            f"tensor {unknown[0]!r} is not an input of this model; its inputs are: "
            + "; ".join(i.describe() for i in loaded.inputs)
        )
    feeds = {}
    for spec in loaded.inputs:
        if spec.name not in tensors:
            raise InputDataError(
                f"input tensor {spec.name!r} is missing; expected {spec.describe()}"
            )
        arr = tensors[spec.name]
        if spec.dtype is not None and arr.dtype != spec.dtype:
            raise InputDataError(
                f"input tensor {spec.name!r} has dtype {arr.dtype}, the model expects "
                f"{spec.dtype}; cast it with .astype('{spec.dtype}')"
            )
        if len(arr.shape) != len(spec.shape) or any(
            want is not None and got != want
            for got, want in zip(arr.shape, spec.shape, strict=True)
        ):
            raise InputDataError(
                f"input tensor {spec.name!r} has shape {list(arr.shape)}, the model expects "
                f"{spec.describe()}"
            )
        feeds[spec.name] = np.ascontiguousarray(arr)
    return feeds
