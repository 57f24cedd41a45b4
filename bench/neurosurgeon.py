"""A Neurosurgeon-style latency predictor and partition choice, the plan-quality baseline.

Neurosurgeon (Kang et al., ASPLOS 2017) predicts each layer's latency with a regression per
layer type on the layer's configuration and picks the best single cut of a chain of layers.
Here: one non-negative linear model per ONNX op type on [FLOPs, input bytes, output bytes],
fitted on per-node profiles of other models (a pooled model for unseen op types), and the
cheapest single-tensor cut or endpoint under the advisor's own cost model
(advisor.plans.costs), so only the latency predictions differ from the advisor's.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["LayerRegression", "fit_layer_regression", "neurosurgeon_choice", "node_features"]


def node_features(graph) -> dict[str, tuple[str, list[float]]]:
    """Per node: (op type, [FLOPs, input bytes, output bytes])."""
    return {
        n.name: (n.op_type, [float(n.flops), float(n.input_bytes), float(n.output_bytes)])
        for n in graph.nodes
    }


@dataclass(frozen=True)
class LayerRegression:
    """Per-op-type linear models of node latency (ms) on [FLOPs, in bytes, out bytes]."""

    per_type: dict[str, object]
    pooled: object
    samples: dict[str, int]

    def predict(self, features: dict[str, tuple[str, list[float]]]) -> dict[str, float]:
        out = {}
        for name, (op, x) in features.items():
            model = self.per_type.get(op, self.pooled)
            out[name] = max(0.0, float(model.predict(np.array([x]))[0]))  # type: ignore[attr-defined]
        return out


def fit_layer_regression(
    samples: list[tuple[str, list[float], float]], min_per_type: int = 3
) -> LayerRegression:
    """Fit one non-negative least-squares model per op type (>= min_per_type samples)."""
    from sklearn.linear_model import LinearRegression

    if not samples:
        raise ValueError("no training samples for the layer regression")

    def fit(rows):
        x = np.array([r[1] for r in rows])
        y = np.array([r[2] for r in rows])
        return LinearRegression(positive=True).fit(x, y)

    by_type: dict[str, list] = {}
    for s in samples:
        by_type.setdefault(s[0], []).append(s)
    per_type = {op: fit(rows) for op, rows in by_type.items() if len(rows) >= min_per_type}
    return LayerRegression(per_type, fit(samples), {op: len(r) for op, r in by_type.items()})


def neurosurgeon_choice(graph, ns_ms: dict[str, float], link, speed: float) -> frozenset[str]:
    """Neurosurgeon: the cheapest single-tensor cut or endpoint under its own predictions."""
    from advisor.plans.costs import best, prefix_costs

    rows = prefix_costs(graph, ns_ms, {k: v / speed for k, v in ns_ms.items()}, link)
    top = best(rows, single_only=True)
    return frozenset(n.name for n in graph.nodes[: top.position])
