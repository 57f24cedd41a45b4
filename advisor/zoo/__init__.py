"""The bundled model zoo: the manifest (`manifest`, data/zoo/zoo.json) and the torch
definitions the zoo's ONNX files are exported from (`models`).
"""

from advisor.zoo.manifest import (
    ZOO_DIR,
    ExitEntry,
    ZooEntry,
    ZooManifest,
    ZooModel,
    digits_split,
    get_zoo,
    list_zoo,
    torch_model,
    training_data,
)

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
