"""The bundled model zoo: small ONNX models in data/zoo/, described by data/zoo/zoo.json.

The manifest is written by data/zoo/build_zoo.py (`make zoo`) and validated here with
pydantic. Accuracy figures are measured by that script in ONNX Runtime on the shipped
held-out split; untrained models say so (`trained` is False, `accuracy` is None).
`torch_model(entry)` rebuilds an entry as a torch module (weights loaded) and
`training_data(entry)` returns what a trained entry was trained on, for fine-tuning.
A multi-exit model lists its `exits` (outputs, shallowest first, with each exit's accuracy).

>>> [m.id for m in list_zoo()]
['digits_cnn', 'resnet_style', 'mobilenetv2_style', 'transformer_encoder', 'digits_multiexit']
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from advisor.errors import CatalogError, UnknownIdError

__all__ = [
    "ZOO_DIR",
    "ExitEntry",
    "ZooEntry",
    "ZooManifest",
    "ZooModel",
    "digits_split",
    "get_zoo",
    "list_zoo",
    "torch_model",
    "training_data",
]

ZOO_DIR = Path(__file__).resolve().parents[2] / "data" / "zoo"
MANIFEST_NAME = "zoo.json"


class TensorEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    shape: list[int | str]  # strings are symbolic dims ('batch')
    dtype: str


class ExitEntry(BaseModel):
    """One exit of a multi-exit model: the output it writes and its measured accuracy."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    output: str  # the graph output holding this exit's logits
    branch: str  # where the side branch leaves the trunk and what it is
    accuracy: float | None = Field(default=None, ge=0.0, le=1.0)
    accuracy_method: str | None = None


class ZooEntry(BaseModel):
    """One model in zoo.json; paths are relative to data/zoo/."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=r"^[a-z0-9_]+$")
    name: str
    task: str
    family: Literal["CNN", "Transformer"]
    description: str
    file: str
    file_bytes: int = Field(gt=0)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    params: int = Field(ge=0)
    macs: int = Field(ge=0)
    inputs: list[TensorEntry]
    outputs: list[TensorEntry]
    trained: bool
    accuracy: float | None = Field(default=None, ge=0.0, le=1.0)
    accuracy_method: str | None = None
    labelled_data: str | None = None
    calibration_data: str | None = None
    torch_builder: str = Field(pattern=r"^[\w.]+:\w+$")
    torch_weights: str | None = None
    training_data: str | None = Field(default=None, pattern=r"^[\w.]+:\w+$")
    exits: list[ExitEntry] | None = None  # shallowest first, the final exit last
    notes: str

    @model_validator(mode="after")
    def _accuracy_is_measured(self) -> ZooEntry:
        if self.accuracy is not None and not (self.trained and self.labelled_data):
            raise ValueError(f"{self.id}: an accuracy needs a trained model and labelled data")
        if self.accuracy is not None and not self.accuracy_method:
            raise ValueError(f"{self.id}: say how the accuracy was measured (accuracy_method)")
        if self.exits is not None:
            outputs = {t.name for t in self.outputs}
            if len(self.exits) < 2:
                raise ValueError(f"{self.id}: a multi-exit model lists at least two exits")
            for e in self.exits:
                if e.output not in outputs:
                    raise ValueError(
                        f"{self.id}: exit {e.name!r} writes {e.output!r}, which is "
                        "not one of the model's outputs"
                    )
                if e.accuracy is not None and not (
                    self.trained and self.labelled_data and e.accuracy_method
                ):
                    raise ValueError(
                        f"{self.id}: exit {e.name!r} has an accuracy without a "
                        "trained model, labelled data and accuracy_method"
                    )
        return self


class ZooManifest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    version: Literal[1]
    seed: int
    built_with: dict[str, str]
    models: list[ZooEntry]

    @model_validator(mode="after")
    def _unique_ids(self) -> ZooManifest:
        ids = [m.id for m in self.models]
        if len(ids) != len(set(ids)):
            raise ValueError(f"duplicate zoo ids in {ids}")
        return self


@dataclass(frozen=True)
class ZooModel:
    """A zoo model with resolved paths."""

    id: str
    name: str
    task: str
    description: str
    path: Path
    family: str
    accuracy: float | None
    labelled_data: Path | None
    calibration_data: Path | None
    torch_builder: str | None
    torch_weights: Path | None
    trained: bool = False
    accuracy_method: str | None = None
    params: int = 0
    macs: int = 0
    file_bytes: int = 0
    sha256: str = ""
    inputs: tuple[TensorEntry, ...] = ()
    outputs: tuple[TensorEntry, ...] = ()
    notes: str = ""
    training_data: str | None = None  # 'module:function' returning (x_train, y_train)
    exits: tuple[ExitEntry, ...] = ()  # multi-exit models: shallowest first, final last

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for key in ("path", "labelled_data", "calibration_data", "torch_weights"):
            data[key] = str(data[key]) if data[key] is not None else None
        data["inputs"] = [t.model_dump() for t in self.inputs]
        data["outputs"] = [t.model_dump() for t in self.outputs]
        data["exits"] = [e.model_dump() for e in self.exits]
        return data


def load_manifest(folder: Path | None = None) -> ZooManifest:
    """Read and validate zoo.json (CatalogError saying how to rebuild when it is broken)."""
    path = (folder or ZOO_DIR) / MANIFEST_NAME
    if not path.is_file():
        raise CatalogError(f"zoo manifest {path} is missing; build the zoo with `make zoo`")
    try:
        return ZooManifest.model_validate(json.loads(path.read_text(encoding="utf-8")))
    except (json.JSONDecodeError, ValidationError) as exc:
        first = str(exc).strip().splitlines()
        raise CatalogError(f"zoo manifest {path} is malformed: {' '.join(first[:3])}") from None


def _resolve(folder: Path, rel: str | None) -> Path | None:
    if rel is None:
        return None
    path = folder / rel
    if not path.is_file():
        raise CatalogError(f"zoo file {path} is missing; rebuild the zoo with `make zoo`")
    return path


def _to_model(entry: ZooEntry, folder: Path) -> ZooModel:
    return ZooModel(
        id=entry.id,
        name=entry.name,
        task=entry.task,
        description=entry.description,
        path=_resolve(folder, entry.file) or folder / entry.file,
        family=entry.family,
        accuracy=entry.accuracy,
        labelled_data=_resolve(folder, entry.labelled_data),
        calibration_data=_resolve(folder, entry.calibration_data),
        torch_builder=entry.torch_builder,
        torch_weights=_resolve(folder, entry.torch_weights),
        trained=entry.trained,
        accuracy_method=entry.accuracy_method,
        params=entry.params,
        macs=entry.macs,
        file_bytes=entry.file_bytes,
        sha256=entry.sha256,
        inputs=tuple(entry.inputs),
        outputs=tuple(entry.outputs),
        notes=entry.notes,
        training_data=entry.training_data,
        exits=tuple(entry.exits or ()),
    )


def list_zoo(folder: Path | None = None) -> list[ZooModel]:
    """Every zoo model, in manifest order."""
    folder = folder or ZOO_DIR
    return [_to_model(e, folder) for e in load_manifest(folder).models]


def get_zoo(zoo_id: str, folder: Path | None = None) -> ZooModel:
    """The zoo model `zoo_id` ('zoo:' prefix allowed); UnknownIdError lists the known ids."""
    key = zoo_id.removeprefix("zoo:")
    models = list_zoo(folder)
    for model in models:
        if model.id == key:
            return model
    known = ", ".join(m.id for m in models)
    raise UnknownIdError(f"unknown zoo model {key!r}; known ids: {known} (see `edgedl zoo list`)")


def _import(ref: str) -> Callable[..., Any]:
    module, attr = ref.split(":")
    return getattr(importlib.import_module(module), attr)  # type: ignore[no-any-return]


def torch_model(entry: ZooModel | str) -> Any:
    """The zoo model as a torch.nn.Module in eval mode (trained weights loaded if any)."""
    entry = get_zoo(entry) if isinstance(entry, str) else entry
    if not entry.torch_builder:
        raise CatalogError(f"zoo model {entry.id!r} has no torch definition")
    model = _import(entry.torch_builder)()
    if entry.torch_weights is not None:
        import torch

        model.load_state_dict(torch.load(entry.torch_weights, weights_only=True))
    return model.eval()


def training_data(entry: ZooModel | str) -> tuple[np.ndarray, np.ndarray]:
    """(x_train, y_train) the zoo model was trained on; CatalogError for untrained models."""
    entry = get_zoo(entry) if isinstance(entry, str) else entry
    if not entry.training_data:
        raise CatalogError(
            f"zoo model {entry.id!r} has no training data (its weights are untrained); "
            "only trained zoo models can be fine-tuned"
        )
    x, y = _import(entry.training_data)()
    return x, y


def digits_split(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """scikit-learn's bundled digits as N x 1 x 8 x 8 float32 in [0, 1], split 80/20
    stratified: (x_train, y_train, x_test, y_test), exactly as build_zoo.py splits it."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)[:, None, :, :]
    y = digits.target.astype(np.int64)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=0.2, stratify=y, random_state=seed
    )
    return x_train, y_train, x_test, y_test


def digits_train() -> tuple[np.ndarray, np.ndarray]:
    """The digits CNN's training split."""
    x_train, y_train, _, _ = digits_split()
    return x_train, y_train
