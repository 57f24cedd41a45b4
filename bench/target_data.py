"""The published rows as prediction cases: per-node work of each architecture, and the rows the
catalog priors can be fitted and checked on.

    python -m bench.target_data        rewrite data/arch_summaries.json (exports every
                                       architecture the rows use; a few minutes)

`data/arch_summaries.json` holds, per architecture and input shape, every node's FLOPs, bytes
moved and operator class, read from our own ONNX export (`bench/archs.py`) by the advisor's
loader: the same figures the advisor uses for a user's model.
"""

from __future__ import annotations

import json
import random
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from advisor.targets.catalog import Catalog, load_catalog
from advisor.targets.priors import NodeWork, runtime_family, unit_of
from advisor.targets.published import PublishedLatency, load_published

ROOT = Path(__file__).resolve().parent.parent
SUMMARIES = ROOT / "data" / "arch_summaries.json"
SPLIT_SEED = 0
HELD_OUT = 0.35  # share of each (target, unit, precision) group's rows held back


def shape_key(model: str, shape: tuple[int, ...]) -> str:
    return f"{model}@{'x'.join(map(str, shape))}"


@dataclass(frozen=True)
class Case:
    row: PublishedLatency
    unit: str
    nodes: tuple[NodeWork, ...]

    @property
    def group(self) -> str:
        return f"{self.row.device}/{self.unit}/{self.row.precision.value}"

    @property
    def key(self) -> str:
        """The priors' scale key: the group and the runtime family."""
        return f"{self.group}/{runtime_family(self.row.runtime)}"


def excluded_reason(row: PublishedLatency, catalog: Catalog) -> str | None:
    """Why a row cannot test the catalog priors, or None."""
    if row.model.startswith("bert"):
        return "MLPerf BERT runs each sample at its own unpadded length: no fixed input shape"
    target = catalog.target(row.device)
    unit = unit_of(target, row.precision.value)
    if unit != row.compute_unit.value:
        return (
            f"ran on the {row.compute_unit.value}, while the catalog's {row.precision.value} "
            f"peak for {row.device} is its {unit}'s"
        )
    if row.precision.value not in target.peak_gflops:
        return f"the catalog has no {row.precision.value} peak for {row.device}"
    return None


def cases() -> tuple[list[Case], list[tuple[PublishedLatency, str]]]:
    """(usable cases, excluded rows with the reason)."""
    catalog = load_catalog(user=False)
    summaries = json.loads(SUMMARIES.read_text())
    usable, excluded = [], []
    for row in load_published():
        why = excluded_reason(row, catalog)
        key = shape_key(row.model, row.input_shape)
        if why is None and key not in summaries:
            why = f"no summary for {key}: run python -m bench.target_data"
        if why:
            excluded.append((row, why))
            continue
        nodes = tuple(NodeWork(flops=f, bytes=b, op_class=c) for f, b, c in summaries[key])
        usable.append(Case(row, unit_of(catalog.target(row.device), row.precision.value), nodes))
    return usable, excluded


def split(all_cases: list[Case]) -> tuple[list[Case], list[Case]]:
    """(fit, held out): a seeded share of each group held out; a group of one row is fitted."""
    rng = random.Random(SPLIT_SEED)
    fit_set, held = [], []
    for key in sorted({c.key for c in all_cases}):
        mine = sorted((c for c in all_cases if c.key == key), key=lambda c: c.row.id)
        rng.shuffle(mine)
        k = int(round(len(mine) * HELD_OUT)) if len(mine) >= 3 else 0
        held += mine[:k]
        fit_set += mine[k:]
    return fit_set, held


def _summaries() -> dict[str, list[list]]:
    import torch

    from advisor.model import load_model
    from bench.archs import build

    wanted = sorted(
        {(r.model, r.input_shape) for r in load_published() if not r.model.startswith("bert")}
    )
    out: dict[str, list[list]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for model, shape in wanted:
            path = Path(tmp) / f"{model}.onnx"
            x = torch.randn(*shape, generator=torch.Generator().manual_seed(0))
            torch.onnx.export(build(model), (x,), str(path), dynamo=True, external_data=False)
            g = load_model(str(path))
            out[shape_key(model, shape)] = [
                [n.flops, n.input_bytes + n.output_bytes + n.param_bytes, n.op_class]
                for n in g.nodes
            ]
            print(f"{shape_key(model, shape)}: {len(g.nodes)} nodes", file=sys.stderr)
    return out


if __name__ == "__main__":
    SUMMARIES.write_text(json.dumps(_summaries(), separators=(",", ":")) + "\n")
    print(f"wrote {SUMMARIES}")
