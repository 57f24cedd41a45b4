"""Public entry point for loading models: `advisor.model.load_model` and the types it returns
(the implementation lives in `advisor.graph`).

>>> from advisor.model import load_model
>>> load_model("digits_cnn").name
'digits_cnn'
"""

from advisor.graph.cuts import Cut
from advisor.graph.inputs import load_npz, sample_inputs
from advisor.graph.load import load_model
from advisor.graph.model import ModelGraph, NodeInfo, TensorSpec, layer_name

__all__ = [
    "Cut",
    "ModelGraph",
    "NodeInfo",
    "TensorSpec",
    "layer_name",
    "load_model",
    "load_npz",
    "sample_inputs",
]
