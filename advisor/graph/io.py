"""Reading and checking models for `advisor.graph.load.load_model`.

Steps, in the order `load_model` runs them: read the source (file with checked external
data, zoo id, ModelProto, torch export) -> check ops and structure (onnx.checker) -> name
nodes -> make input shapes concrete -> infer shapes (onnx.shape_inference) and confirm that
ONNX Runtime can load the model, filling any shape inference could not reach by one run.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

import onnx
import onnx.external_data_helper
import onnx.shape_inference
from google.protobuf.message import DecodeError

from advisor.errors import ModelError

_STANDARD_DOMAINS = {"", "ai.onnx", "ai.onnx.ml", "ai.onnx.preview.training"}
_BATCH_NAME = re.compile(r"^(n|b|bs|batch.*|.*_batch|.*batch_size.*|unk__\d+|s\d+)$", re.I)
#: above this size we skip the ONNX Runtime load check (protobuf cannot serialize > 2 GB)
_ORT_CHECK_MAX_BYTES = 1_500_000_000


# --- reading ------------------------------------------------------------------------------


def read_source(source: Any, example_inputs: Any = None) -> tuple[onnx.ModelProto, str]:
    """Return (a private copy of the model, a label for where it came from)."""
    if isinstance(source, onnx.ModelProto):
        model = onnx.ModelProto()
        model.CopyFrom(source)
        if any(onnx.external_data_helper.uses_external_data(t) for t in iter_tensors(model)):
            raise ModelError(
                "the ModelProto references external data that is not loaded; "
                "pass the .onnx file path instead so the data can be found and checked"
            )
        return model, f"memory:{model.graph.name or 'model'}"
    if isinstance(source, str | os.PathLike):
        return _read_path_or_zoo(source)
    torch = sys.modules.get("torch")  # a torch Module is only possible once torch is imported
    if torch is not None and isinstance(source, torch.nn.Module):
        return export_torch(source, example_inputs), f"torch:{type(source).__name__}"
    raise ModelError(
        f"cannot load a model from a {type(source).__name__}; pass an .onnx path, a zoo id, "
        "an onnx.ModelProto or a torch.nn.Module with example_inputs"
    )


def _read_path_or_zoo(source: str | os.PathLike) -> tuple[onnx.ModelProto, str]:
    text = os.fspath(source)
    if text.startswith("zoo:"):
        return _read_zoo(text[4:])
    path = Path(text).expanduser()
    if path.is_file():
        return read_file(path), str(path)
    if path.is_dir():
        raise ModelError(f"{path} is a folder; pass the .onnx file inside it")
    if not path.suffix and "/" not in text and os.sep not in text:
        return _read_zoo(text)  # a bare zoo id; unknown ids raise UnknownIdError with the list
    raise ModelError(f"model file not found: {path}")


def _read_zoo(zoo_id: str) -> tuple[onnx.ModelProto, str]:
    from advisor.zoo.manifest import get_zoo

    entry = get_zoo(zoo_id)
    return read_file(entry.path), f"zoo:{entry.id}"


def read_file(path: Path) -> onnx.ModelProto:
    """Parse an .onnx file and load its external data after checking every location."""
    data = path.read_bytes()
    if _is_torch_checkpoint(data):
        raise ModelError(
            f"{path.name} is a PyTorch checkpoint (torch.save), not an ONNX model; export it "
            "first: advisor.model.load_model(module, example_inputs=...).save('model.onnx')"
        )
    try:
        model = onnx.load_model_from_string(data)
    except DecodeError as exc:
        raise ModelError(
            f"{path.name} is not a valid ONNX model: {exc} (truncated, or not an .onnx "
            "file?); re-export it or copy it again"
        ) from None
    if not model.HasField("graph") or not model.opset_import:
        raise ModelError(
            f"{path.name} is not a valid ONNX model: it has no graph or opset "
            "(empty or truncated file?)"
        )
    load_external_data(model, path.parent, path.name)
    return model


def _is_torch_checkpoint(data: bytes) -> bool:
    """torch.save writes a zip archive holding '<name>/data.pkl' (before torch 1.6: a pickle
    that starts with torch's magic number 0x1950a86a20f9469cfc6c)."""
    import zipfile

    if data.startswith(b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19"):
        return True
    if not data.startswith(b"PK\x03\x04"):
        return False
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            return any(n.endswith("data.pkl") for n in z.namelist())
    except zipfile.BadZipFile:
        return False


def iter_tensors(model: onnx.ModelProto) -> Iterator[onnx.TensorProto]:
    """Every TensorProto in the model: initializers and tensor attributes, subgraphs included."""

    def walk(graph: onnx.GraphProto) -> Iterator[onnx.TensorProto]:
        yield from graph.initializer
        for node in graph.node:
            for attr in node.attribute:
                if attr.HasField("t"):
                    yield attr.t
                yield from attr.tensors
                if attr.HasField("g"):
                    yield from walk(attr.g)
                for sub in attr.graphs:
                    yield from walk(sub)

    yield from walk(model.graph)


def load_external_data(model: onnx.ModelProto, folder: Path, model_name: str) -> None:
    """Check each external-data location (inside `folder`, present, long enough), then load.

    Checked here rather than left to onnx so that a bad location is refused before any file
    is opened and the message names the tensor and the file.
    """
    external = [t for t in iter_tensors(model) if onnx.external_data_helper.uses_external_data(t)]
    if not external:
        return
    base = folder.resolve()
    for tensor in external:
        info = {e.key: e.value for e in tensor.external_data}
        location = info.get("location", "")
        where = f"tensor {tensor.name!r} of {model_name}"
        if not location:
            raise ModelError(f"{where} is marked as external data but names no file")
        posix = PurePosixPath(location.replace("\\", "/"))
        if posix.is_absolute() or PureWindowsPath(location).drive or ".." in posix.parts:
            raise ModelError(
                f"refusing external data location {location!r} for {where}: path traversal "
                f"(locations must be relative paths inside the model's folder {base})"
            )
        file = (base / posix).resolve()
        if not file.is_relative_to(base):
            raise ModelError(
                f"refusing external data location {location!r} for {where}: path traversal "
                f"(it resolves to {file}, outside the model's folder {base})"
            )
        if not file.is_file():
            raise ModelError(
                f"external data file {location!r} for {where} is missing (looked for {file}); "
                "copy it next to the model"
            )
        try:
            offset = int(info.get("offset", 0))
            length = int(info["length"]) if "length" in info else 0
        except ValueError:
            raise ModelError(f"{where} has a malformed external data offset/length") from None
        size = file.stat().st_size
        if offset < 0 or length < 0:
            raise ModelError(
                f"{where} has a negative external data offset or length (offset {offset}, "
                f"length {length}); re-export the model"
            )
        if offset + length > size:
            raise ModelError(
                f"external data file {location!r} is too short for {where}: it needs bytes "
                f"{offset}..{offset + length} and has {size} (truncated file?)"
            )
    onnx.external_data_helper.load_external_data_for_model(model, str(base))


def export_torch(module: Any, example_inputs: Any) -> onnx.ModelProto:
    """Export a torch.nn.Module with torch.onnx.export into one in-memory ModelProto."""
    if example_inputs is None:
        raise ModelError(
            f"{type(module).__name__} is a torch.nn.Module: pass example_inputs "
            "(a tensor, a tuple of tensors or a dict of keyword tensors) to export it"
        )
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    if isinstance(example_inputs, dict):
        args, kwargs = (), dict(example_inputs)
    elif isinstance(example_inputs, tuple | list):
        args, kwargs = tuple(example_inputs), {}
    else:
        args, kwargs = (example_inputs,), {}
    return quiet_export(module, args, kwargs=kwargs)


def quiet_export(module: Any, args: tuple[Any, ...], **options: Any) -> onnx.ModelProto:
    """torch.onnx.export (dynamo exporter, one file, in memory) with its chatter held back.

    The exporter prints progress lines to stdout, logs through `torch.onnx` and warns about
    deprecations inside torch and optional packages it probes (torchvision): none of it is
    about the user's model, and on stdout it would break the CLI's `--json` output. Failures
    still surface, as ModelError with the exporter's own first line. `options` go to
    torch.onnx.export (input_names, output_names, dynamic_shapes, kwargs, ...).
    """
    import logging
    import warnings

    import torch

    exporter_log = logging.getLogger("torch.onnx")
    level = exporter_log.level
    exporter_log.setLevel(logging.ERROR)
    was_training = module.training
    module.eval()
    try:
        with (
            contextlib.redirect_stdout(io.StringIO()),
            warnings.catch_warnings(),
            torch.no_grad(),
        ):
            warnings.simplefilter("ignore")
            program = torch.onnx.export(
                module, args, dynamo=True, external_data=False, verbose=False, **options
            )
    except Exception as exc:  # the exporter raises many error types; keep type and message
        plain = re.sub(r"\x1b\[[0-9;]*m", "", str(exc)).strip()  # the exporter colours text
        first = plain.splitlines()[0] if plain else ""
        raise ModelError(
            f"torch.onnx.export failed for {type(module).__name__}: {type(exc).__name__}: {first}"
        ) from exc
    finally:
        module.train(was_training)
        exporter_log.setLevel(level)
    if program is None:
        raise ModelError(f"torch.onnx.export returned no program for {type(module).__name__}")
    return program.model_proto
