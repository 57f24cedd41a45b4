"""Reading models: load and repair ONNX files, their tensors and shapes, cut points, inputs,
FLOPs and early exits. The lowest layer of the advisor: imports nothing above it.

Modules: `model` (ModelGraph and the loader), `io` (reading files, torch export, repairs),
`cuts` (where a graph can be split, and splitting it), `inputs` (sample and user inputs),
`flops` (per-node FLOPs), `segments` (sub-graph inputs and outputs), `exits` (early exits).
"""
